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
        geometry: also return per-frame skin/tongue geometry (Audio2Face models).
        backend: inference engine: "auto", "onnxruntime", "tensorrt", "torch".
        device: where a GPU engine runs: "auto", "cpu", "cuda" or "cuda:N".
        precision: "fp32" (default; exact) or a GPU option: "tf32", "bf16", "fp16".
        threads: CPU threads for inference (None = all cores).
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

    def with_changes(self, **changes: Any) -> InferenceOptions:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, fps as ``"num/den"``, for the ``a2x`` block of exports."""
        data = asdict(self)
        data["fps"] = f"{self.fps.numerator}/{self.fps.denominator}"
        data["parameters"] = dict(self.parameters)
        if len(self.emotions) <= MAX_LISTED_EMOTION_KEYS:
            data["emotions"] = [[t, dict(v)] for t, v in self.emotions]
        else:  # detected per-frame emotions: the result's own emotion curves hold them
            data["emotions"] = f"{len(self.emotions)} keys (see the per-frame emotions)"
        return data
