"""Player inputs: read once per evaluation, validated, and turned into InferenceOptions.

:class:`PlayerInputs` is what the node's attributes hold, in plain Python values (times in
seconds). :meth:`PlayerInputs.options` builds the one :class:`InferenceOptions` the core
takes; :func:`track_key` says which inputs need a new inference (the cache key), while
per-pose multipliers and offsets are applied at playback and stay keyable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from a2x_core.errors import ParameterError
from a2x_core.options import InferenceOptions

from .attributes import (
    EMOTION_ATTRS,
    EMOTION_MIX_CHOICES,
    EMOTIONS,
    FACE_MULTIPLIERS,
    FACE_OFFSETS,
    PARAMETER_ATTRS,
    TONGUE_MULTIPLIERS,
    TONGUE_OFFSETS,
    ScalarAttr,
)


def check_scalar(attr: ScalarAttr, value: Any) -> float:
    """``value`` as a number within ``attr``'s hard range.

    Raises:
        ParameterError: not a finite number, or outside the range (named, with the range).
    """
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ParameterError(f"{attr.name}={value!r} is not a finite number")
    low = -math.inf if attr.min is None else attr.min
    high = math.inf if attr.max is None else attr.max
    if not low <= value <= high:
        raise ParameterError(
            f"{attr.name}={value} is out of range", hint=f"use a value in [{attr.min}, {attr.max}]"
        )
    if attr.kind in ("int", "enum") and not float(value).is_integer():
        raise ParameterError(f"{attr.name}={value} must be a whole number")
    return float(value)


def _padded(
    values: Sequence[float] | Mapping[int, float], size: int, default: float
) -> tuple[float, ...]:
    """Maya array values -> exactly ``size`` floats.

    ``values`` is a dense sequence or a sparse ``{logical index: value}`` mapping (what a
    multi attribute holds); missing elements take ``default``, extra ones are dropped.
    """
    if isinstance(values, Mapping):
        out = [default] * size
        for index, value in values.items():
            if 0 <= int(index) < size:
                out[int(index)] = float(value)
        return tuple(out)
    dense = [float(v) for v in list(values)[:size]]
    return tuple(dense + [default] * (size - len(dense)))


@dataclass(frozen=True)
class PlayerInputs:
    """Everything the node reads, in seconds and plain numbers.

    Attributes:
        audio_path: the audio file ("" = none).
        offset_s: scene time where the audio starts playing (the audio node's offset).
        start_s, end_s: the part of the file to play (``end_s`` < 0 = to the end).
        model: ``"default"`` or a model.json / folder path.
        scalars: attribute name -> value for :data:`PARAMETER_ATTRS` and the emotion controls
            (an enum's value is its index).
        preferred_emotions: one value per :data:`EMOTIONS` name.
        fps: rate to infer at (the scene's).
        emotion_model: an Audio2Emotion model.json or folder ("" = none).
        identity: a diffusion model's identity ("" = the model's first).
    """

    audio_path: str = ""
    offset_s: float = 0.0
    start_s: float = 0.0
    end_s: float = -1.0
    model: str = "default"
    scalars: Mapping[str, float] = field(default_factory=dict)
    preferred_emotions: tuple[float, ...] = (0.0,) * len(EMOTIONS)
    fps: Fraction = Fraction(60)
    emotion_model: str = ""
    identity: str = ""
    language: str = "auto"
    transcript: str = ""

    @classmethod
    def from_values(cls, values: Mapping[str, Any], fps: Fraction) -> PlayerInputs:
        """Build from attribute name -> value (what the node or ``getAttr`` read)."""
        scalars = {
            a.name: float(values.get(a.name, a.default)) for a in PARAMETER_ATTRS + EMOTION_ATTRS
        }
        return cls(
            audio_path=str(values.get("audioFile", "") or "").strip(),
            offset_s=float(values.get("audioOffset", 0.0)),
            start_s=float(values.get("audioStart", 0.0)),
            end_s=float(values.get("audioEnd", -1.0)),
            model=str(values.get("modelPath", "") or "default").strip() or "default",
            scalars=scalars,
            preferred_emotions=_padded(values.get("preferredEmotions", ()), len(EMOTIONS), 0.0),
            fps=fps,
            emotion_model=str(values.get("emotionModelPath", "") or "").strip(),
            identity=str(values.get("identity", "") or "").strip(),
            language=str(values.get("language", "") or "auto").strip() or "auto",
            transcript=str(values.get("transcript", "") or "").strip(),
        )

    def validate(self) -> None:
        """Raise :class:`ParameterError` naming the first bad input and the fix."""
        if not self.audio_path:
            raise ParameterError(
                "no audio file", hint="set audioFile or connect an audio node (a2xCreatePlayer)"
            )
        if not os.path.isfile(self.audio_path):
            raise ParameterError("audio file not found", path=self.audio_path, hint="fix audioFile")
        for name in ("offset_s", "start_s", "end_s"):
            if not math.isfinite(getattr(self, name)):
                raise ParameterError(f"{name}={getattr(self, name)} is not a finite time")
        if self.start_s < 0:
            raise ParameterError(f"audioStart={self.start_s}s is negative", hint="use 0 or more")
        if 0 <= self.end_s <= self.start_s:
            raise ParameterError(
                f"audioEnd={self.end_s}s is not after audioStart={self.start_s}s",
                hint="set audioEnd to -1 (whole file) or after audioStart",
            )
        for attr in PARAMETER_ATTRS + EMOTION_ATTRS:
            check_scalar(attr, self.scalars.get(attr.name, attr.default))
        for name, value in zip(EMOTIONS, self.preferred_emotions, strict=True):
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ParameterError(f"preferred_{name}={value} is out of range", hint="use 0..1")
        if self.emotion_model:
            if not os.path.exists(self.emotion_model):
                raise ParameterError(
                    "emotion model not found", path=self.emotion_model,
                    hint="fix emotionModelPath (an Audio2Emotion model.json) or clear it",
                )  # fmt: skip
            strength = self.scalars.get("emotionStrength", 0.6)
            if strength > 1.0:  # Audio2Emotion's emotion_strength is 0..1
                raise ParameterError(
                    f"emotionStrength={strength} is out of range with an emotion model",
                    hint="use a value in [0, 1]",
                )

    @property
    def emotion_mix(self) -> str:
        """``"blend"`` or ``"override"`` (the ``emotionMix`` enum)."""
        index = int(self.scalars.get("emotionMix", 0.0))
        return EMOTION_MIX_CHOICES[min(max(index, 0), len(EMOTION_MIX_CHOICES) - 1)]

    def emotion_vector(self) -> dict[str, float]:
        """Explicit emotion input: emotionStrength x preferredEmotionStrength x preferred.

        Without an audio-to-emotion model the automatic emotion is zero, so the SDK's blend
        ``strength * ((1 - w) * auto + w * preferred)`` reduces to this. Empty when disabled.
        """
        if not self.scalars.get("enablePreferredEmotion", 1.0):
            return {}
        scale = self.scalars.get("emotionStrength", 0.6) * self.scalars.get(
            "preferredEmotionStrength", 0.5
        )
        return {n: scale * v for n, v in zip(EMOTIONS, self.preferred_emotions, strict=True) if v}

    def model_parameters(self, accepted: Sequence[str] | None) -> dict[str, float]:
        """Face/tongue values as model parameters, limited to those the model ``accepted``
        (None = the model lists none: pass nothing)."""
        if not accepted:
            return {}
        wanted = set(accepted)
        return {
            a.core_key: self.scalars.get(a.name, a.default)
            for a in PARAMETER_ATTRS
            if a.core_key in wanted
        }

    def options(
        self, accepted_parameters: Sequence[str] | None, emotion_names: Sequence[str] = ()
    ) -> InferenceOptions:
        """The core options for this input (emotions only for models that take them).

        Without an emotion model the emotion input is :meth:`emotion_vector`. With one
        (``emotionModelPath``), the emotion controls become Audio2Emotion's, as in the SDK
        and Maya-ACE: ``emotionStrength`` and ``preferredEmotionStrength`` are its
        ``emotion_strength`` and ``preferred_emotion_strength``, and the preferred emotions
        meet the detected ones as ``emotionMix`` says: "blend" sends them as the preferred
        emotion (all ten; none when disabled or all 0, so that the detected emotions play
        unchanged), "override" sends :meth:`emotion_vector`, whose emotions replace the
        detected curves of the same names.
        """
        known = {n.lower(): n for n in emotion_names}

        def mapped(values: dict[str, float]) -> dict[str, float]:
            return {known[k.lower()]: v for k, v in values.items() if k.lower() in known}

        common: dict[str, Any] = {
            "fps": self.fps,
            "start_s": self.start_s if self.start_s > 0 else None,
            "end_s": self.end_s if self.end_s >= 0 else None,
            "parameters": self.model_parameters(accepted_parameters),
            "identity": self.identity or None,
            "language": self.language,
            "transcript": self.transcript or None,
        }
        if not self.emotion_model:
            manual = mapped(self.emotion_vector()) if emotion_names else {}
            return InferenceOptions(**common, emotions=((0.0, manual),) if manual else ())
        scalars = self.scalars
        a2e: dict[str, Any] = {
            "emotion_strength": scalars.get("emotionStrength", 0.6),
            "preferred_emotion_strength": scalars.get("preferredEmotionStrength", 0.5),
        }
        if self.emotion_mix == "blend":
            enabled = bool(scalars.get("enablePreferredEmotion", 1.0))
            preferred = dict(zip(EMOTIONS, self.preferred_emotions, strict=True))
            manual = mapped(preferred) if enabled and any(preferred.values()) else {}
            if not manual:
                a2e["enable_preferred_emotion"] = False
        else:
            manual = mapped(self.emotion_vector())
        return InferenceOptions(
            **common,
            emotions=((0.0, manual),) if manual else (),
            emotion_window=int(scalars.get("emotionWindow", 60000)),
            emotion_skip=int(scalars.get("emotionSkip", 30)),
            emotion_mix=self.emotion_mix,
            emotion_parameters=a2e,
        )


def track_key(inputs: PlayerInputs) -> tuple[Any, ...]:
    """What a computed track depends on: a change here starts a new inference.

    The file's size and modification time are part of it (the emotion model's too), so
    re-recording the line updates the track; the audio offset and the multipliers/offsets
    are not (applied at playback).
    """
    scalars = tuple(sorted(inputs.scalars.items()))
    return (
        _file_key(inputs.audio_path), inputs.start_s, inputs.end_s, inputs.model, scalars,
        inputs.preferred_emotions, inputs.fps, _file_key(inputs.emotion_model), inputs.identity,
        inputs.language, inputs.transcript,
    )  # fmt: skip


def _file_key(path: str) -> tuple[Any, ...]:
    """A file by absolute path, size and modification time (a re-saved file is a new key)."""
    if not path:
        return ("",)
    try:
        stat = os.stat(path)
        return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return (path, None, None)


@dataclass(frozen=True)
class PlaybackControls:
    """Per-pose multipliers and offsets (output = weight * multiplier + offset)."""

    face_multipliers: tuple[float, ...] = (1.0,) * len(FACE_MULTIPLIERS.names)
    face_offsets: tuple[float, ...] = (0.0,) * len(FACE_OFFSETS.names)
    tongue_multipliers: tuple[float, ...] = (1.0,) * len(TONGUE_MULTIPLIERS.names)
    tongue_offsets: tuple[float, ...] = (0.0,) * len(TONGUE_OFFSETS.names)

    @classmethod
    def from_values(cls, values: Mapping[str, Sequence[float]]) -> PlaybackControls:
        """From attribute name -> element values (sparse arrays padded with defaults)."""
        return cls(
            *(
                _padded(values.get(a.name, ()), len(a.names), a.default)
                for a in (FACE_MULTIPLIERS, FACE_OFFSETS, TONGUE_MULTIPLIERS, TONGUE_OFFSETS)
            )
        )

    def multipliers(self) -> tuple[float, ...]:
        """One multiplier per output pose (ARKit-52 then tongue)."""
        return self.face_multipliers + self.tongue_multipliers

    def offsets(self) -> tuple[float, ...]:
        """One offset per output pose (ARKit-52 then tongue)."""
        return self.face_offsets + self.tongue_offsets


def _per_identity(info: Mapping[str, Any]) -> dict[str, Mapping[str, Any]] | None:
    """A diffusion model's ``info()["parameters"]`` (``{identity: {name: value}}``, one
    entry per name of ``info()["identities"]``) by identity; None for flat parameters."""
    raw = info.get("parameters")
    identities = [str(i) for i in info.get("identities") or ()]
    if not identities or not isinstance(raw, Mapping) or not raw:
        return None
    if not all(str(k) in identities and isinstance(v, Mapping) for k, v in raw.items()):
        return None
    return {str(k): v for k, v in raw.items()}


def model_parameters_of(info: Mapping[str, Any], identity: str = "") -> Mapping[str, Any]:
    """``info()["parameters"]`` as one flat ``{name: value}`` mapping.

    A diffusion model lists its parameters per identity: then those of ``identity``
    (case-insensitive, as the core matches it; "" = the model's first).

    Raises:
        ParameterError: ``identity`` is not one of the diffusion model's (the error lists them).
    """
    raw = info.get("parameters") or {}
    if not isinstance(raw, Mapping):
        return {}
    by_identity = _per_identity(info)
    if by_identity is None:
        return raw
    wanted = identity.strip().casefold()
    for name, values in by_identity.items():
        if not wanted or name.casefold() == wanted:
            return values
    raise ParameterError(
        f"the model has no identity {identity!r}",
        hint=f"set identity to one of: {', '.join(by_identity)} (or empty for the first)",
    )


def model_parameter_names(info: Mapping[str, Any]) -> list[str]:
    """Every parameter name ``info()["parameters"]`` lists (a diffusion model's: of any
    identity, they all take the same names)."""
    by_identity = _per_identity(info)
    if by_identity is None:
        raw = info.get("parameters")
        return [str(k) for k in raw] if isinstance(raw, Mapping) else []
    return list(dict.fromkeys(str(k) for values in by_identity.values() for k in values))


def model_parameter_defaults(info: Mapping[str, Any], identity: str = "") -> dict[str, float]:
    """Model parameter defaults from ``model.info()["parameters"]`` (a diffusion model's:
    ``identity``'s, see :func:`model_parameters_of`).

    Accepts ``{name: number}`` or ``{name: {"default": number, ...}}``; anything else is
    skipped. Returns core key -> value for the keys the player exposes.
    """
    raw = model_parameters_of(info, identity)
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            value = value.get("default", value.get("value"))
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out


def attribute_defaults_for_model(info: Mapping[str, Any], identity: str = "") -> dict[str, float]:
    """Attribute name -> the model's default, for "Load Model Defaults" (Maya-ACE resets the
    face/tongue sliders to the model's ``model_config.json`` when a model is chosen; a
    diffusion model has one per identity: ``identity``'s, "" = the first)."""
    defaults = model_parameter_defaults(info, identity)
    out: dict[str, float] = {}
    for attr in PARAMETER_ATTRS:
        if attr.core_key in defaults:
            out[attr.name] = check_scalar(attr, defaults[attr.core_key])
    return out
