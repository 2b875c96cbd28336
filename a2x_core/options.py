"""The one frozen options object shared by the CLI, the Python API and the DCC adapters."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

from .engine_choices import BACKENDS, PRECISIONS
from .errors import ParameterError
from .inputs import check_json_depth
from .timing import parse_fps

#: Emotion keys beyond this many (detected per frame) are summarised in JSON exports.
MAX_LISTED_EMOTION_KEYS = 100

#: One emotion key: (time in seconds, {emotion name: strength in [0, 1]}).
EmotionKey = tuple[float, Mapping[str, float]]

#: Audio2Emotion's window in samples as the SDK samples use it (3.75 s at 16 kHz, spec §1.6).
DEFAULT_EMOTION_WINDOW = 60_000
#: The longest A2E window a2x accepts (60 s; 32 such windows per call are 246 MB).
MAX_EMOTION_WINDOW = 960_000
#: How manual emotion keys meet detected ones (see ``InferenceOptions.emotion_mix``).
EMOTION_MIX_MODES = ("blend", "override")
#: When Audio2Emotion runs (see ``InferenceOptions.emotion_cadence``).
EMOTION_CADENCES = ("sdk", "per-frame")
#: Audio2Emotion's frame rate and skip count in NVIDIA's sample (sample-a2f-a2e-executor) and in
#: Maya-ACE: 30 fps, one inference per 31 frames (~1.03 s), whatever the A2F frame rate.
SDK_EMOTION_FPS = Fraction(30)
SDK_EMOTION_SKIP = 30
#: The largest thread count a2x passes to an engine (more only exhausts memory: ONNX Runtime
#: then fails with std::bad_alloc, which would look like a broken model).
MAX_THREADS = 1024
#: Seeds reach cuRAND as unsigned 64-bit and NumPy as non-negative integers.
MAX_SEED = 2**64 - 1
#: The latest time a2x accepts (start/end, emotion keys): about 11.6 days, far past any clip,
#: and small enough that seconds x sample rate stays an exact float.
MAX_TIME_S = 1e6


@dataclass(frozen=True)
class InferenceOptions:
    """How to turn audio into animation. Every field has a default that works out of the box.

    Attributes:
        fps: output frame rate as an exact fraction (default 60).
        start_s, end_s: the part of the audio to animate, in seconds (None = whole clip).
        transcript: the exact words spoken; the default model aligns to it instead of recognising.
        language: the spoken language for the default model, an ISO 639-1 code (``"en"``,
            ``"de"``, ``"ru"``, ``"zh"``, ...) or ``"auto"`` (default: from the transcript's
            script and words; English without one). Not English: language-independent phones
            without a transcript, the language's own pronunciations with one.
        fast: trade some accuracy for speed (default model: phone-loop recognition).
        seed: seeds every stochastic stage (blinks, saccades) so that runs repeat.
        strength: multiplies every output weight (then clipped to [0, 1]); 1 = as the model says.
        smoothing_s: extra zero-phase smoothing of the output curves, in seconds (0 = none);
            lip closures and blinks keep their unsmoothed peaks (0.02-0.05 takes out jitter).
        blinks: add procedural blinks (default model) where the model has none of its own.
        head_motion: amplitude of the voice-driven head motion and gaze
            (``head_rotations``; the default model's ``eye_rotations`` too; Audio2Face-3D
            results keep their own eyes): 1 = natural, 0 = none, up to 3.
        parameters: model-specific overrides by name, e.g. ``{"input_strength": 1.0}`` for an
            Audio2Face model (its ``model_config.json`` and blendshape-config keys).
        emotions: emotion keys for models that take an emotion input; one key = constant.
            With an emotion model they are mixed with the detected emotions (``emotion_mix``).
        identity: diffusion models: the identity to animate, matched case-insensitively by the
            model (None = the model's first).
        emotion_window: Audio2Emotion window in samples, centred on each frame (default 60000).
        emotion_cadence: when Audio2Emotion runs: "sdk" (default; as NVIDIA's sample and
            Maya-ACE: its own frames at 30 fps, one inference per ``emotion_skip + 1`` of them,
            each frame post-processed (live blend, transition) at dt 1/30; the face model
            interpolates the emotions at its own frames, as the SDK's EmotionBinder feeds it)
            or "per-frame" (the earlier default: Audio2Emotion at the output fps, one
            inference per frame unless ``emotion_skip`` says otherwise).
        emotion_skip: frames that reuse one Audio2Emotion inference (None = the cadence's:
            30 for "sdk", 0 for "per-frame").
        emotion_mix: how ``emotions`` meet detected emotions: "blend" (default; the SDK's way:
            the manual emotion is A2E's preferred emotion, weighted by
            ``preferred_emotion_strength``) or "override" (each emotion named in the keys
            replaces the detected curve of that emotion; the others stay detected).
        emotion_parameters: Audio2Emotion ``post_processing_config`` overrides by key, e.g.
            ``{"emotion_strength": 1.0}``.
        geometry: also return per-frame skin/tongue geometry (Audio2Face models).
        backend: inference engine: "auto", "onnxruntime", "tensorrt", "torch".
        device: where a GPU engine runs: "auto", "cpu", "cuda" or "cuda:N".
        precision: "fp32" (default; exact) or a GPU option: "tf32", "bf16", "fp16".
        threads: CPU threads for inference (None = all cores).
        compile_network: regression models on the torch engine with CUDA: run the network
            through ``torch.compile`` (seconds to compile once per process, then the highest
            throughput: docs/benchmarks.md); ignored elsewhere, with a warning.
    """

    fps: Fraction = Fraction(60)
    start_s: float | None = None
    end_s: float | None = None
    transcript: str | None = None
    language: str = "auto"
    fast: bool = False
    seed: int = 0
    strength: float = 1.0
    smoothing_s: float = 0.0
    blinks: bool = True
    head_motion: float = 1.0
    parameters: Mapping[str, Any] = field(default_factory=dict)
    emotions: tuple[EmotionKey, ...] = ()
    geometry: bool = False
    backend: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    compile_network: bool = False
    identity: str | None = None
    emotion_window: int = DEFAULT_EMOTION_WINDOW
    emotion_cadence: str = "sdk"
    emotion_skip: int | None = None
    emotion_mix: str = "blend"
    emotion_parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.fps, bool | np.bool_):
            raise ParameterError(f"fps={self.fps!r} is not a frame rate", hint="use e.g. 60 or 30000/1001")
        object.__setattr__(self, "fps", parse_fps(self.fps))
        for name in ("start_s", "end_s"):
            value = getattr(self, name)
            if value is not None:
                value = _real(name, value, "a time in seconds >= 0, or None")
                if not (math.isfinite(value) and 0 <= value <= MAX_TIME_S):
                    raise ParameterError(f"{name}={value} must be a time >= 0 in seconds",
                                         hint=f"use 0..{MAX_TIME_S:g} s or None")  # fmt: skip
                object.__setattr__(self, name, value)
        if self.end_s == 0:
            raise ParameterError("end_s=0 leaves no audio", hint="use an end time > 0 or None")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ParameterError(
                f"end_s={self.end_s} is not after start_s={self.start_s}", hint="swap or fix them"
            )
        strength = _real("strength", self.strength, "a number in 0..10")
        if not (math.isfinite(strength) and 0 <= strength <= 10):
            raise ParameterError(f"strength={self.strength} is out of range", hint="use 0..10")
        smoothing = _real("smoothing_s", self.smoothing_s, "seconds in 0..1")
        if not (math.isfinite(smoothing) and 0 <= smoothing <= 1):
            raise ParameterError(
                f"smoothing_s={self.smoothing_s} is out of range", hint="use 0..1 seconds"
            )
        object.__setattr__(self, "strength", strength)
        head = _real("head_motion", self.head_motion, "a number in 0..3")
        if not (math.isfinite(head) and 0 <= head <= 3):
            raise ParameterError(f"head_motion={self.head_motion} is out of range",
                                 hint="use 0 (none) .. 3; 1 is natural")  # fmt: skip
        object.__setattr__(self, "head_motion", head)
        object.__setattr__(self, "smoothing_s", smoothing)
        for name in ("fast", "blinks", "geometry", "compile_network"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                raise ParameterError(f"{name}={value!r} must be True or False")
            object.__setattr__(self, name, bool(value))
        if self.transcript is not None and not isinstance(self.transcript, str):
            raise ParameterError(f"transcript must be text or None, found {self.transcript!r}")
        from .lipsync.language import check_language  # light: errors only

        object.__setattr__(self, "language", check_language(self.language))
        seed = _integer("seed", self.seed)
        if not 0 <= seed <= MAX_SEED:
            raise ParameterError(f"seed={seed} is out of range", hint=f"use 0..{MAX_SEED}")
        object.__setattr__(self, "seed", seed)
        self._check_engine_fields()
        object.__setattr__(self, "parameters", _mapping("parameters", self.parameters))
        object.__setattr__(self, "emotions", _emotion_keys(self.emotions))
        self._check_emotion_fields()

    def _check_engine_fields(self) -> None:
        threads = check_engine_settings(self.backend, self.threads, self.device, self.precision)
        object.__setattr__(self, "threads", threads)

    def _check_emotion_fields(self) -> None:
        if self.identity is not None and (
            not isinstance(self.identity, str) or not self.identity.strip()
        ):
            raise ParameterError(
                f"identity={self.identity!r} must be a non-empty name",
                hint="pass an identity of the diffusion model (a2x info lists them) or None",
            )
        window = self.emotion_window
        if (
            isinstance(window, bool)
            or not isinstance(window, int)
            or not 2 <= window <= MAX_EMOTION_WINDOW
        ):
            raise ParameterError(
                f"emotion_window={window!r} must be an integer number of samples in "
                f"[2, {MAX_EMOTION_WINDOW}]",
                hint=f"use {DEFAULT_EMOTION_WINDOW} (3.75 s at 16 kHz) as the SDK samples do",
            )
        if self.emotion_cadence not in EMOTION_CADENCES:
            raise ParameterError(
                f"emotion_cadence={self.emotion_cadence!r} is unknown",
                hint="use sdk (30 fps, skip 30, as NVIDIA's sample) or per-frame",
            )
        skip = self.emotion_skip
        if skip is not None and (isinstance(skip, bool) or not isinstance(skip, int) or skip < 0):
            raise ParameterError(
                f"emotion_skip={skip!r} must be an integer >= 0",
                hint="0 runs Audio2Emotion for every frame; leave it unset for the cadence's",
            )
        if not isinstance(self.emotion_mix, str) or self.emotion_mix not in EMOTION_MIX_MODES:
            raise ParameterError(
                f"emotion_mix={self.emotion_mix!r} is unknown", hint="use blend or override"
            )
        if not isinstance(self.emotion_parameters, Mapping):
            raise ParameterError(
                f"emotion_parameters must map post_processing_config keys to values, found "
                f"{self.emotion_parameters!r}",
                hint='write e.g. {"emotion_strength": 1.0}',
            )
        object.__setattr__(
            self, "emotion_parameters", _mapping("emotion_parameters", self.emotion_parameters)
        )
        if self.emotion_parameters:
            from .models.audio2emotion import check_overrides  # the A2E module imports this one

            check_overrides(self.emotion_parameters, label="emotion_parameters")

    def emotion_schedule(self) -> tuple[Fraction, int]:
        """Audio2Emotion's frame rate and skip count for this run (``emotion_cadence``)."""
        if self.emotion_cadence == "sdk":
            fps, skip = SDK_EMOTION_FPS, SDK_EMOTION_SKIP
        else:
            fps, skip = self.fps, 0
        return fps, skip if self.emotion_skip is None else self.emotion_skip

    def with_changes(self, **changes: Any) -> InferenceOptions:
        """A copy with some fields changed (validated again)."""
        check_field_names(changes, "option")
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, fps as ``"num/den"``, for the ``a2x`` block of exports."""
        data = asdict(self)
        data["fps"] = f"{self.fps.numerator}/{self.fps.denominator}"
        data["parameters"] = dict(self.parameters)
        data["emotion_parameters"] = {
            str(k): v.tolist() if hasattr(v, "tolist") else v  # NumPy arrays -> JSON lists
            for k, v in self.emotion_parameters.items()
        }
        if len(self.emotions) <= MAX_LISTED_EMOTION_KEYS:
            data["emotions"] = [[t, dict(v)] for t, v in self.emotions]
        else:  # detected per-frame emotions: the result's own emotion curves hold them
            data["emotions"] = f"{len(self.emotions)} keys (see the per-frame emotions)"
        return data


def _real(name: str, value: Any, expected: str) -> float:
    """``value`` as a float, or a ParameterError naming ``name`` (bools and text refused)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name}={value!r} must be {expected}")
    try:
        return float(value)
    except OverflowError:  # a 400-digit integer
        raise ParameterError(f"{name}={value!r} is out of range; use {expected}") from None


def _integer(name: str, value: Any) -> int:
    """``value`` as an int (NumPy integers too), or a ParameterError naming ``name``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name}={value!r} must be a whole number")
    return int(value)


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    """A name → value mapping with text keys and JSON-sized nesting."""
    if not isinstance(value, Mapping):
        raise ParameterError(f"{name} must map names to values, found {value!r}",
                             hint='write e.g. {"input_strength": 1.0}')  # fmt: skip
    for key in value:
        if not isinstance(key, str):
            raise ParameterError(f"{name} key {key!r} must be text")
    return check_json_depth(value, name)


def _emotion_keys(value: Any) -> tuple[EmotionKey, ...]:
    """Emotion keys as a tuple of ``(time_s, {name: number})``; names and ranges are checked
    against the model later (``emotion.normalize_keys``)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, tuple | list):
        raise ParameterError(f"emotions={value!r} must be a sequence of (time_s, {{name: value}})",
                             hint='write e.g. ((0.0, {"joy": 0.7}),)')  # fmt: skip
    keys = []
    for number, key in enumerate(value):
        if not isinstance(key, tuple | list) or len(key) != 2 or not isinstance(key[1], Mapping):
            raise ParameterError(f"emotions[{number}]={key!r} must be (time_s, {{name: value}})",
                                 hint='write e.g. (0.0, {"joy": 0.7})')  # fmt: skip
        time_s = key[0] if type(key[0]) is float else _real(
            f"emotions[{number}] time", key[0], "seconds >= 0"
        )  # fast path: per-frame keys of a long clip are hundreds of thousands
        if not 0 <= time_s <= MAX_TIME_S:  # NaN fails too
            raise ParameterError(f"emotions[{number}] time {key[0]!r} is out of range",
                                 hint=f"use 0..{MAX_TIME_S:g} s")  # fmt: skip
        for name, strength in key[1].items():
            if not isinstance(name, str):
                raise ParameterError(f"emotions[{number}] name {name!r} must be text")
            if type(strength) is not float:
                _real(f"emotions[{number}] {name}", strength, "a number in 0..1")
        keys.append((key[0], key[1]))
    return tuple(keys)


