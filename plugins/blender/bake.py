"""The bpy side of baking: add-on-owned Actions on shape-key datablocks, NLA strips, sound strips.

Every Action, NLA strip and sound strip this module creates carries the custom property
``a2x_owner``; nothing without it is ever changed or removed. Keys are written in bulk
(``keyframe_points.add`` + ``foreach_set``) into a slotted Action (Blender 4.4+: slot,
layer, keyframe strip, channelbag; 5.0 has no flat ``Action.fcurves`` any more); Blender
4.2/4.3 get the flat legacy Action.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import bpy

if TYPE_CHECKING:
    from a2x_core.retarget import BakePlan

OWNER_PROP = "a2x_owner"
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


def owner_name(key: bpy.types.Key) -> str:
    """A readable name for a Key: the mesh (or curve, lattice) it belongs to."""
    user = getattr(key, "user", None)
    return user.name if user is not None else key.name


def artist_action(key: bpy.types.Key) -> bpy.types.Action | None:
    """The Action the artist made active on ``key``, or None (none, or the add-on's own)."""
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
    action = bpy.data.actions.new(name)
    _tag(action, **(metadata or {}))
    slot = None
    if hasattr(action, "slots"):
        slot = action.slots.new(id_type="KEY", name=key.name)
        layer = action.layers.new("a2x")
        strip = layer.strips.new(type="KEYFRAME")
        bag = strip.channelbag(slot, ensure=True)
        fcurves, groups = bag.fcurves, bag.groups
    else:  # Blender 4.2, 4.3
        action.id_root = "KEY"
        fcurves, groups = action.fcurves, action.groups
    from a2x_core.retarget import region_of

    count = plan.frames.size
    ipo = [_INTERPOLATION[interpolation]] * count
    made_groups: dict[str, object] = {}
    for target, source in plan.sources.items():
        block = key.key_blocks.get(target)
        if block is None:
            continue
        fcurve = fcurves.new(block.path_from_id("value"))
        region = region_of(source)
        if region not in made_groups:
            made_groups[region] = groups.new(region)
        fcurve.group = made_groups[region]
        points = fcurve.keyframe_points
        points.add(count)
        points.foreach_set("co", plan.interleaved(target))
        points.foreach_set("interpolation", ipo)
        fcurve.update()
    return action, slot


def _remove_owned_nla(key: bpy.types.Key) -> list[bpy.types.Action]:
    """Drop the add-on's NLA strips (and its emptied tracks); returns their Actions."""
    ad = key.animation_data
    dropped: list[bpy.types.Action] = []
    if ad is None:
        return dropped
    for track in list(ad.nla_tracks):
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


def bake_key(
    key: bpy.types.Key,
    plan: BakePlan,
    *,
    use_nla: bool = False,
    interpolation: str = "LINEAR",
    metadata: dict[str, object] | None = None,
) -> KeyBake:
    """Bake ``plan`` onto ``key``, replacing only the add-on's earlier bake.

    Without ``use_nla`` the new Action becomes the active one; this is refused when an
    artist's Action is active (raise before calling: see :func:`check_targets`). With
    ``use_nla`` it goes on an NLA strip on the track "a2x" and the active Action stays.
    """
    ad = key.animation_data_create()
    name = f"a2x_{owner_name(key)}"
    action, slot = new_action(key, plan, name, interpolation, metadata)
    old = _remove_owned_nla(key)
    warnings: list[str] = []
    start, end = plan.frame_range
    if use_nla:
        if is_owned(ad.action):
            old.append(ad.action)
            ad.action = None
        track = ad.nla_tracks.new()
        track.name = NLA_TRACK_NAME
        strip = track.strips.new(name, int(math.floor(start)), action)
        if slot is not None and hasattr(strip, "action_slot"):
            strip.action_slot = slot
        strip.blend_type = "REPLACE"
        if ad.action is not None:
            warnings.append(
                f"{owner_name(key)}: your Action {ad.action.name!r} stays active and plays on "
                "top of the a2x NLA strip; mute or remove it to see the bake"
            )
    else:
        if ad.action is not None and not is_owned(ad.action):  # guarded by check_targets
            raise RuntimeError(f"{owner_name(key)} plays the artist's Action {ad.action.name!r}")
        if ad.action is not None:
            old.append(ad.action)
        ad.action = action
        if slot is not None:
            ad.action_slot = slot
    _forget(old)
    return KeyBake(
        key_name=owner_name(key),
        action_name=action.name,
        channels=len(plan.channels),
        keys_per_channel=int(plan.frames.size),
        frame_range=(start, end),
        placement="nla" if use_nla else "action",
        warnings=warnings,
    )


def clear_key(key: bpy.types.Key) -> int:
    """Remove the add-on's bake from ``key`` (active Action and NLA strips); returns how many
    Actions it took off. Shapes the bake drove go back to 0 unless an artist's Action plays."""
    ad = key.animation_data
    if ad is None:
        return 0
    removed = _remove_owned_nla(key)
    if is_owned(ad.action):
        removed.append(ad.action)
        ad.action = None
    if ad.action is None:
        for action in removed:
            for fcurve in _fcurves_of(action):
                path = fcurve.data_path
                if path.endswith(".value"):
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
