"""The bpy side of baking: add-on-owned Actions on shape-key datablocks, NLA strips, sound strips.

Every Action, NLA strip and sound strip this module creates carries the custom property
``a2x_owner``; nothing without it is ever changed or removed. Keys are written in bulk
(``keyframe_points.add`` + ``foreach_set``) into a slotted Action (Blender 4.4+: slot,
layer, keyframe strip, channelbag; 5.0 has no flat ``Action.fcurves`` any more); Blender
4.2/4.3 get the flat legacy Action.

"Key Emotions" adds the per-frame emotion curves as custom properties
``a2x_emotion_<name>`` (and ``a2x_emotion_detected_<name>``) of the target objects, keyed the
same way into an add-on-owned Action of their own (``a2x_<mesh>_emotions``, one Object slot)
that the objects play from their NLA track "a2x". On objects the add-on owns only that
track's strips and those properties, never the active Action: keys the artist sets on the
object later go into an Action that plays on top and that a re-bake or Clear never touches
(Blender 4.4+ may even put them into the shape keys' a2x Action, as a new slot: Actions
still used by anything are never deleted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import bpy
import numpy as np

if TYPE_CHECKING:
    from fractions import Fraction

    from a2x_core.result import AnimationResult
    from a2x_core.retarget import BakePlan

OWNER_PROP = "a2x_owner"
#: Custom properties holding baked emotion curves on the target objects.
EMOTION_PREFIX = "a2x_emotion_"
DETECTED_PREFIX = EMOTION_PREFIX + "detected_"
OWNER_VALUE = "a2x"
NLA_TRACK_NAME = "a2x"
SOUND_STRIP_NAME = "a2x audio"
_INTERPOLATION = {"CONSTANT": 0, "LINEAR": 1, "BEZIER": 2}


def is_owned(thing: object) -> bool:
    """True for an Action or strip this add-on created (tagged with ``a2x_owner``)."""
    try:
        return thing is not None and thing.get(OWNER_PROP) == OWNER_VALUE  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return False


def _tag(thing: bpy.types.bpy_struct, **metadata: object) -> None:
    thing[OWNER_PROP] = OWNER_VALUE
    for name, value in metadata.items():
        thing[f"a2x_{name}"] = value


# --------------------------------------------------------------------------- shape-key datablocks


def shape_key_blocks(objects: Iterable[bpy.types.Object]) -> list[bpy.types.Key]:
    """The distinct shape-key datablocks of ``objects`` (objects sharing mesh data share one)."""
    keys: list[bpy.types.Key] = []
    for obj in objects:
        key = getattr(getattr(obj, "data", None), "shape_keys", None)
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def owner_name(key: bpy.types.ID) -> str:
    """A readable name for a Key (the mesh, curve or lattice it belongs to) or an object."""
    user = getattr(key, "user", None) if isinstance(key, bpy.types.Key) else None
    return user.name if user is not None else key.name


def artist_action(key: bpy.types.ID) -> bpy.types.Action | None:
    """The Action the artist made active on ``key`` (shape keys or an object), or None (none,
    or the add-on's own)."""
    ad = key.animation_data
    if ad is None or ad.action is None or is_owned(ad.action):
        return None
    return ad.action


def _fcurves_of(action: bpy.types.Action) -> list[bpy.types.FCurve]:
    if hasattr(action, "layers") and len(action.layers):
        out = []
        for layer in action.layers:
            for strip in layer.strips:
                for bag in getattr(strip, "channelbags", ()):
                    out.extend(bag.fcurves)
        return out
    return list(getattr(action, "fcurves", ()))


# --------------------------------------------------------------------------- writing keys


@dataclass
class KeyBake:
    """What one bake did to one shape-key datablock."""

    key_name: str
    action_name: str
    channels: int
    keys_per_channel: int
    frame_range: tuple[float, float]
    placement: str  # "action" or "nla"
    warnings: list[str] = field(default_factory=list)
    emotion_channels: int = 0
    emotion_objects: list[str] = field(default_factory=list)


def _write_fcurves(
    fcurves: bpy.types.bpy_prop_collection,
    groups: bpy.types.bpy_prop_collection,
    frames: np.ndarray,
    channels: Iterable[tuple[str, str, np.ndarray]],
    interpolation: str,
) -> int:
    """One F-curve per ``(data path, group, values)``, all keys at once; returns the count."""
    count = frames.size
    ipo = [_INTERPOLATION[interpolation]] * count
    co = np.empty(count * 2, dtype=np.float32)
    co[0::2] = frames
    made_groups: dict[str, object] = {}
    written = 0
    for path, group, values in channels:
        fcurve = fcurves.new(path)
        if group not in made_groups:
            made_groups[group] = groups.new(group)
        fcurve.group = made_groups[group]
        co[1::2] = values
        points = fcurve.keyframe_points
        points.add(count)
        points.foreach_set("co", co)
        points.foreach_set("interpolation", ipo)
        fcurve.update()
        written += 1
    return written


def _owned_action(
    name: str, id_type: str, slot_name: str, metadata: dict[str, object] | None = None
) -> tuple[bpy.types.Action, object | None, bpy.types.bpy_prop_collection, bpy.types.bpy_prop_collection]:
    """A new tagged Action for one ID type: (action, slot, fcurves, groups). The slot is None
    on Blender versions before 4.4 (flat legacy Action)."""
    action = bpy.data.actions.new(name)
    _tag(action, **(metadata or {}))
    if hasattr(action, "slots"):
        slot = action.slots.new(id_type=id_type, name=slot_name)
        strip = action.layers.new("a2x").strips.new(type="KEYFRAME")
        bag = strip.channelbag(slot, ensure=True)
        return action, slot, bag.fcurves, bag.groups
    action.id_root = id_type  # Blender 4.2, 4.3
    return action, None, action.fcurves, action.groups


def new_action(
    key: bpy.types.Key,
    plan: BakePlan,
    name: str,
    interpolation: str = "LINEAR",
    metadata: dict[str, object] | None = None,
) -> tuple[bpy.types.Action, object | None]:
    """A new add-on-owned Action holding ``plan``'s channels for ``key``; returns (action, slot).

    The slot is None on Blender versions before 4.4 (flat legacy Action).
    """
    from a2x_core.retarget import region_of

    action, slot, fcurves, groups = _owned_action(name, "KEY", key.name, metadata)
    channels = []
    for target, source in plan.sources.items():
        block = key.key_blocks.get(target)
        if block is not None:
            channels.append((block.path_from_id("value"), region_of(source), plan.channels[target]))
    _write_fcurves(fcurves, groups, plan.frames, channels, interpolation)
    return action, slot


def _emotion_channels(result: AnimationResult) -> dict[str, np.ndarray]:
    """Custom property name -> per-frame curve: the emotion input the model used and, with
    an emotion model, what it detected (``{}`` for models without emotions)."""
    out: dict[str, np.ndarray] = {}
    names = list(result.emotion_names)
    for prefix, values in ((EMOTION_PREFIX, result.emotions),
                           (DETECTED_PREFIX, getattr(result, "detected_emotions", None))):  # fmt: skip
        if values is None or not names:
            continue
        values = np.asarray(values, dtype=np.float32)
        for column, name in enumerate(names[: values.shape[1]]):
            out[prefix + name] = values[:, column]
    return out


def plan_emotions(result: AnimationResult, fps: Fraction, start_frame: float) -> BakePlan | None:
    """The emotion curves placed like the shape keys (:func:`a2x_core.retarget.plan_bake`:
    same frames, same resampling to whole scene frames); None when the result has none."""
    from a2x_core.result import AnimationResult as Result
    from a2x_core.retarget import ShapeTarget, plan_bake

    channels = _emotion_channels(result)
    if not channels or result.num_frames == 0:
        return None
    names = tuple(channels)
    curves = Result(
        weights=np.stack([channels[n] for n in names], axis=1), fps=result.fps, names=names,
        start_s=result.start_s, duration_s=result.duration_s,
    )  # fmt: skip
    return plan_bake(curves, [ShapeTarget(n, n) for n in names], fps, start_frame)


def _emotion_group(prop: str) -> str:
    return "Detected Emotions" if prop.startswith(DETECTED_PREFIX) else "Emotions"


def new_emotion_action(
    plan: BakePlan,
    name: str,
    interpolation: str = "LINEAR",
    metadata: dict[str, object] | None = None,
) -> tuple[bpy.types.Action, object | None]:
    """A new add-on-owned Action keying ``plan``'s emotion curves as ``["a2x_emotion_<name>"]``
    of objects; returns (action, slot), slot None before Blender 4.4."""
    action, slot, fcurves, groups = _owned_action(name, "OBJECT", "a2x emotions", metadata)
    channels = [(f'["{prop}"]', _emotion_group(prop), values)
                for prop, values in plan.channels.items()]  # fmt: skip
    _write_fcurves(fcurves, groups, plan.frames, channels, interpolation)
    return action, slot


def _set_emotion_props(obj: bpy.types.Object, props: Iterable[str]) -> None:
    """Give ``obj`` these emotion properties (0..1 sliders)."""
    for prop in props:
        if prop not in obj.keys():
            obj[prop] = 0.0
        name = prop[len(DETECTED_PREFIX if prop.startswith(DETECTED_PREFIX) else EMOTION_PREFIX):]
        what = "detected by the emotion model" if prop.startswith(DETECTED_PREFIX) else (
            "given to the face model")  # fmt: skip
        obj.id_properties_ui(prop).update(
            min=0.0, max=1.0, soft_min=0.0, soft_max=1.0, default=0.0,
            description=f"a2x: the emotion {name!r} {what}, per frame (baked keys)",
        )  # fmt: skip


def _drop_emotion_props(obj: bpy.types.Object, keep: set[str] | None = None) -> None:
    keep = keep or set()
    for prop in [p for p in obj.keys() if p.startswith(EMOTION_PREFIX) and p not in keep]:
        del obj[prop]


def key_users(key: bpy.types.Key) -> list[bpy.types.Object]:
    """Every object whose data owns ``key`` (objects sharing a mesh share its shape keys)."""
    data = getattr(key, "user", None)
    if data is None:
        return []
    return [o for o in bpy.data.objects if o.data is not None and o.data == data]


def _remove_owned_nla(key: bpy.types.ID, own_tracks_only: bool = False) -> list[bpy.types.Action]:
    """Drop the add-on's NLA strips (and its emptied tracks); returns their Actions.

    Args:
        own_tracks_only: only look at the tracks named "a2x" (objects: an artist may push an
            Action down that Blender filed into an a2x Action).
    """
    ad = key.animation_data
    dropped: list[bpy.types.Action] = []
    if ad is None:
        return dropped
    for track in list(ad.nla_tracks):
        if own_tracks_only and not track.name.startswith(NLA_TRACK_NAME):
            continue
        for strip in list(track.strips):
            if is_owned(strip.action):
                dropped.append(strip.action)
                track.strips.remove(strip)
        if track.name.startswith(NLA_TRACK_NAME) and len(track.strips) == 0:
            ad.nla_tracks.remove(track)
    return dropped


def _forget(actions: Iterable[bpy.types.Action]) -> None:
    """Delete the add-on's Actions that nothing uses any more (never an artist's)."""
    for action in set(actions):
        if is_owned(action) and action.users == 0 and not action.use_fake_user:
            bpy.data.actions.remove(action)


def _fit_strip(strip: bpy.types.NlaStrip, start: float, end: float) -> None:
    """Play the Action's keys ``start..end`` at their own frames. ``strips.new`` sizes a strip
    from the whole Action, and from nothing (0..1) when the Action has several slots."""
    end = max(float(end), float(start) + 1.0)
    if end > strip.action_frame_start:  # keep start <= end while changing both
        strip.action_frame_end = end
        strip.action_frame_start = float(start)
    else:
        strip.action_frame_start = float(start)
        strip.action_frame_end = end


def _add_strip(
    owner: bpy.types.ID, action: bpy.types.Action, slot: object | None, start: float, end: float,
    name: str,
) -> bpy.types.NlaStrip:
    """A new NLA track "a2x" on ``owner`` playing ``action`` (through ``slot``) at its frames."""
    track = owner.animation_data_create().nla_tracks.new()
    track.name = NLA_TRACK_NAME
    strip = track.strips.new(name, int(math.floor(start)), action)
    if slot is not None and hasattr(strip, "action_slot"):
        strip.action_slot = slot
    _fit_strip(strip, start, end)
    strip.blend_type = "REPLACE"
    return strip


def _place(
    key: bpy.types.Key, action: bpy.types.Action, slot: object | None, *, use_nla: bool,
    start: float, end: float, strip_name: str,
) -> tuple[list[bpy.types.Action], list[str]]:
    """Make ``key`` play ``action`` (through ``slot``): as its active Action or on the NLA
    track "a2x". Returns the add-on Actions it played before, and warnings."""
    ad = key.animation_data_create()
    old = _remove_owned_nla(key)
    warnings: list[str] = []
    if use_nla:
        if is_owned(ad.action):
            old.append(ad.action)
            ad.action = None
        _add_strip(key, action, slot, start, end, strip_name)
        if ad.action is not None:
            warnings.append(
                f"{owner_name(key)}: your Action {ad.action.name!r} stays active and plays on "
                "top of the a2x NLA strip; mute or remove it to see the bake"
            )
    else:
        if ad.action is not None and not is_owned(ad.action):  # guarded by gather_request
            raise RuntimeError(f"{owner_name(key)} plays the artist's Action {ad.action.name!r}")
        if ad.action is not None:
            old.append(ad.action)
        ad.action = action
        if slot is not None:
            ad.action_slot = slot
    return old, warnings


def _unplace(owner: bpy.types.ID) -> list[bpy.types.Action]:
    """Take the add-on's Actions off shape keys (active and NLA); returns them."""
    ad = owner.animation_data
    if ad is None:
        return []
    removed = _remove_owned_nla(owner)
    if is_owned(ad.action):
        removed.append(ad.action)
        ad.action = None
    return removed


def _unplace_emotions(obj: bpy.types.Object, keep: Iterable[str] = ()) -> list[bpy.types.Action]:
    """Take the add-on's emotion strips and properties (but those in ``keep``, which drivers
    may read) off an object; returns the Actions. The active Action is never touched."""
    _drop_emotion_props(obj, keep=set(keep))
    return _remove_owned_nla(obj, own_tracks_only=True)


def bake_key(
    key: bpy.types.Key,
    plan: BakePlan,
    *,
    use_nla: bool = False,
    interpolation: str = "LINEAR",
    metadata: dict[str, object] | None = None,
    emotions: BakePlan | None = None,
    objects: Sequence[bpy.types.Object] = (),
) -> KeyBake:
    """Bake ``plan`` onto ``key``, replacing only the add-on's earlier bake.

    Without ``use_nla`` the new Action becomes the active one; this is refused when an
    artist's Action is active (:func:`session.gather_request` refuses it first). With
    ``use_nla`` it goes on an NLA strip on the track "a2x" and the active Action stays.

    Args:
        emotions: emotion curves (:func:`plan_emotions`) to key as custom properties of
            ``objects``, which play them from their NLA track "a2x" (whatever ``use_nla``
            says); the objects that use ``key`` and are not in ``objects`` lose the emotion
            properties and Actions of an earlier bake.
    """
    name = f"a2x_{owner_name(key)}"
    action, slot = new_action(key, plan, name, interpolation, metadata)
    start, end = plan.frame_range
    old, warnings = _place(key, action, slot, use_nla=use_nla, start=start, end=end,
                           strip_name=name)  # fmt: skip
    receivers = list(objects) if emotions is not None and emotions.channels else []
    for obj in key_users(key):
        old.extend(_unplace_emotions(obj, keep=emotions.channels if obj in receivers else ()))
    emotion_channels = 0
    if receivers:
        assert emotions is not None
        emotion_action, emotion_slot = new_emotion_action(
            emotions, f"{name}_emotions", interpolation, metadata
        )
        emotion_channels = len(emotions.channels)
        for obj in receivers:
            _set_emotion_props(obj, emotions.channels)
            _add_strip(obj, emotion_action, emotion_slot, *emotions.frame_range,
                       emotion_action.name)  # fmt: skip
    _forget(old)
    return KeyBake(
        key_name=owner_name(key),
        action_name=action.name,
        channels=len(plan.channels),
        keys_per_channel=int(plan.frames.size),
        frame_range=(start, end),
        placement="nla" if use_nla else "action",
        warnings=warnings,
        emotion_channels=emotion_channels,
        emotion_objects=[o.name for o in receivers],
    )


def clear_key(key: bpy.types.Key) -> int:
    """Remove the add-on's bake from ``key`` (active Action and NLA strips) and from the
    objects using it (emotion Actions and ``a2x_emotion_*`` properties); returns how many
    Actions it took off. Shapes the bake drove go back to 0 unless an artist's Action plays."""
    removed: list[bpy.types.Action] = []
    for obj in key_users(key):
        removed.extend(_unplace_emotions(obj))
    ad = key.animation_data
    if ad is not None:
        from_key = _unplace(key)
        removed.extend(from_key)
        if ad.action is None:
            for action in from_key:
                for fcurve in _fcurves_of(action):
                    path = fcurve.data_path
                    if path.startswith("key_blocks[") and path.endswith(".value"):
                        try:
                            key.path_resolve(path[: -len(".value")]).value = 0.0
                        except ValueError:
                            pass
    count = len(set(removed))
    _forget(removed)
    return count


# --------------------------------------------------------------------------- sound strips


def _top_strips(editor: bpy.types.SequenceEditor):  # noqa: ANN202 - strips or sequences
    """``strips`` (4.4+, the only name in 5.0) or ``sequences`` (4.2, 4.3)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(scene: bpy.types.Scene) -> Sequence[bpy.types.Strip]:
    editor = scene.sequence_editor
    if editor is None:
        return []
    return list(editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all)


def sound_strips(scene: bpy.types.Scene) -> list:
    return [s for s in all_strips(scene) if s.type == "SOUND"]


def owned_sound_strip(scene: bpy.types.Scene):  # noqa: ANN201
    for strip in sound_strips(scene):
        if is_owned(strip):
            return strip
    return None


def strip_audio_path(strip) -> str:  # noqa: ANN001
    sound = getattr(strip, "sound", None)
    return bpy.path.abspath(sound.filepath) if sound is not None else ""


def _same_file(a: str, b: str) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(a) == os.path.normpath(b)


def sync_sound_strip(scene: bpy.types.Scene, audio_path: str, start_frame: int):  # noqa: ANN201
    """Make the add-on's one sound strip play ``audio_path`` from ``start_frame``.

    Adds it (on a free channel above the others, audio-synced playback) the first time, moves
    it when only the start frame changed, and replaces it when the file changed. Other
    strips are never touched. Extends the scene's end frame to the end of the sound.
    """
    editor = scene.sequence_editor_create()
    strips = _top_strips(editor)
    strip = owned_sound_strip(scene)
    channel = None
    if strip is not None and not _same_file(strip_audio_path(strip), audio_path):
        channel = strip.channel
        strips.remove(strip)
        strip = None
    if strip is None:
        used = [s.channel for s in all_strips(scene)]
        channel = channel or min(max(used, default=0) + 1, 128)
        strip = strips.new_sound(SOUND_STRIP_NAME, audio_path, channel, int(start_frame))
        _tag(strip, audio=audio_path)
        scene.sync_mode = "AUDIO_SYNC"
    elif int(strip.frame_start) != int(start_frame):
        strip.frame_start = int(start_frame)
    scene.frame_end = max(scene.frame_end, int(strip.frame_final_end) - 1)
    return strip


def move_sound_strip(scene: bpy.types.Scene, start_frame: int) -> None:
    """Keep the add-on's sound strip at the start frame (the Start Frame field's update)."""
    strip = owned_sound_strip(scene)
    if strip is not None and int(strip.frame_start) != int(start_frame):
        strip.frame_start = int(start_frame)


def extend_frame_range(scene: bpy.types.Scene, last_frame: float) -> None:
    """Grow ``scene.frame_end`` to cover the bake; never shrink it."""
    scene.frame_end = max(scene.frame_end, int(math.ceil(last_frame)))


# --------------------------------------------------------------------------- head motion

#: Curves of the head bake: (data path suffix, index, source column of ``head_rotations``,
#: sign). ``head_rotations`` are (pitch, yaw, roll) about ARKit's face axes (x: the face's
#: left, y: up, z: forward). A Blender object faces -Y with Z up: pitch turns about +X, yaw
#: about +Z, roll about the forward axis -Y. A head bone points up (local Y) with local Z
#: forward: (pitch, yaw, roll) about its (X, Y, Z).
HEAD_OBJECT_CHANNELS = (("delta_rotation_euler", 0, 0, 1.0), ("delta_rotation_euler", 1, 2, -1.0),
                        ("delta_rotation_euler", 2, 1, 1.0))  # fmt: skip
HEAD_BONE_CHANNELS = (("rotation_euler", 0, 0, 1.0), ("rotation_euler", 1, 1, 1.0),
                      ("rotation_euler", 2, 2, 1.0))  # fmt: skip
HEAD_PART = "head"


def plan_head(result: AnimationResult, fps: Fraction, start_frame: float) -> BakePlan | None:
    """The head rotation curves placed like the shape keys; None when the result has none."""
    from a2x_core.result import AnimationResult as Result
    from a2x_core.retarget import ShapeTarget, plan_bake

    head = getattr(result, "head_rotations", None)
    if head is None or result.num_frames == 0:
        return None
    names = ("pitch", "yaw", "roll")
    curves = Result(weights=np.asarray(head, np.float32), fps=result.fps, names=names,
                    start_s=result.start_s, duration_s=result.duration_s)  # fmt: skip
    return plan_bake(curves, [ShapeTarget(n, n) for n in names], fps, start_frame)


def _head_channels(
    obj: bpy.types.Object, bone: str, plan: BakePlan
) -> list[tuple[str, str, np.ndarray, int]]:
    """(data path, group, values, array index) of the head curves on ``obj`` or its bone."""
    columns = [plan.channels[n] for n in ("pitch", "yaw", "roll")]
    if not bone:
        return [(path, "a2x Head", sign * columns[src], index)
                for path, index, src, sign in HEAD_OBJECT_CHANNELS]  # fmt: skip
    pose_bone = obj.pose.bones[bone]
    prefix = pose_bone.path_from_id()
    if pose_bone.rotation_mode == "QUATERNION":
        # Small rotations composed X, Y, Z (as Euler 'XYZ'), as a unit quaternion.
        from mathutils import Euler

        rows = np.array([Euler(angles, "XYZ").to_quaternion()[:]
                         for angles in zip(*columns, strict=True)])  # fmt: skip
        return [(f"{prefix}.rotation_quaternion", "a2x Head", rows[:, k], k) for k in range(4)]
    return [(f"{prefix}.{path}", "a2x Head", sign * columns[src], index)
            for path, index, src, sign in HEAD_BONE_CHANNELS]  # fmt: skip


def remove_head(obj: bpy.types.Object) -> list[bpy.types.Action]:
    """Take the add-on's head strips off ``obj`` (emotion strips and the artist's stay)."""
    ad = obj.animation_data
    dropped: list[bpy.types.Action] = []
    if ad is None:
        return dropped
    for track in list(ad.nla_tracks):
        if not track.name.startswith(NLA_TRACK_NAME):
            continue
        for strip in list(track.strips):
            if is_owned(strip.action) and strip.action.get("a2x_part") == HEAD_PART:
                dropped.append(strip.action)
                track.strips.remove(strip)
        if len(track.strips) == 0:
            ad.nla_tracks.remove(track)
    return dropped


def bake_head(
    obj: bpy.types.Object,
    plan: BakePlan,
    bone: str = "",
    interpolation: str = "LINEAR",
    metadata: dict[str, object] | None = None,
) -> tuple[str, int]:
    """Key the voice-driven head motion on ``obj`` (``delta_rotation_euler``: on top of the
    artist's own rotation) or on its pose bone ``bone`` (rotation, in the bone's rotation
    mode), in an add-on-owned Action played from the object's NLA track "a2x"; a re-bake
    replaces only that. Returns (action name, curves).

    Raises:
        KeyError: ``bone`` is not a pose bone of ``obj``.
    """
    if bone and (obj.pose is None or bone not in obj.pose.bones):
        raise KeyError(f"{obj.name!r} has no bone {bone!r}")
    old = remove_head(obj)
    channels = _head_channels(obj, bone, plan)
    action, slot, fcurves, groups = _owned_action(
        f"a2x_{obj.name}_head", "OBJECT", "a2x head", {**(metadata or {}), "part": HEAD_PART}
    )
    written = 0
    for path, group, values, index in channels:
        written += _write_indexed(fcurves, groups, plan.frames, path, index, group, values,
                                  interpolation)  # fmt: skip
    _add_strip(obj, action, slot, *plan.frame_range, action.name).blend_type = "COMBINE"
    _forget(old)
    return action.name, written


def _write_indexed(
    fcurves: bpy.types.bpy_prop_collection, groups: bpy.types.bpy_prop_collection,
    frames: np.ndarray, path: str, index: int, group: str, values: np.ndarray, interpolation: str,
) -> int:  # fmt: skip
    """One F-curve of an array property (``rotation_euler[index]``), all keys at once."""
    fcurve = fcurves.new(path, index=index)
    existing = groups.get(group) if hasattr(groups, "get") else None
    fcurve.group = existing or groups.new(group)
    co = np.empty(frames.size * 2, dtype=np.float32)
    co[0::2], co[1::2] = frames, values
    points = fcurve.keyframe_points
    points.add(frames.size)
    points.foreach_set("co", co)
    points.foreach_set("interpolation", [_INTERPOLATION[interpolation]] * frames.size)
    fcurve.update()
    return 1
