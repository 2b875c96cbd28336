"""The one frozen options object shared by the CLI, the Python API and the DCC adapters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any

from .errors import ParameterError
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


@dataclass(frozen=True)
class InferenceOptions:
    """How to turn audio into animation. Every field has a default that works out of the box.

    Attributes:
        fps: output frame rate as an exact fraction (default 60).
        start_s, end_s: the part of the audio to animate, in seconds (None = whole clip).
        transcript: the exact words spoken; the default model aligns to it instead of recognising.
        fast: trade some accuracy for speed (default model: phone-loop recognition).
        seed: seeds every stochastic stage (blinks, saccades) so that runs repeat.
        strength: multiplies every output weight (then clipped to [0, 1]); 1 = as the model says.
        smoothing_s: extra zero-phase smoothing of the output curves, in seconds (0 = none).
        blinks: add procedural blinks (default model) where the model has none of its own.
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
    fast: bool = False
    seed: int = 0
    strength: float = 1.0
    smoothing_s: float = 0.0
    blinks: bool = True
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
        object.__setattr__(self, "fps", parse_fps(self.fps))
        for name in ("start_s", "end_s"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ParameterError(f"{name}={value} must be a time >= 0 in seconds")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ParameterError(
                f"end_s={self.end_s} is not after start_s={self.start_s}", hint="swap or fix them"
            )
        if not (math.isfinite(self.strength) and 0 <= self.strength <= 10):
            raise ParameterError(f"strength={self.strength} is out of range", hint="use 0..10")
        if not (math.isfinite(self.smoothing_s) and 0 <= self.smoothing_s <= 1):
            raise ParameterError(
                f"smoothing_s={self.smoothing_s} is out of range", hint="use 0..1 seconds"
            )
        if self.threads is not None and self.threads < 1:
            raise ParameterError(f"threads={self.threads} must be >= 1")
        if self.precision not in ("fp32", "tf32", "bf16", "fp16"):
            raise ParameterError(
                f"precision={self.precision!r} is unknown", hint="use fp32, tf32, bf16 or fp16"
            )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ParameterError(
                f"device={self.device!r} is unknown", hint="use auto, cpu, cuda or cuda:N"
            )
        if self.backend not in ("auto", "onnxruntime", "tensorrt", "torch"):
            raise ParameterError(
                f"backend={self.backend!r} is unknown",
                hint="use auto, onnxruntime, tensorrt or torch",
            )
        self._check_emotion_fields()

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
        if self.emotion_mix not in EMOTION_MIX_MODES:
            raise ParameterError(
                f"emotion_mix={self.emotion_mix!r} is unknown", hint="use blend or override"
            )
        if not isinstance(self.emotion_parameters, Mapping):
            raise ParameterError(
                f"emotion_parameters must map post_processing_config keys to values, found "
                f"{self.emotion_parameters!r}",
                hint='write e.g. {"emotion_strength": 1.0}',
            )
        if self.emotion_parameters:
            from .audio2emotion import check_overrides  # the A2E module imports this one

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