def check_field_names(fields: Mapping[str, Any], label: str) -> None:
    """A ParameterError naming any key of ``fields`` that is not an InferenceOptions field."""
    unknown = sorted(set(fields) - set(InferenceOptions.__dataclass_fields__))
    if unknown:
        raise ParameterError(
            f"unknown {label}(s) {', '.join(map(str, unknown))}",
            hint=f"use fields of InferenceOptions: {', '.join(InferenceOptions.__dataclass_fields__)}",
        )


def check_engine_settings(backend: Any, threads: Any, device: Any, precision: Any) -> int | None:
    """The engine fields' checks, shared with ``backends.EngineSettings`` (``load_model``'s
    keywords): ``threads`` as an int in 1..MAX_THREADS or None.

    Raises:
        ParameterError: naming the field at fault.
    """
    for name, value, choices in (("precision", precision, PRECISIONS), ("backend", backend, BACKENDS)):
        if not isinstance(value, str) or value not in choices:
            raise ParameterError(f"{name}={value!r} is unknown", hint=f"use {', '.join(choices)}")
    if not isinstance(device, str) or not (
        device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]{1,4}", device)
    ):
        raise ParameterError(
            f"device={device!r} is unknown", hint="use auto, cpu, cuda or cuda:N (N = 0, 1, ...)"
        )
    if threads is None:
        return None
    count = _integer("threads", threads)
    if not 1 <= count <= MAX_THREADS:
        raise ParameterError(
            f"threads={count} is out of range", hint=f"use 1..{MAX_THREADS} (or None for all cores)"
        )
    return count
