"""Settings as PropertyGroups: per scene (``scene.a2x``) and per session (``wm.a2x_job``).

They are converted once into the core's plain values (``InferenceOptions``, mapping rows) by
:func:`operators.gather_request`; nothing reads them by string key.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup

_SOURCE_ITEMS: list[tuple[str, str, str]] = []


def source_items(_self=None, _context=None) -> list[tuple[str, str, str]]:
    """ARKit-52 and the tongue poses as enum items (kept alive for Blender's enum cache)."""
    if not _SOURCE_ITEMS:
        from a2x_core.retarget import SOURCE_NAMES

        _SOURCE_ITEMS.extend((n, n, f"Curve {n} of the model's output") for n in SOURCE_NAMES)
    return _SOURCE_ITEMS


#: Every identity list's enum items, by names: Blender keeps pointers into the strings a
#: dynamic enum returned, so an items list is never dropped or changed once handed out.
_IDENTITY_ITEMS: dict[tuple[str, ...], list[tuple[str, str, str]]] = {}
#: The identity enum's only item before a diffusion model's identities are loaded.
NO_IDENTITY = "NONE"


def identity_items(self, _context=None) -> list[tuple[str, str, str]]:
    """The loaded diffusion model's identities as enum items (kept alive for good)."""
    names = tuple(item.name for item in self.identities)
    items = _IDENTITY_ITEMS.get(names)
    if items is None:
        items = [(n, n, f"Animate the face of {n}") for n in names]
        if not items:
            items = [(NO_IDENTITY, "Model's First", "Load the model's info to list its identities")]
        items = _IDENTITY_ITEMS.setdefault(names, items)
    return items


def _has_shape_keys(_self, obj: bpy.types.Object) -> bool:
    data = getattr(obj, "data", None)
    return getattr(data, "shape_keys", None) is not None


def _language_search(_self, _context, typed: str) -> list[tuple[str, str]]:
    """The Language field's suggestions: auto and the codes the default model knows."""
    from a2x_core.lipsync.language import language_suggestions

    return language_suggestions(typed)


def _start_frame_changed(self, context: bpy.types.Context) -> None:
    from . import bake

    bake.move_sound_strip(context.scene, self.start_frame)


class A2XName(PropertyGroup):
    """A name in a read-only list (unmatched shapes, unused sources)."""


class A2XCandidate(PropertyGroup):
    """A shape that matches a source curve which already drives another shape (``name`` is
    the shape): left out of the table, listed for the artist to add on purpose."""

    source: StringProperty(name="Source")  # type: ignore[valid-type]


class A2XTarget(PropertyGroup):
    object: PointerProperty(  # type: ignore[valid-type]
        name="Object", type=bpy.types.Object, poll=_has_shape_keys,
        description="A mesh, curve or lattice whose shape keys receive the animation",
    )  # fmt: skip


class A2XMappingRow(PropertyGroup):
    """One target shape driven by one source curve: value = curve * multiplier + offset."""

    target: StringProperty(  # type: ignore[valid-type]
        name="Shape", description="Shape key name on the target objects"
    )
    source: EnumProperty(  # type: ignore[valid-type]
        name="Source", items=source_items,
        description="Curve of the model's output that drives this shape",
    )  # fmt: skip
    multiplier: FloatProperty(  # type: ignore[valid-type]
        name="Multiplier", default=1.0, soft_min=0.0, soft_max=2.0,
        description="Scales the curve for this shape",
    )  # fmt: skip
    offset: FloatProperty(  # type: ignore[valid-type]
        name="Offset", default=0.0, soft_min=-1.0, soft_max=1.0,
        description="Added to the curve after scaling",
    )  # fmt: skip
    enabled: BoolProperty(  # type: ignore[valid-type]
        name="Enabled", default=True, description="Bake this shape"
    )


class A2XEmotion(PropertyGroup):
    value: FloatProperty(  # type: ignore[valid-type]
        name="Strength", default=0.0, min=0.0, max=1.0, subtype="FACTOR",
        description="How strongly the face shows this emotion (constant over the clip)",
    )  # fmt: skip


class A2XModelEntry(PropertyGroup):
    """A model found in the folders of the add-on preferences (``name`` is shown)."""

    path: StringProperty(name="model.json", subtype="FILE_PATH")  # type: ignore[valid-type]


class A2XSettings(PropertyGroup):
    """Everything the panel edits, stored with the scene."""

    audio_source: EnumProperty(  # type: ignore[valid-type]
        name="Audio", default="FILE",
        items=[("FILE", "File", "An audio file on disk"),
               ("STRIP", "Sound Strip", "One of the scene's sound strips (placed where it is)")],
    )  # fmt: skip
    audio_path: StringProperty(  # type: ignore[valid-type]
        name="Audio File", subtype="FILE_PATH", description="Speech audio (wav, flac, ogg, mp3...)"
    )
    sound_strip: StringProperty(  # type: ignore[valid-type]
        name="Sound Strip", description="Sound strip of this scene whose audio is animated"
    )
    model: EnumProperty(  # type: ignore[valid-type]
        name="Model", default="DEFAULT",
        items=[("DEFAULT", "Default", "Embedded lip-sync model (CPU, no download)"),
               ("FOLDER", "Model Folders", "A model found in the folders of the add-on preferences"),
               ("FILE", "model.json", "The model.json of a downloaded Audio2Face-3D model")],
    )  # fmt: skip
    model_entry: StringProperty(  # type: ignore[valid-type]
        name="Model", description="Model from the folders set in the add-on preferences"
    )
    model_path: StringProperty(  # type: ignore[valid-type]
        name="model.json", subtype="FILE_PATH", description="Audio2Face-3D model.json or its folder"
    )
    targets: CollectionProperty(type=A2XTarget)  # type: ignore[valid-type]
    targets_index: IntProperty()  # type: ignore[valid-type]
    mapping: CollectionProperty(type=A2XMappingRow)  # type: ignore[valid-type]
    mapping_index: IntProperty()  # type: ignore[valid-type]
    unmatched_shapes: CollectionProperty(type=A2XName)  # type: ignore[valid-type]
    unused_sources: CollectionProperty(type=A2XName)  # type: ignore[valid-type]
    candidates: CollectionProperty(type=A2XCandidate)  # type: ignore[valid-type]
    start_frame: IntProperty(  # type: ignore[valid-type]
        name="Start Frame", default=1, update=_start_frame_changed,
        description="Scene frame where the audio starts; moves the add-on's sound strip too",
    )  # fmt: skip
    strength: FloatProperty(  # type: ignore[valid-type]
        name="Strength", default=1.0, min=0.0, max=10.0, soft_max=2.0,
        description="Multiplies every curve (clipped to 0..1)",
    )  # fmt: skip
    smoothing_s: FloatProperty(  # type: ignore[valid-type]
        name="Smoothing", default=0.0, min=0.0, max=1.0, soft_max=0.2, step=1, precision=3,
        description="Extra zero-phase smoothing in seconds (0 = as the model says); lip closures "
        "and blinks are kept. 0.02-0.05 takes out jitter, above 0.1 vowels blur",
    )  # fmt: skip
    transcript: StringProperty(  # type: ignore[valid-type]
        name="Transcript", description="The words spoken; the default model aligns to them"
    )
    transcript_text: PointerProperty(  # type: ignore[valid-type]
        name="Transcript Text", type=bpy.types.Text,
        description="A text datablock with the words spoken (used instead of the line above)",
    )  # fmt: skip
    language: StringProperty(  # type: ignore[valid-type]
        name="Language", default="auto", search=_language_search, search_options={"SUGGESTION"},
        description="Default model: the spoken language, an ISO 639-1 code (en, de, ru, zh, "
        "...) or auto (from the transcript; English without one). Another language without a "
        "transcript uses the language-independent phone decoder (Bake and Live)",
    )  # fmt: skip
    use_emotions: BoolProperty(  # type: ignore[valid-type]
        name="Emotions", default=False, description="Send these emotions to the model"
    )
    emotions: CollectionProperty(type=A2XEmotion)  # type: ignore[valid-type]
    model_info_for: StringProperty(  # type: ignore[valid-type]
        name="Model Info Of", description="The model whose emotions and identities are listed"
    )
    model_kind: StringProperty(  # type: ignore[valid-type]
        name="Model Kind", description="Kind of the model whose info is loaded"
    )
    identities: CollectionProperty(type=A2XName)  # type: ignore[valid-type]
    identity: EnumProperty(  # type: ignore[valid-type]
        name="Identity", items=identity_items,
        description="Whose face a diffusion model animates (one network, several identities)",
    )  # fmt: skip
    emotion_model_path: StringProperty(  # type: ignore[valid-type]
        name="Emotion Model", subtype="FILE_PATH",
        description="Audio2Emotion model.json: detect the emotions from the audio "
        "(empty = only the sliders above)",
    )  # fmt: skip
    emotion_mix: EnumProperty(  # type: ignore[valid-type]
        name="Mix", default="BLEND",
        items=[("BLEND", "Blend", "The sliders are Audio2Emotion's preferred emotion, blended "
                "into the detected ones by the emotion model's preferred_emotion_strength"),
               ("OVERRIDE", "Override", "Every emotion with a slider above 0 replaces the "
                "detected curve of that emotion; the others stay detected")],
    )  # fmt: skip
    emotion_window: IntProperty(  # type: ignore[valid-type]
        name="Window", default=60000, min=2, max=960000, soft_min=8000, soft_max=160000,
        description="Audio2Emotion window in samples at 16 kHz, centred on each frame "
        "(60000 = 3.75 s, as the SDK samples use)",
    )  # fmt: skip
    emotion_skip: IntProperty(  # type: ignore[valid-type]
        name="Skip", default=30, min=0, soft_max=60,
        description="Audio2Emotion frames (30 fps) that reuse one inference: 30 as NVIDIA's "
        "sample and Maya-ACE (one detection per ~1 s); 0 = one per frame, slower",
    )  # fmt: skip
    key_emotions: BoolProperty(  # type: ignore[valid-type]
        name="Key Emotions", default=False,
        description="Also key the per-frame emotion curves as custom properties "
        "a2x_emotion_<name> (and a2x_emotion_detected_<name>) of the target objects, played "
        "from their NLA track 'a2x'",
    )  # fmt: skip
    key_head: BoolProperty(  # type: ignore[valid-type]
        name="Key Head Motion", default=False,
        description="Also key the voice-driven head motion (nods, drift; default model) on "
        "the Head object (as a delta rotation, on top of yours) or its Bone, played from its "
        "NLA track 'a2x'",
    )  # fmt: skip
    head_object: PointerProperty(  # type: ignore[valid-type]
        name="Head", type=bpy.types.Object,
        description="The object to turn (an armature with Bone set, or any object)",
    )  # fmt: skip
    head_bone: StringProperty(  # type: ignore[valid-type]
        name="Bone", default="",
        description="The head bone of the Head armature (empty: turn the object itself)",
    )  # fmt: skip
    head_motion: FloatProperty(  # type: ignore[valid-type]
        name="Head Amount", default=1.0, min=0.0, max=3.0,
        description="Amplitude of the head motion and gaze (1 = natural, 0 = none)",
    )  # fmt: skip
    use_nla: BoolProperty(  # type: ignore[valid-type]
        name="Bake to NLA Strip", default=False,
        description="Put the bake on an NLA strip and leave the active Action alone "
        "(needed when the shape keys already play an Action of yours)",
    )  # fmt: skip
    add_sound_strip: BoolProperty(  # type: ignore[valid-type]
        name="Sound Strip", default=True,
        description="Add (or move) the add-on's sound strip at the start frame when baking",
    )  # fmt: skip
    interpolation: EnumProperty(  # type: ignore[valid-type]
        name="Interpolation", default="LINEAR",
        items=[("LINEAR", "Linear", "Straight lines between keys"),
               ("BEZIER", "Bezier", "Smooth curves through the keys"),
               ("CONSTANT", "Constant", "Hold each key until the next")],
    )  # fmt: skip
    live_source: EnumProperty(  # type: ignore[valid-type]
        name="Live Source", default="MICROPHONE",
        items=[("MICROPHONE", "Microphone", "An input device (the default one, or the named one)"),
               ("FILE", "File", "An audio file played at real-time pace, as a microphone would")],
    )  # fmt: skip
    live_device: StringProperty(  # type: ignore[valid-type]
        name="Device", description="Input device name, or part of it (empty = the system's "
        "default input; python -m sounddevice lists them)",
    )  # fmt: skip
    live_file: StringProperty(  # type: ignore[valid-type]
        name="Live File", subtype="FILE_PATH",
        description="Audio file Live plays at real-time pace (empty = the panel's audio file)",
    )  # fmt: skip
    live_record: BoolProperty(  # type: ignore[valid-type]
        name="Record", default=False,
        description="Keep the frames Live shows and bake them as an a2x Action when Live stops "
        "(undoable; never replaces an Action of yours)",
    )  # fmt: skip


class A2XLiveState(PropertyGroup):
    """The running live preview, as the panel shows it (not saved with files)."""

    running: BoolProperty(default=False)  # type: ignore[valid-type]
    state: StringProperty(name="State")  # type: ignore[valid-type]
    frames: IntProperty(name="Frames")  # type: ignore[valid-type]
    recorded: IntProperty(name="Recorded Frames")  # type: ignore[valid-type]
    latency_ms: FloatProperty(name="Latency (ms)")  # type: ignore[valid-type]
    message: StringProperty(name="Last Live")  # type: ignore[valid-type]


class A2XJobState(PropertyGroup):
    """The running bake, as the panel and the status bar show it (not saved with files)."""

    running: BoolProperty(default=False)  # type: ignore[valid-type]
    progress: FloatProperty(  # type: ignore[valid-type]
        name="Progress", min=0.0, max=1.0, subtype="FACTOR"
    )
    stage: StringProperty(name="Stage")  # type: ignore[valid-type]
    cancel_requested: BoolProperty(default=False)  # type: ignore[valid-type]
    message: StringProperty(name="Last Bake")  # type: ignore[valid-type]


classes = (
    A2XName,
    A2XCandidate,
    A2XTarget,
    A2XMappingRow,
    A2XEmotion,
    A2XModelEntry,
    A2XSettings,
    A2XLiveState,
    A2XJobState,
)


def register() -> None:
    bpy.types.Scene.a2x = PointerProperty(type=A2XSettings)
    bpy.types.WindowManager.a2x_job = PointerProperty(type=A2XJobState)
    bpy.types.WindowManager.a2x_live = PointerProperty(type=A2XLiveState)
    bpy.types.WindowManager.a2x_models = CollectionProperty(type=A2XModelEntry)


def unregister() -> None:
    del bpy.types.WindowManager.a2x_models
    del bpy.types.WindowManager.a2x_live
    del bpy.types.WindowManager.a2x_job
    del bpy.types.Scene.a2x
