"""Audio2Emotion v2.2: detect Audio2Face's 10 emotions from speech, like the SDK's classifier
executor (spec §1.6, §2, §3, §5, §8.12).

The classifier sees ``buffer_length`` samples (default 60000, as the SDK samples) centred on a
frame's target sample, zero padded, ``input_values`` [B, T] -> ``output`` [B, 6] logits. Each
inference serves ``inferences_to_skip + 1`` frames; every frame runs the post-processing (§5)
on its group's logits with ``dt = 1/fps``. :func:`emotion_keys` turns the per-frame result into
``InferenceOptions.emotions`` keys, so that an Audio2Face model animates with detected emotions.
The frame rate is the caller's: the API runs it as NVIDIA's sample and Maya-ACE do (30 fps,
skip 30) and the face model interpolates the keys at its own frames
(``InferenceOptions.emotion_cadence``).

The network runs on the one executor (:mod:`a2x_core.executor.loop`): :class:`EmotionStep` (a unit is one
inference) feeds :class:`EmotionChain` (the post-processing per track). ``detect``/``detect_many``
push whole clips and close them (their windows packed into shared calls);
:meth:`EmotionModel.open_stream` pushes audio as it arrives and returns each frame as soon as its
inference's window and its own target sample have arrived, equal to ``detect``'s row
(``docs/streaming.md``).

Manual emotion keys meet detected ones in :meth:`EmotionModel.mix`: "blend" makes them the
per-frame preferred emotion of step 6 (the SDK's preferred-emotion accumulator), "override"
replaces the detected curves of the emotions they name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..audio.accumulator import AudioAccumulator
from ..audio.decode import Audio
from ..audio.windows import audio_windows
from ..backends import EngineSettings, InferenceEngine, TensorSpec
from ..errors import ModelError, ModelPackageError, ParameterError
from ..executor.loop import ChainStep, Executor, Span, Track, drain, offline_progress
from ..executor.stream import Stream, check_executor
from ..jobs import CancelToken, ProgressCallback
from ..options import DEFAULT_EMOTION_WINDOW, EMOTION_MIX_MODES, EmotionKey
from ..postprocess.chain import FrameBlock
from ..timing import SAMPLE_RATE, frame_targets, frame_targets_of, num_frames_for, parse_fps
from .emotion_input import A2F_EMOTIONS, EmotionCurve, explicit_emotion_curve, normalize_keys
from .regression_folder import (
    _key,
    _read_json,
    _resolve,
    check_range,
    existing_onnx,
    float32_values,
    json_integer,
    range_text,
)

log = logging.getLogger("a2x_core")

_REDOWNLOAD = "download the model folder again (nvidia/Audio2Emotion-v2.2)"

#: The SDK samples' window (spec §1.6); the A2E benchmark uses 30000.
DEFAULT_BUFFER_LENGTH = DEFAULT_EMOTION_WINDOW
#: Windows per network call (60000 float32 samples each: 7.7 MB per call).
WINDOWS_PER_CALL = 32

#: Float keys of ``post_processing_config`` and the range a2x accepts. The SDK parser reads them
#: without range checks (``parse_helper.cpp``); a2x rejects values that would leave A2F's 0..1
#: emotion range or make the blends extrapolate.
FLOAT_RANGES: dict[str, tuple[float | None, float | None]] = {
    "emotion_contrast": (0.0, None),
    "live_blend_coef": (0.0, 1.0),
    "preferred_emotion_strength": (0.0, 1.0),
    "transition_smoothing": (0.0, None),
    "fixed_dt": (0.0, None),  # read, then replaced by 1/fps (spec §5 step 7, §8.12)
    "emotion_strength": (0.0, 1.0),
}
#: Keys whose :data:`FLOAT_RANGES` / [0, 1] range a2x enforces on overrides only: the SDK reads
#: them from ``model_config.json`` unchecked, so a file's out-of-range value loads with a warning
#: (the detected emotions are clipped to [0, 1] where A2F reads them). Likewise the file's
#: ``emotion_correspondence`` may name emotions the network does not output (the SDK looks up
#: only the network's). ``live_blend_coef`` stays strict: above 1 the per-frame blend
#: extrapolates and diverges to Inf.
FILE_UNCHECKED = (
    "emotion_strength", "preferred_emotion_strength", "preferred_emotion",
    "emotion_correspondence",
)  # fmt: skip
#: Every key of ``post_processing_config`` (spec §1.6).
CONFIG_KEYS = (
    "output_emotion_length", "emotion_contrast", "max_emotions", "live_blend_coef",
    "enable_preferred_emotion", "preferred_emotion_strength", "transition_smoothing", "fixed_dt",
    "emotion_strength", "preferred_emotion", "emotion_correspondence",
)  # fmt: skip


@dataclass(frozen=True)
class PostProcessConfig:
    """``post_processing_config`` of ``model_config.json``, validated (spec §1.6)."""

    emotion_contrast: float
    max_emotions: int
    live_blend_coef: float
    enable_preferred_emotion: bool
    preferred_emotion_strength: float
    transition_smoothing: float
    fixed_dt: float
    emotion_strength: float
    preferred_emotion: np.ndarray  # float32 [10]
    correspondence: np.ndarray  # int32 [6]: A2E class -> A2F index or -1

    def to_dict(self, emotions: Sequence[str]) -> dict[str, Any]:
        """JSON-ready form, with the correspondence by name."""
        return {
            "output_emotion_length": len(self.preferred_emotion),
            "emotion_contrast": self.emotion_contrast,
            "max_emotions": self.max_emotions,
            "live_blend_coef": self.live_blend_coef,
            "enable_preferred_emotion": self.enable_preferred_emotion,
            "preferred_emotion_strength": self.preferred_emotion_strength,
            "transition_smoothing": self.transition_smoothing,
            "fixed_dt": self.fixed_dt,
            "emotion_strength": self.emotion_strength,
            "preferred_emotion": self.preferred_emotion.tolist(),
            "emotion_correspondence": dict(
                zip(emotions, (int(i) for i in self.correspondence), strict=True)
            ),
        }


@dataclass(frozen=True)
class EmotionPackage:
    """A validated A2E folder (spec §1.6)."""

    model_json: Path
    network_info_path: Path
    config_path: Path
    trt_path: Path
    onnx_path: Path
    emotions: tuple[str, ...]  # the classifier's classes, network order
    config: PostProcessConfig


@dataclass
class EmotionTrack:
    """Detected emotions of one clip, one row per frame.

    Attributes:
        values: float32 ``[frames, 10]`` in :data:`names` order (A2F's explicit emotions).
        targets: int64 target sample of each frame (``floor(i*16000/fps)``), relative to the
            clip's first sample; the SDK keys A2F's emotion input at these (spec §5 step 8).
        fps: the frame rate.
        start_s: where the clip's sample 0 sits in the source file.
        logits: float32 ``[inferences, C]`` raw classifier outputs (one per frame group).
        names: the 10 A2F emotion names.
        inferences_to_skip: frames per group minus one (each group shares one row of logits).
    """

    values: np.ndarray
    targets: np.ndarray
    fps: Fraction
    start_s: float
    logits: np.ndarray
    names: tuple[str, ...] = A2F_EMOTIONS
    inferences_to_skip: int = 0

    @property
    def times_s(self) -> np.ndarray:
        """Frame times in seconds of the source file (``start_s + i/fps``)."""
        step = self.fps.denominator / self.fps.numerator
        return self.start_s + np.arange(len(self.values), dtype=np.float64) * step

    def curve(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def at_frames(self, num_frames: int, fps: Fraction) -> np.ndarray:
        """``[num_frames, 10]`` values at the frames of another rate, read as A2F reads its
        emotion keys (the SDK's EmotionAccumulator: linear between this track's frames at each
        frame's target sample, the first/last frame beyond them); at this track's own rate the
        values themselves."""
        if len(self.values) == 0:
            return np.zeros((num_frames, len(self.names)), np.float32)
        curve = EmotionCurve(self.targets, self.values)
        return curve.sample(frame_targets(num_frames, parse_fps(fps)))


# ----------------------------------------------------------------------------- loading


def _check_float(name: str, value: Any, error: type, where: Mapping[str, Any], label: str) -> float:
    low, high = FLOAT_RANGES[name]
    why = check_range(label + name, value, low, high)
    if why:
        raise error(why, hint=f"use a value in {range_text(low, high)}", **where)
    return float(value)


def _check_float_loosely(
    name: str,
    value: Any,
    error: type,
    where: Mapping[str, Any],
    label: str,
    tolerated: Callable[[str], None],
) -> float:
    """A float the SDK reads unchecked: finite is enough; outside its range -> ``tolerated``."""
    why = check_range(label + name, value, None, None)
    if why:
        raise error(why, hint=f"use a value in {range_text(*FLOAT_RANGES[name])}", **where)
    why = check_range(label + name, value, *FLOAT_RANGES[name])
    if why:
        tolerated(why)
    return float(value)


def check_overrides(overrides: Mapping[str, Any], *, label: str = "") -> None:
    """Check what can be checked of ``post_processing_config`` overrides without a model: known
    keys and the float ranges. ``label`` prefixes the names in messages (an option's name).

    Raises:
        ParameterError: an unknown key or a float out of range.
    """
    prefix = f"{label}." if label else ""
    unknown = sorted(str(k) for k in overrides if k not in CONFIG_KEYS)
    if unknown:
        where = f"{label}: " if label else ""
        raise ParameterError(
            f"{where}unknown Audio2Emotion parameter(s) {', '.join(unknown)}",
            hint=f"use: {', '.join(CONFIG_KEYS)}",
        )
    for name in FLOAT_RANGES:
        if name in overrides:
            _check_float(name, overrides[name], ParameterError, {}, prefix)


def validate_post_processing(
    config: Mapping[str, Any],
    emotions: Sequence[str],
    path: Path | None = None,
    *,
    error: type = ModelPackageError,
    label: str | None = None,
    unchecked: Collection[str] = (),
) -> PostProcessConfig:
    """Check every ``post_processing_config`` key (spec §1.6; SDK ``ConfigInfoOwner::Init`` and
    ``PostProcessor::Init``): presence, types, ranges, NaN, lengths, the correspondence.
    Integers may be written as integral floats (``6.0``), as the SDK's reader converts them.

    Args:
        label: prefix of key names in messages (default: ``post_processing_config.`` for a
            file, none for overrides).
        unchecked: keys of :data:`FILE_UNCHECKED` to accept as the SDK does (finite values
            out of range, extra correspondence names); with ``path`` (a file) each is logged
            as a warning naming the file and key.

    Raises:
        ``error`` (ModelPackageError naming ``path`` for a file, ParameterError for overrides).
    """
    where: dict[str, Any] = {"path": path} if path is not None else {}
    if label is None:
        label = "post_processing_config." if path is not None else ""
    for name in CONFIG_KEYS:
        if name not in config:
            raise error(f"key {label + name!r} is missing", hint=_REDOWNLOAD, **where)

    def tolerated(why: str) -> None:
        """An out-of-range value the SDK accepts: warn for a file (once, at load)."""
        if path is not None:
            log.warning("%s: %s (accepted, as NVIDIA's SDK does)", path, why)

    out_len = json_integer(config["output_emotion_length"])
    if out_len != len(A2F_EMOTIONS):
        raise error(
            f"{label}output_emotion_length is {config['output_emotion_length']!r}, expected "
            f"{len(A2F_EMOTIONS)} (Audio2Face's explicit emotions)",
            **where,
        )
    floats = {}
    for name in FLOAT_RANGES:
        if name in unchecked:
            floats[name] = _check_float_loosely(name, config[name], error, where, label, tolerated)
        else:
            floats[name] = _check_float(name, config[name], error, where, label)
    max_emotions = json_integer(config["max_emotions"])
    if max_emotions is None or max_emotions < 1:
        raise error(
            f"{label}max_emotions must be an integer >= 1, found {config['max_emotions']!r}",
            **where,
        )
    enable = config["enable_preferred_emotion"]
    if not isinstance(enable, bool):
        raise error(
            f"{label}enable_preferred_emotion must be true or false, found {enable!r}", **where
        )
    preferred = config["preferred_emotion"]
    if not isinstance(preferred, list | tuple | np.ndarray) or len(preferred) != out_len:
        found = len(preferred) if isinstance(preferred, list | tuple | np.ndarray) else preferred
        raise error(
            f"{label}preferred_emotion has {found!r} values, expected {out_len} "
            "(output_emotion_length)",
            **where,
        )
    for i, value in enumerate(preferred):
        key = f"{label}preferred_emotion[{i}]"
        why = check_range(key, value, 0.0, 1.0)
        if why and "preferred_emotion" in unchecked and check_range(key, value, None, None) is None:
            tolerated(why)
        elif why:
            raise error(why, hint="use values in [0, 1]", **where)
    table = config["emotion_correspondence"]
    if not isinstance(table, Mapping):
        raise error(
            f"{label}emotion_correspondence must be an object name -> A2F index, found {table!r}",
            **where,
        )
    missing = [e for e in emotions if e not in table]
    extra = sorted(set(table) - set(emotions))
    if extra and not missing and "emotion_correspondence" in unchecked:
        tolerated(
            f"{label}emotion_correspondence names {extra}, which the network does not output; "
            "ignoring them"
        )
        extra = []
    if missing or extra:
        raise error(
            f"{label}emotion_correspondence names {sorted(table)}, expected the network's "
            f"emotions {list(emotions)}",
            hint="one entry per emotion of network_info.json",
            **where,
        )
    indices = []
    for name in emotions:
        j = json_integer(table[name])
        if j is None or not -1 <= j < out_len:
            raise error(
                f"{label}emotion_correspondence.{name} is {table[name]!r}, expected an integer in "
                f"[-1, {out_len - 1}]",
                hint="-1 = not mapped (neutral)",
                **where,
            )
        indices.append(j)
    mapped = [j for j in indices if j != -1]
    if len(set(mapped)) != len(mapped):
        raise error(
            f"{label}emotion_correspondence maps two emotions to one A2F index ({indices})",
            hint="give each A2E emotion its own A2F index or -1",
            **where,
        )
    return PostProcessConfig(
        max_emotions=int(max_emotions),
        enable_preferred_emotion=enable,
        preferred_emotion=float32_values(preferred, f"{label}preferred_emotion", path, error=error),
        correspondence=np.asarray(indices, dtype=np.int32),
        **floats,
    )


def read_network_info(path: Path) -> tuple[str, ...]:
    """``network_info.json``: ``audio_params.samplerate`` (16000) and ``emotions`` (spec §1.6)."""
    data = _read_json(path)
    rate = _key(data, "audio_params.samplerate", path, int)  # 16000.0 is read as 16000
    if rate != SAMPLE_RATE:
        raise ModelPackageError(
            f"audio_params.samplerate is {rate}, expected {SAMPLE_RATE}", path=path
        )
    emotions = _key(data, "emotions", path, list)
    if not emotions or not all(isinstance(e, str) and e for e in emotions):
        raise ModelPackageError(
            f"key 'emotions' must be a non-empty list of names, found {emotions!r}",
            path=path,
            hint=_REDOWNLOAD,
        )
    if len(set(emotions)) != len(emotions):
        raise ModelPackageError(f"key 'emotions' has duplicates: {emotions}", path=path)
    return tuple(emotions)


def load_emotion_package(model_json: str | Path) -> EmotionPackage:
    """Read and validate an A2E folder (spec §1.6; SDK ``IClassifierModel::ModelInfoOwner``).

    Raises:
        ModelError: model.json is missing or is not an Audio2Emotion model.
        ModelPackageError: a file is missing or has wrong keys or values.
    """
    model_json = Path(model_json)
    if model_json.is_dir():
        model_json = model_json / "model.json"
    data = _read_json(model_json)
    if "blendshapePaths" in data or "modelDataPath" in data or "modelConfigPaths" in data:
        raise ModelError(
            "is an Audio2Face-3D model, not an Audio2Emotion model",
            path=model_json,
            hint="pass the model.json of an Audio2Emotion-v2.2 folder",
        )
    folder = model_json.parent
    paths = {
        key: _resolve(folder, _key(data, key, model_json, str))
        for key in ("networkInfoPath", "networkPath", "modelConfigPath")
    }
    emotions = read_network_info(paths["networkInfoPath"])
    trt_path = paths["networkPath"]
    onnx_path = existing_onnx(trt_path)
    config_path = paths["modelConfigPath"]
    section = _key(_read_json(config_path), "post_processing_config", config_path, dict)
    config = validate_post_processing(section, emotions, config_path, unchecked=FILE_UNCHECKED)
    return EmotionPackage(
        model_json, paths["networkInfoPath"], config_path, trt_path, onnx_path, emotions, config
    )


# ----------------------------------------------------------------------------- post-processing


class EmotionPostProcessor:
    """The SDK's per-track post-processor (spec §5 steps 1-8, ``postprocess.cpp``), float32.

    ``step(logits)`` turns one frame's logits into the 10 A2F emotions; ``reset()`` returns to
    the first-frame state (beginning emotion = zeros). Step 6 blends with the config's
    ``preferred_emotion``, or with a per-frame ``preferred`` vector when one is given (the SDK's
    per-track preferred-emotion accumulator); either way only when
    ``enable_preferred_emotion`` is on.
    """

    def __init__(self, config: PostProcessConfig, dt: float) -> None:
        self.config = config
        self.dt = np.float32(dt)
        self.reset()

    def reset(self) -> None:
        size = len(self.config.preferred_emotion)
        self.first = True
        self.out = np.zeros(size, np.float32)  # step 4 starts from the previous final output
        self.prev = np.zeros(size, np.float32)  # step 5 state
        self.prev_blended = np.zeros(size, np.float32)  # step 7 state

    def step(self, logits: np.ndarray, preferred: np.ndarray | None = None) -> np.ndarray:
        """One frame: ``[C]`` logits (and optionally this frame's ``[10]`` preferred emotion)
        -> ``[10]`` emotions."""
        c = self.config
        f32 = np.float32
        # 1. softmax of contrast-scaled logits, max subtracted
        p = np.asarray(logits, np.float32) * f32(c.emotion_contrast)
        p = np.exp(p - p.max()).astype(np.float32)
        p = (p / p.sum(dtype=np.float32)).astype(np.float32)
        # 2. unmapped classes (neutral) to zero
        p[c.correspondence == -1] = 0.0
        # 3. keep the max_emotions largest; on ties the lowest index is kept (GPU kernel)
        if c.max_emotions < len(p):
            order = np.lexsort((np.arange(len(p)), -p))
            p[order[c.max_emotions :]] = 0.0
        # 4. scatter into the previous final output (beginning emotion = zeros on frame 0)
        a = self.out.copy() if not self.first else np.zeros_like(self.out)
        mapped = c.correspondence != -1
        a[c.correspondence[mapped]] = p[mapped]
        # 5. live blend with the previous step-5 result
        blend = f32(c.live_blend_coef)
        a = ((f32(1) - blend) * a + blend * self.prev).astype(np.float32)
        self.prev = a.copy()
        # 6. preferred emotion
        if c.enable_preferred_emotion:
            s = f32(c.preferred_emotion_strength)
            target = c.preferred_emotion if preferred is None else np.asarray(preferred, np.float32)
            a = ((f32(1) - s) * a + s * target).astype(np.float32)
        # 7. transition smoothing, except on the first frame
        if not self.first:
            w = min(self.dt / max(f32(c.transition_smoothing), f32(1e-3)), f32(1))
            keep = f32(1) - f32(w)
            a = ((f32(1) - keep) * a + keep * self.prev_blended).astype(np.float32)
        self.prev_blended = a.copy()
        # 8. strength
        a = (a * f32(c.emotion_strength)).astype(np.float32)
        self.out = a
        self.first = False
        return a.copy()

    def run(self, logits: np.ndarray, preferred: np.ndarray | None = None) -> np.ndarray:
        """``[frames, C]`` logits -> ``[frames, 10]`` emotions, from a reset state.

        Args:
            preferred: ``[frames, 10]`` preferred emotion per frame for step 6 (None = the
                config's constant ``preferred_emotion``).
        """
        self.reset()
        size = len(self.config.preferred_emotion)
        if preferred is not None:
            preferred = np.asarray(preferred, np.float32)
            if preferred.shape != (len(logits), size):
                raise ParameterError(
                    f"preferred emotion has shape {preferred.shape}, expected "
                    f"({len(logits)}, {size}): one row per frame"
                )
        if not len(logits):
            return np.zeros((0, size), np.float32)
        rows = [None] * len(logits) if preferred is None else preferred
        return np.stack([self.step(row, pref) for row, pref in zip(logits, rows, strict=True)])


# ----------------------------------------------------------------------------- the model


class EmotionModel:
    """An Audio2Emotion v2.2 folder loaded for inference."""

    kind = "emotion"

    def __init__(self, package: EmotionPackage, engine: EngineSettings | None = None) -> None:
        self.package = package
        self.engine_settings = engine or EngineSettings()
        self.emotions = package.emotions
        self._engines: dict[int, InferenceEngine] = {}

    @classmethod
    def load(
        cls,
        model_json: str | Path,
        engine: EngineSettings | None = None,
        *,
        buffer_length: int = DEFAULT_BUFFER_LENGTH,
    ) -> EmotionModel:
        """Load and validate an A2E folder and create its engine for ``buffer_length``.

        Args:
            engine: which engine, where and how (default: auto, all cores, fp32).
            buffer_length: the window of the engine created now (others are made on use).

        Raises:
            ModelError, ModelPackageError: the folder is incomplete or inconsistent.
            EngineError: the backend is unavailable or the network does not match.
        """
        model = cls(load_emotion_package(model_json), engine)
        model.engine(buffer_length)
        return model

    def engine(self, buffer_length: int) -> InferenceEngine:
        """The engine for windows of ``buffer_length`` samples (spec §2: ``input_values`` [B, T],
        T dynamic in the ONNX file, fixed per engine here so TensorRT gets one profile)."""
        if buffer_length not in self._engines:
            inputs = (TensorSpec("input_values", (None, buffer_length)),)
            outputs = (TensorSpec("output", (None, len(self.emotions))),)
            self._engines[buffer_length] = self.engine_settings.create(
                self.package.onnx_path, inputs, outputs
            )
        return self._engines[buffer_length]

    def settings(
        self, overrides: Mapping[str, Any] | None = None, *, label: str = ""
    ) -> PostProcessConfig:
        """The post-processing config with ``overrides`` (same keys as the file) applied.

        Args:
            label: the option the overrides came from, named in messages
                (e.g. ``"emotion_parameters"``).

        Raises:
            ParameterError: an unknown key or a bad value.
        """
        if not overrides:
            return self.package.config
        check_overrides(overrides, label=label)
        merged = {**self.package.config.to_dict(self.emotions), **overrides}
        # the file's own values passed at load (warned there); overrides are checked strictly
        return validate_post_processing(
            merged, self.emotions, error=ParameterError, label=f"{label}." if label else "",
            unchecked=[key for key in FILE_UNCHECKED if key not in overrides],
        )  # fmt: skip

    def info(self) -> dict[str, Any]:
        p = self.package
        return {
            "kind": "emotion",
            "model": str(p.model_json),
            "network": str(p.onnx_path),
            "emotions": list(p.emotions),
            "post_processing_config": p.config.to_dict(p.emotions),
        }

    # ------------------------------------------------------------------------- detection

    def logits(
        self,
        audio: Audio,
        fps: Fraction,
        *,
        buffer_length: int = DEFAULT_BUFFER_LENGTH,
        inferences_to_skip: int = 0,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw classifier outputs per inference and each window's first sample (spec §3).

        Inference ``k`` serves frames ``k*(skip+1) ...``; its window is centred on the first of
        them: ``start = target - buffer_length//2`` for ``target = floor(k*(skip+1)*16000/fps)``.
        ``progress`` gets the fraction of windows done; ``cancel`` is checked between calls.
        """
        rate = parse_fps(fps)
        (run,) = self._run_offline(
            [audio], rate, buffer_length, inferences_to_skip, self.package.config, progress,
            cancel,
        )  # fmt: skip
        group = inferences_to_skip + 1
        targets = frame_targets(num_frames_for(len(audio.samples), rate), rate)[::group]
        return run.logits, targets - buffer_length // 2

    def detect(
        self,
        audio: Audio,
        fps: float | str | Fraction = 60,
        *,
        buffer_length: int = DEFAULT_BUFFER_LENGTH,
        inferences_to_skip: int = 0,
        parameters: Mapping[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> EmotionTrack:
        """Per-frame A2F emotions of one clip (SDK classifier executor, closed audio).

        Args:
            fps: frame rate (exact fraction); dt = 1/fps in the transition smoothing.
            buffer_length: classifier window in samples (SDK samples: 60000).
            inferences_to_skip: frames that reuse one inference's logits (spec §3).
            parameters: ``post_processing_config`` overrides, e.g. ``{"emotion_strength": 1}``.
            progress, cancel: as in ``AnimationModel.animate``.

        Raises:
            ParameterError: a bad window, skip count or override.
            CancelledError: ``cancel`` was set.
        """
        return self.detect_many(
            [audio], fps, buffer_length=buffer_length, inferences_to_skip=inferences_to_skip,
            parameters=parameters, progress=progress, cancel=cancel,
        )[0]  # fmt: skip

    def detect_many(
        self,
        clips: Sequence[Audio],
        fps: float | str | Fraction = 60,
        *,
        buffer_length: int = DEFAULT_BUFFER_LENGTH,
        inferences_to_skip: int = 0,
        parameters: Mapping[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> list[EmotionTrack]:
        """:meth:`detect` of several clips at once: their windows are packed into shared network
        calls (:data:`WINDOWS_PER_CALL` windows each: the few windows of many short clips ride
        in one call); each track equals its :meth:`detect`.

        Raises:
            As :meth:`detect`.
        """
        rate = parse_fps(fps)
        check_window(buffer_length, inferences_to_skip, rate)
        config = self.settings(parameters)  # bad overrides fail before the network runs
        runs = self._run_offline(
            clips, rate, buffer_length, inferences_to_skip, config, progress, cancel
        )
        return [
            EmotionTrack(
                run.values,
                frame_targets(len(run.values), rate),
                rate,
                audio.start_s,
                run.logits,
                inferences_to_skip=inferences_to_skip,
            )
            for audio, run in zip(clips, runs, strict=True)
        ]

    def _run_offline(
        self,
        clips: Sequence[Audio],
        fps: Fraction,
        buffer_length: int,
        inferences_to_skip: int,
        config: PostProcessConfig,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> list[_EmotionTrackState]:
        """Every clip pushed whole and closed on one executor: logits and per-frame emotions."""
        step = EmotionStep(self, buffer_length, self._windows_per_call(buffer_length))
        executor = Executor(step)
        chain = EmotionChain()
        tracks = [
            self._open_track(
                executor,
                AudioAccumulator.whole(audio.samples),
                chain,
                fps,
                inferences_to_skip,
                config,
                keep_logits=True,
            )
            for audio in clips
        ]
        total = sum(step.ready_units(track) for track in tracks)
        executor.run_ready(cancel, offline_progress(progress, total, "Audio2Emotion"))
        for track in tracks:
            block = drain(track)
            if block is not None:
                track.state.values = block["emotions"]
        return [track.state for track in tracks]

    def _windows_per_call(self, buffer_length: int) -> int:
        """Windows per network call: :data:`WINDOWS_PER_CALL`, or fewer where the engine's
        batch is limited (a TensorRT profile)."""
        return min(self.engine(buffer_length).max_batch or WINDOWS_PER_CALL, WINDOWS_PER_CALL)

    def _open_track(
        self, executor: Executor, audio: AudioAccumulator, chain: EmotionChain, fps: Fraction,
        inferences_to_skip: int, config: PostProcessConfig, *, keep_logits: bool,
    ) -> Track:  # fmt: skip
        """A track of ``executor`` whose emotion frames go to ``chain``."""
        state = _EmotionTrackState(fps, inferences_to_skip + 1, len(self.emotions), keep_logits)
        slot = chain.open_slot(
            _EmotionSlot(
                EmotionPostProcessor(config, fps.denominator / fps.numerator),
                state.group,
                lambda: num_frames_for(audio.received, fps),
            )
        )
        return executor.add(Track(audio, state, chain, slot))

    # ------------------------------------------------------------------------- streams

    def stream_executor(self, buffer_length: int = DEFAULT_BUFFER_LENGTH) -> Executor:
        """An executor for emotion streams of this model with windows of ``buffer_length``
        samples; streams opened on the same executor share network calls.

        Raises:
            ParameterError: a bad ``buffer_length``.
        """
        check_buffer_length(buffer_length)
        return Executor(EmotionStep(self, buffer_length, self._windows_per_call(buffer_length)))

    def open_stream(
        self,
        fps: float | str | Fraction = 60,
        *,
        buffer_length: int = DEFAULT_BUFFER_LENGTH,
        inferences_to_skip: int = 0,
        parameters: Mapping[str, Any] | None = None,
        executor: Executor | None = None,
    ) -> Stream[EmotionFrame]:
        """A stream of pushed audio: its ``push``/``pull``/``close`` return
        :class:`EmotionFrame` s, each as soon as its inference's window and its own target
        sample have arrived, equal to :meth:`detect`'s rows of the whole clip
        (``docs/streaming.md``). The smoothing state
        carries across pushes; only the audio the next window reads is held.

        Args:
            fps, buffer_length, inferences_to_skip, parameters: as :meth:`detect`.
            executor: a :meth:`stream_executor` of this model with the same ``buffer_length``,
                to share network calls with the streams already on it.

        Raises:
            ParameterError: a bad window, skip count or override; an executor of another model
                or window.
        """
        rate = parse_fps(fps)
        check_window(buffer_length, inferences_to_skip, rate)
        config = self.settings(parameters)
        executor = executor or self.stream_executor(buffer_length)
        check_executor(executor, self, EmotionStep)
        step = executor.step
        if step.buffer_length != buffer_length:
            raise ParameterError(
                f"buffer_length={buffer_length} differs from the executor's {step.buffer_length}",
                hint="open the stream on a stream_executor(buffer_length) of its window",
            )
        track = self._open_track(executor, AudioAccumulator(), EmotionChain(), rate,
                                 inferences_to_skip, config, keep_logits=False)  # fmt: skip
        return Stream(executor, track, _emotion_frames, step.lookahead)

    def post_process(
        self,
        track: EmotionTrack,
        parameters: Mapping[str, Any] | None = None,
        *,
        preferred: np.ndarray | None = None,
    ) -> EmotionTrack:
        """Run §5 again on a track's logits (no network): other ``parameters``, or a per-frame
        ``[frames, 10]`` ``preferred`` emotion for step 6 (used when
        ``enable_preferred_emotion`` is on)."""
        config = self.settings(parameters)
        num_frames = len(track.targets)
        per_frame = np.repeat(track.logits, track.inferences_to_skip + 1, axis=0)[:num_frames]
        dt = track.fps.denominator / track.fps.numerator
        values = EmotionPostProcessor(config, dt).run(per_frame, preferred)
        return replace(track, values=values)

    def mix(
        self,
        track: EmotionTrack,
        keys: Sequence[EmotionKey],
        mode: str = "blend",
        parameters: Mapping[str, Any] | None = None,
    ) -> EmotionTrack:
        """The emotions A2F gets when manual ``keys`` (``InferenceOptions.emotions``, seconds of
        the source file) meet a detected ``track``.

        Args:
            mode: "blend": the SDK's way: the keys, sampled at each frame's target like A2F's
                emotion input, become step 6's preferred emotion (``enable_preferred_emotion``
                turned on, ``preferred_emotion_strength`` from the config or ``parameters``;
                emotions the keys leave unset take the config's ``preferred_emotion``).
                "override": every emotion named in any key replaces the detected curve of that
                emotion (unset in a key = 0, as without an emotion model); the others stay
                detected.
            parameters: the ``post_processing_config`` overrides ``track`` was detected with.

        Returns:
            ``track`` itself without keys, else a copy with the mixed values.

        Raises:
            ParameterError: an unknown mode, bad keys or overrides.
        """
        if mode not in EMOTION_MIX_MODES:
            raise ParameterError(f"emotion_mix={mode!r} is unknown", hint="use blend or override")
        if not keys:
            return track
        keys = normalize_keys(keys, track.names)
        if mode == "blend":
            blend = {**(parameters or {}), "enable_preferred_emotion": True}
            default = self.settings(blend).preferred_emotion
            curve = explicit_emotion_curve(keys, track.names, default, start_s=track.start_s)
            return self.post_process(track, blend, preferred=curve.sample(track.targets))
        named = {name for _, values in keys for name in values}
        columns = [i for i, name in enumerate(track.names) if name in named]
        zeros = np.zeros(len(track.names), np.float32)
        manual = explicit_emotion_curve(keys, track.names, zeros, start_s=track.start_s)
        values = track.values.copy()
        values[:, columns] = manual.sample(track.targets)[:, columns]
        return replace(track, values=values)


# ----------------------------------------------------------------------------- on the executor


@dataclass(frozen=True)
class EmotionFrame:
    """One finished frame of an emotion stream: row ``index`` of :meth:`EmotionModel.detect`'s
    values for the whole clip.

    Attributes:
        index: frame number from the stream's start (0, 1, ...).
        time_s: ``index / fps`` seconds after the stream's first sample.
        emotions: float32 [10] in :attr:`names` order (A2F's explicit emotions).
    """

    index: int
    time_s: float
    emotions: np.ndarray
    names: ClassVar[tuple[str, ...]] = A2F_EMOTIONS


class _EmotionTrackState:
    """One track's schedule (frame rate, frames per inference) and what it produced: the
    logits of every inference (offline only: a stream keeps none) and, at the end, the values."""

    def __init__(self, fps: Fraction, group: int, classes: int, keep_logits: bool) -> None:
        self.fps = fps
        self.group = group  # frames per inference (inferences_to_skip + 1)
        self.keep_logits = keep_logits
        self._logits: list[np.ndarray] = [np.zeros((0, classes), np.float32)]
        self.values = np.zeros((0, len(A2F_EMOTIONS)), np.float32)

    def window_targets(self, first: int, count: int) -> np.ndarray:
        """Target samples of the first frames of inferences ``first .. first + count``."""
        return frame_targets_of(np.arange(first, first + count) * self.group, self.fps)

    def keep(self, logits: np.ndarray) -> None:
        if self.keep_logits:
            self._logits.append(logits)

    @property
    def logits(self) -> np.ndarray:
        """``[inferences, C]`` logits kept so far."""
        return np.concatenate(self._logits)


class EmotionStep:
    """The classifier as an executor step (:class:`a2x_core.executor.loop.ModelStep`): a unit is one
    inference; inference ``k`` reads ``buffer_length`` samples centred on the target of frame
    ``k * (inferences_to_skip + 1)`` (zeros outside the clip) and is ready once that window's
    end has arrived (or the clip ended). A call holds each track's next ready inferences, at
    most ``units_per_call`` per track, packed track after track into engine calls of at most
    :meth:`EmotionModel._windows_per_call` windows: the short tails of many clips or streams
    ride in one call, and only one call's windows are in memory. Windows are not padded to a
    fixed count: each row of the classifier reads its own window only, and padding would
    multiply the cost of a stream's single window per call."""

    def __init__(self, model: EmotionModel, buffer_length: int, units_per_call: int) -> None:
        self.model = model
        self.buffer_length = int(buffer_length)
        self.units_per_call = max(1, int(units_per_call))
        self.engine = model.engine(self.buffer_length)
        self.half = self.buffer_length // 2  # window start = target - half
        #: samples after an inference's first frame's target that its window reads
        self.lookahead = self.buffer_length - self.half

    def ready_units(self, track: Track) -> int:
        state: _EmotionTrackState = track.state
        received = track.audio.received
        if track.audio.ended:
            frames = num_frames_for(received, state.fps)
        else:  # window end t + lookahead <= received  <=>  t < received - lookahead + 1
            frames = num_frames_for(received - self.lookahead + 1, state.fps)
        return -(-frames // state.group)

    def keep_from(self, track: Track) -> int:
        state: _EmotionTrackState = track.state
        return max(0, int(state.window_targets(track.next_unit, 1)[0]) - self.half)

    def run(self, spans: Sequence[Span]) -> list[ChainStep]:
        limit = self.model._windows_per_call(self.buffer_length)
        outputs: list[list[np.ndarray]] = [[] for _ in spans]
        batch: list[tuple[int, np.ndarray]] = []  # (span, its windows) of the next engine call
        rows = 0
        for g, span in enumerate(spans):
            done = 0
            while done < span.count:
                take = min(span.count - done, limit - rows)
                batch.append((g, self._windows(span, span.first + done, take)))
                done += take
                rows += take
                if rows == limit:
                    self._infer(batch, outputs)
                    batch, rows = [], 0
        if batch:
            self._infer(batch, outputs)
        by_count: dict[int, list[int]] = {}
        logits = []
        for g, span in enumerate(spans):
            logits.append(np.concatenate(outputs[g]) if len(outputs[g]) > 1 else outputs[g][0])
            span.track.state.keep(logits[g])
            by_count.setdefault(span.count, []).append(g)
        return [
            ChainStep(
                np.stack([logits[g] for g in members]),
                [spans[g].track for g in members],
                [spans[g].first for g in members],
            )
            for members in by_count.values()
        ]

    def _windows(self, span: Span, first: int, count: int) -> np.ndarray:
        """``[count, buffer_length]`` windows of inferences ``first ..`` of ``span``'s track."""
        targets = span.track.state.window_targets(first, count)
        held, first_held = span.track.audio.view()
        return audio_windows(held, targets - first_held, self.buffer_length, self.half)

    def _infer(self, batch: list[tuple[int, np.ndarray]], outputs: list[list[np.ndarray]]) -> None:
        """One engine call on ``batch`` (span index, windows); each span's logits appended."""
        windows = np.concatenate([w for _, w in batch]) if len(batch) > 1 else batch[0][1]
        logits = self.engine.run({"input_values": windows})["output"].astype(np.float32)
        at = 0
        for g, part in batch:
            outputs[g].append(logits[at : at + len(part)])
            at += len(part)


@dataclass
class _EmotionSlot:
    """One track in an :class:`EmotionChain`: its post-processor (the smoothing state), frames
    per inference, how many frames exist so far, and the logits not yet spent."""

    processor: EmotionPostProcessor
    group: int
    frames_known: Callable[[], int]
    pending: list[np.ndarray] = field(default_factory=list)  # logits rows of inferences ...
    first_pending: int = 0  # ... from this inference on
    next_frame: int = 0  # frames emitted so far


class EmotionChain:
    """The stage after the classifier, shaped as :class:`a2x_core.postprocess.chain.PostChain`: the rows of a
    step are one slot's logits per inference; :meth:`take` repeats each inference's logits for
    its ``inferences_to_skip + 1`` frames (as :meth:`EmotionModel.post_process`) and runs the
    slot's :class:`EmotionPostProcessor` on every frame that exists so far (its target sample
    has arrived), handing out ``{"emotions": [n, 10]}`` per slot."""

    def __init__(self) -> None:
        self._slots: dict[int, _EmotionSlot] = {}
        self._next = 0

    def open_slot(self, stages: _EmotionSlot) -> int:
        slot = self._next
        self._next += 1
        stages.processor.reset()
        self._slots[slot] = stages
        return slot

    def release(self, slot: int) -> None:
        self._slots.pop(slot, None)

    def step(self, rows: Any, slots: Sequence[int], starts: Sequence[int]) -> None:
        rows = np.asarray(rows, np.float32)
        for g, slot in enumerate(slots):
            state = self._slots[slot]
            if int(starts[g]) != state.first_pending + len(state.pending):
                raise RuntimeError("emotion chain: inferences arrived out of order")
            state.pending.extend(rows[g])

    def take(self) -> dict[int, FrameBlock]:
        out = {}
        for slot, state in self._slots.items():
            ran = (state.first_pending + len(state.pending)) * state.group
            end = min(state.frames_known(), ran)
            if end <= state.next_frame:
                continue
            values = [
                state.processor.step(state.pending[i // state.group - state.first_pending])
                for i in range(state.next_frame, end)
            ]
            state.next_frame = end
            spent = end // state.group - state.first_pending  # inferences whose frames all left
            del state.pending[:spent]
            state.first_pending += spent
            out[slot] = {"emotions": np.stack(values)}
        return out


def _emotion_frames(track: Track, block: FrameBlock, first: int) -> list[EmotionFrame]:
    """A stream's finished rows as :class:`EmotionFrame` s (first index ``first``)."""
    fps = track.state.fps
    step_s = fps.denominator / fps.numerator
    return [
        EmotionFrame(first + i, (first + i) * step_s, np.asarray(row, np.float32))
        for i, row in enumerate(block["emotions"])
    ]


def check_buffer_length(buffer_length: int, name: str = "buffer_length") -> None:
    """The classifier window: an integer of at least 2 samples (spec §3).

    Raises:
        ParameterError: naming ``name``.
    """
    if isinstance(buffer_length, bool) or not isinstance(buffer_length, int) or buffer_length < 2:
        raise ParameterError(
            f"{name}={buffer_length!r} must be an integer >= 2 samples",
            hint=f"use {DEFAULT_BUFFER_LENGTH} (3.75 s) as the SDK samples do",
        )


def check_window(
    buffer_length: int,
    inferences_to_skip: int,
    fps: Fraction,
    *,
    names: tuple[str, str] = ("buffer_length", "inferences_to_skip"),
) -> None:
    """The SDK's executor checks (spec §3): stride = 16000/fps*(skip+1) <= buffer_length.

    Args:
        names: what to call the window and the skip count in messages (e.g. the options'
            ``("emotion_window", "emotion_skip")``).
    """
    window_name, skip_name = names
    check_buffer_length(buffer_length, window_name)
    if (
        isinstance(inferences_to_skip, bool)
        or not isinstance(inferences_to_skip, int)
        or inferences_to_skip < 0
    ):
        raise ParameterError(f"{skip_name}={inferences_to_skip!r} must be an integer >= 0")
    stride = Fraction(SAMPLE_RATE) / fps * (inferences_to_skip + 1)
    if stride > buffer_length:
        raise ParameterError(
            f"{skip_name}={inferences_to_skip} at {fps} fps advances "
            f"{math.ceil(stride)} samples per inference, more than {window_name}={buffer_length}",
            hint=f"lower {skip_name} or raise {window_name}",
        )


def emotion_keys(track: EmotionTrack) -> tuple[EmotionKey, ...]:
    """One ``InferenceOptions.emotions`` key per frame, at its target sample (seconds of the
    source file), all 10 emotions set: what the SDK's ``EmotionBinder`` feeds A2F (spec §5).

    Values are clipped to [0, 1] against float32 rounding (the post-processing stays inside).
    """
    times = track.start_s + track.targets / SAMPLE_RATE
    values = np.clip(track.values, 0.0, 1.0).astype(np.float64)
    return tuple(
        (float(t), dict(zip(track.names, row.tolist(), strict=True)))
        for t, row in zip(times.tolist(), values, strict=True)
    )
