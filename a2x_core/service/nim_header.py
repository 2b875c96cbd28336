"""A NIM ``AudioStreamHeader`` read into what a2x runs: the audio format checked, the face and
blend-shape parameters mapped to the model's parameters, and what a2x cannot apply listed.

How the NIM's header fields become a2x's (``docs/service.md``):

- ``face_params.float_params``: camelCase keys are the model's ``model_config.json`` keys
  (``lowerFaceSmoothing`` -> ``lower_face_smoothing``), validated by the model as the SDK's
  setters validate them. Keys the model has no parameter for (``blinkOffset``) are reported.
- ``blendshape_params``: multipliers/offsets by ARKit name (``JawOpen``; tongue names for the
  tongue solver) replace the model's ``bsWeightMultipliers``/``bsWeightOffsets`` of that pose,
  as the NIM hands them to the SDK's solver; the default model has no solver, so they are
  applied to its output weights (``w * m + o``). ``enable_clamping_bs_weight`` clamps the
  output weights to [0, 1].
- Timed emotions are the model's explicit emotion keys (seconds from the first sample).
- ``emotion_post_processing_params`` configure the NIM's Audio2Emotion stage: with
  ``a2x serve --emotion-model`` they are that model's ``post_processing_config`` overrides
  (same names) and the client's timed emotions are reported as not applied (the emotions are
  detected); without one they are accepted and reported in the final status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..names import ARKIT_52, TONGUE_16, match_name
from .hub import Limits

#: The NIM's audio: PCM (format 0), 16-bit, mono.
PCM_FORMAT = 0


@dataclass
class HeaderPlan:
    """What one stream runs with."""

    rate: int
    parameters: dict[str, Any] = field(default_factory=dict)
    #: the default model: per-ARKit-pose output multipliers/offsets (None = unchanged)
    multipliers: np.ndarray | None = None
    offsets: np.ndarray | None = None
    clamp: bool = False
    notes: list[str] = field(default_factory=list)
    #: with an emotion model: its ``post_processing_config`` overrides from the header
    emotion_parameters: dict[str, Any] = field(default_factory=dict)

    def shape(self, weights: np.ndarray) -> np.ndarray:
        """The output weights as the header asks (output multipliers/offsets, clamping)."""
        if self.multipliers is not None:
            weights = weights * self.multipliers + self.offsets
        if self.clamp:
            weights = np.clip(weights, 0.0, 1.0)
        return weights


def snake_case(name: str) -> str:
    """``lowerFaceSmoothing`` -> ``lower_face_smoothing``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def check_audio_header(audio_header: Any, limits: Limits) -> int:
    """The sample rate of a PCM16 mono header.

    Raises:
        ParameterError: naming the field and what the service takes.
    """
    if audio_header.audio_format != PCM_FORMAT:
        raise ParameterError(f"audio_header.audio_format={audio_header.audio_format} is not "
                             "supported", hint="send AUDIO_FORMAT_PCM (0)")  # fmt: skip
    if audio_header.bits_per_sample != 16:
        raise ParameterError(
            f"audio_header.bits_per_sample={audio_header.bits_per_sample} is not supported",
            hint="send 16-bit PCM (int16 little-endian)",
        )
    if audio_header.channel_count != 1:
        raise ParameterError(
            f"audio_header.channel_count={audio_header.channel_count} is not supported",
            hint="send mono audio (channel_count 1)",
        )
    rate = int(audio_header.samples_per_second)
    if not limits.min_rate <= rate <= limits.max_rate:
        raise ParameterError(
            f"audio_header.samples_per_second={rate} is out of range",
            hint=f"send {limits.min_rate}..{limits.max_rate} Hz (16000 is advised)",
        )
    return rate


def plan_header(header: Any, model: Any, limits: Limits, emotion_model: Any = None) -> HeaderPlan:
    """Read a ``controller.v1.AudioStreamHeader`` for ``model``.

    Raises:
        ParameterError: a bad audio header or a non-finite parameter value.
    """
    plan = HeaderPlan(rate=check_audio_header(header.audio_header, limits))
    known = set(model.parameter_ranges()) if hasattr(model, "parameter_ranges") else set()
    ignored: list[str] = []
    for key, value in sorted(header.face_params.float_params.items()):
        _check_finite(f"face_params.float_params[{key!r}]", value)
        name = snake_case(key)
        if name in known:
            plan.parameters[name] = float(value)
        else:
            ignored.append(key)
    if header.face_params.integer_params or header.face_params.float_array_params:
        ignored.append("integer_params/float_array_params")
    if ignored:
        plan.notes.append(f"face_params not applied to the {model.name} model: "
                          f"{', '.join(ignored)}")  # fmt: skip
    _plan_blendshapes(plan, header.blendshape_params, bool(known))
    pp = header.emotion_post_processing_params
    set_pp = {f.name: value for f, value in pp.ListFields()}
    if emotion_model is not None:
        # the NIM's EmotionPostProcessingParameters are post_processing_config keys of the
        # same names; the emotion model checks them (a bad one is a Status ERROR naming it)
        plan.emotion_parameters = set_pp
        emotion_model.settings(set_pp, label="emotion_post_processing_params")
        if header.emotion_params.ListFields():
            plan.notes.append("emotion_params not applied")
    elif set_pp or header.emotion_params.ListFields():
        plan.notes.append(
            "emotion_post_processing_params/emotion_params not applied (no Audio2Emotion "
            "model: start a2x serve with --emotion-model; timed emotions drive the model)"
        )
    return plan


def _plan_blendshapes(plan: HeaderPlan, params: Any, has_solver: bool) -> None:
    """Multipliers/offsets as solver overrides (Audio2Face models) or output scaling."""
    if params.HasField("enable_clamping_bs_weight"):
        plan.clamp = bool(params.enable_clamping_bs_weight)
    unknown: list[str] = []
    per_solver: dict[str, dict[str, dict[str, float]]] = {}
    output = {"bsWeightMultipliers": np.ones(52, np.float32), "bsWeightOffsets": np.zeros(52, np.float32)}
    for array, values in (("bsWeightMultipliers", params.bs_weight_multipliers),
                          ("bsWeightOffsets", params.bs_weight_offsets)):  # fmt: skip
        for key, value in sorted(values.items()):
            _check_finite(f"blendshape_params {array} [{key!r}]", value)
            skin = match_name(key, ARKIT_52)
            tongue = None if skin else match_name(key, TONGUE_16)
            if skin and not has_solver:
                output[array][ARKIT_52.index(skin)] = value
            elif skin or (tongue and has_solver):
                solver = "skin" if skin else "tongue"
                per_solver.setdefault(solver, {}).setdefault(array, {})[skin or tongue] = float(value)
            else:
                unknown.append(key)
    for solver, arrays in per_solver.items():
        for array, poses in arrays.items():
            plan.parameters[f"{solver}.{array}"] = poses
    if not has_solver and (params.bs_weight_multipliers or params.bs_weight_offsets):
        plan.multipliers, plan.offsets = output["bsWeightMultipliers"], output["bsWeightOffsets"]
    if unknown:
        plan.notes.append(f"blendshape_params names not known: {', '.join(dict.fromkeys(unknown))}")


def _check_finite(name: str, value: float) -> None:
    if not np.isfinite(value):
        raise ParameterError(f"{name}={value} is not a finite number", hint="send a number")
