"""The player node's attributes as data: names, defaults, ranges, keyability, core keys.

The node, the Attribute-Editor-free panel and the tests all read these tables, so an
attribute is added in one place. Names, defaults and ranges follow Maya-ACE's
``A2FAnimationPlayer`` (face/tongue/emotion parameters, per-pose multiplier/offset arrays,
``out_<pose>`` aliases); ``core_key`` is the matching ``model_config.json`` key that
:class:`a2x_core.options.InferenceOptions` ``parameters`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from a2x_core.names import ARKIT_52, TONGUE_16

#: Output weight layout, fixed whatever the model: ARKit-52 (Audio2Face order), then the 16
#: tongue poses (zeros for models without a tongue). Connections survive a model change.
OUTPUT_POSES: tuple[str, ...] = ARKIT_52 + TONGUE_16

#: The 10 explicit emotions of Audio2Face-3D regression models, in network order.
EMOTIONS: tuple[str, ...] = (
    "amazement", "anger", "cheekiness", "disgust", "fear", "grief", "joy", "outofbreath",
    "pain", "sadness",
)  # fmt: skip


@dataclass(frozen=True)
class ScalarAttr:
    """One float/int/bool input attribute.

    Attributes:
        name, short: Maya long and short attribute names.
        default: default value (Maya-ACE's default).
        min, max: hard range (None = unbounded); values outside are rejected.
        soft_min, soft_max: slider range in the UI.
        core_key: the model parameter it sets (None = used by the adapter itself).
        kind: "float", "int", "bool" or "enum" (the value is the index into ``choices``).
        keyable: shown in the channel box and keyable (Maya-ACE keys only the arrays).
        group: UI section ("face", "tongue", "emotion").
    """

    name: str
    short: str
    default: float
    min: float | None = None
    max: float | None = None
    soft_min: float | None = None
    soft_max: float | None = None
    core_key: str | None = None
    kind: str = "float"
    keyable: bool = False
    group: str = "face"
    choices: tuple[str, ...] = ()


FACE_ATTRS: tuple[ScalarAttr, ...] = (
    ScalarAttr("lowerFaceSmoothing", "lfsm", 0.0023, 0.0, 0.1, core_key="lower_face_smoothing"),
    ScalarAttr("upperFaceSmoothing", "ufsm", 0.001, 0.0, 0.1, core_key="upper_face_smoothing"),
    ScalarAttr("lowerFaceStrength", "lfst", 1.3, 0.0, 2.0, core_key="lower_face_strength"),
    ScalarAttr("upperFaceStrength", "ufst", 1.0, 0.0, 2.0, core_key="upper_face_strength"),
    ScalarAttr("faceMaskLevel", "fml", 0.6, 0.0, 1.0, core_key="face_mask_level"),
    ScalarAttr("faceMaskSoftness", "fms", 0.0085, 0.001, 0.5, core_key="face_mask_softness"),
    ScalarAttr("skinStrength", "sks", 1.0, 0.0, 2.0, core_key="skin_strength"),
    ScalarAttr("eyelidOpenOffset", "eoo", 0.06, -1.0, 1.0, core_key="eyelid_open_offset"),
    ScalarAttr("lipOpenOffset", "loo", -0.03, -0.2, 0.2, core_key="lip_open_offset"),
)

TONGUE_ATTRS: tuple[ScalarAttr, ...] = (
    ScalarAttr("tongueStrength", "tgs", 1.5, 0.0, 3.0, core_key="tongue_strength", group="tongue"),
    ScalarAttr(
        "tongueHeightOffset", "tgh", 0.2, -3.0, 3.0, core_key="tongue_height_offset", group="tongue"
    ),
    ScalarAttr(
        "tongueDepthOffset", "tgd", 0.13, -3.0, 3.0, core_key="tongue_depth_offset", group="tongue"
    ),
)

#: How the preferred emotion meets the emotions an Audio2Emotion model detects
#: (``InferenceOptions.emotion_mix``).
EMOTION_MIX_CHOICES: tuple[str, ...] = ("blend", "override")

#: Emotion controls. Without an emotion model (``emotionModelPath``) the emotion input is the
#: preferred emotion alone: ``emotionStrength * preferredEmotionStrength * preferred_<e>``.
#: With one, they are Audio2Emotion's post-processing settings (see
#: :meth:`a2x_maya.parameters.PlayerInputs.options`), and window/skip/mix apply.
EMOTION_ATTRS: tuple[ScalarAttr, ...] = (
    ScalarAttr("emotionStrength", "ems", 0.6, 0.0, None, 0.0, 1.0, group="emotion"),
    ScalarAttr("enablePreferredEmotion", "epe", 1.0, kind="bool", group="emotion"),
    ScalarAttr("preferredEmotionStrength", "pes", 0.5, 0.0, 1.0, group="emotion"),
    ScalarAttr("emotionMix", "emx", 0.0, 0.0, 1.0, kind="enum", group="emotion",
               choices=EMOTION_MIX_CHOICES),  # fmt: skip
    ScalarAttr("emotionWindow", "emw", 60000.0, 2.0, 960000.0, 8000.0, 160000.0, kind="int",
               group="emotion"),  # fmt: skip
    # A2E frames (30 fps, the SDK cadence) that reuse one inference: 30 as NVIDIA's sample
    ScalarAttr("emotionSkip", "esk", 30.0, 0.0, None, 0.0, 60.0, kind="int", group="emotion"),
)

PARAMETER_ATTRS: tuple[ScalarAttr, ...] = FACE_ATTRS + TONGUE_ATTRS


@dataclass(frozen=True)
class ArrayAttr:
    """A multi (array) float attribute whose elements carry per-name aliases.

    Attributes:
        name, short: Maya long and short names.
        names: element names, element ``i`` is aliased ``alias_prefix + names[i]``.
        alias_prefix: e.g. ``"out_"``.
        default: element default.
        min, soft_max: element range (Maya-ACE: min 0, soft max 2 for multipliers/offsets).
        keyable: keyable elements (multipliers and offsets are).
        output: computed by the node (not writable, not stored).
    """

    name: str
    short: str
    names: tuple[str, ...]
    alias_prefix: str
    default: float = 0.0
    min: float | None = None
    soft_max: float | None = None
    keyable: bool = False
    output: bool = False

    def aliases(self) -> list[tuple[str, str]]:
        """``(alias, "attr[i]")`` pairs for ``aliasAttr``."""
        return [(self.alias_prefix + n, f"{self.name}[{i}]") for i, n in enumerate(self.names)]


FACE_MULTIPLIERS = ArrayAttr(
    "faceMultipliers", "fmu", ARKIT_52, "faceMultiplier_", 1.0, 0.0, 2.0, keyable=True
)
FACE_OFFSETS = ArrayAttr("faceOffsets", "fof", ARKIT_52, "faceOffset_", 0.0, None, 1.0, keyable=True)
TONGUE_MULTIPLIERS = ArrayAttr(
    "tongueMultipliers", "tmu", TONGUE_16, "tongueMultiplier_", 1.0, 0.0, 2.0, keyable=True
)
TONGUE_OFFSETS = ArrayAttr(
    "tongueOffsets", "tof", TONGUE_16, "tongueOffset_", 0.0, None, 1.0, keyable=True
)
PREFERRED_EMOTIONS = ArrayAttr(
    "preferredEmotions", "pre", EMOTIONS, "preferred_", 0.0, 0.0, 1.0
)
OUTPUT_WEIGHTS = ArrayAttr("outputWeights", "ow", OUTPUT_POSES, "out_", output=True)
#: The emotion input the face model got per frame (preferred, detected or mixed).
OUTPUT_EMOTIONS = ArrayAttr("outputEmotions", "oe", EMOTIONS, "out_", output=True)
#: What the emotion model detected (zeros without one).
OUTPUT_DETECTED_EMOTIONS = ArrayAttr(
    "outputDetectedEmotions", "ode", EMOTIONS, "detected_", output=True
)

INPUT_ARRAYS: tuple[ArrayAttr, ...] = (
    FACE_MULTIPLIERS, FACE_OFFSETS, TONGUE_MULTIPLIERS, TONGUE_OFFSETS, PREFERRED_EMOTIONS,
)  # fmt: skip
OUTPUT_ARRAYS: tuple[ArrayAttr, ...] = (OUTPUT_WEIGHTS, OUTPUT_EMOTIONS, OUTPUT_DETECTED_EMOTIONS)

#: Keyable attributes ``a2xBake -keyEmotions`` adds to a node and keys (0..1 each):
#: ``a2x_emotion_<e>`` (the emotion input) and ``a2x_emotion_detected_<e>``.
BAKED_EMOTION_PREFIX = "a2x_emotion_"
BAKED_DETECTED_PREFIX = BAKED_EMOTION_PREFIX + "detected_"

#: Inputs read as plain values: (long name, short name, kind, default).
#: ``audioEnd`` < 0 means "to the end of the file" (as Maya-ACE).
SOURCE_ATTRS: tuple[tuple[str, str, str, object], ...] = (
    ("time", "tm", "time", 0.0),
    ("audioFile", "af", "string", ""),
    ("audioOffset", "aof", "time", 0.0),
    ("audioStart", "ast", "time", 0.0),
    ("audioEnd", "aen", "time", -1.0),
    ("modelPath", "mp", "string", "default"),
    ("emotionModelPath", "emp", "string", ""),  # Audio2Emotion model.json ("" = none)
    ("identity", "idn", "string", ""),  # diffusion models ("" = the model's first)
    ("language", "lng", "string", "auto"),  # the default model's spoken language (ISO 639-1)
    ("transcript", "trs", "string", ""),  # the default model's exact words ("" = recognised)
)

#: Outputs besides the arrays: jaw 4x4 (Maya row-vector layout), eye rotations (degrees).
JAW_TRANSFORM = ("jawTransform", "jt")
EYE_ROTATIONS = (("rightEyeRotation", "rer"), ("leftEyeRotation", "ler"))
#: Hidden progress readout of the background job (0..1, 1 = track ready).
PROGRESS = ("trackProgress", "tpr")


def all_aliases() -> list[tuple[str, str]]:
    """Every alias the node carries, inputs and outputs: ``(alias, "attr[i]")``."""
    out: list[tuple[str, str]] = []
    for array in INPUT_ARRAYS + OUTPUT_ARRAYS:
        out.extend(array.aliases())
    return out


def scalar_by_name(name: str) -> ScalarAttr:
    """The scalar attribute called ``name`` (KeyError naming the valid choices)."""
    for attr in PARAMETER_ATTRS + EMOTION_ATTRS:
        if attr.name == name:
            return attr
    valid = ", ".join(a.name for a in PARAMETER_ATTRS + EMOTION_ATTRS)
    raise KeyError(f"{name!r} is not a player attribute; attributes: {valid}")
