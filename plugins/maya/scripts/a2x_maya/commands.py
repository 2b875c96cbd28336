"""What the a2x commands do, written against the facade (no Maya import).

``a2xCreatePlayer``, ``a2xConnectPlayer``, ``a2xBake`` and ``a2xLoadModelDefaults`` each run
one function here that returns an undoable edit; :func:`make_command_classes` wraps them as
``MPxCommand`` classes. Errors are :class:`~a2x_core.errors.A2XError` with the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from a2x_core.errors import A2XError, ParameterError
from a2x_core.jobs import Progress

from . import NODE_TYPE
from .attributes import (
    EMOTION_MIX_CHOICES,
    FACE_MULTIPLIERS,
    FACE_OFFSETS,
    OUTPUT_POSES,
    TONGUE_MULTIPLIERS,
    TONGUE_OFFSETS,
    all_aliases,
)
from .bake import HEAD_RANGE_DEG, plan_emotion_keys, plan_frames, plan_head_keys, plan_keys
from .connect import ConnectionPlan, Link, plan_connections
from .engine import PlayerEngine
from .parameters import PlayerInputs, attribute_defaults_for_model
from .timeunits import FALLBACK_FPS

#: The time-slider audio node's attributes -> the player's audio inputs (Maya-ACE's wiring).
AUDIO_WIRING: tuple[tuple[str, str], ...] = (
    ("filename", "audioFile"), ("offset", "audioOffset"),
    ("sourceStart", "audioStart"), ("sourceEnd", "audioEnd"),
)  # fmt: skip


@dataclass(frozen=True)
class CommandSpec:
    """A command's flags as data: ``(short, long, kind)`` with kind "string" or "bool"."""

    name: str
    flags: tuple[tuple[str, str, str], ...] = ()
    help: str = ""


SPECS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "a2xCreatePlayer",
        (("-n", "-name", "string"), ("-m", "-model", "string"), ("-a", "-audio", "string"),
         ("-f", "-force", "bool"), ("-em", "-emotionModel", "string"),
         ("-mix", "-emotionMix", "string"), ("-id", "-identity", "string"),
         ("-lng", "-language", "string"), ("-tr", "-transcript", "string")),  # fmt: skip
        "Create a player on the given (or selected) blendShape nodes or meshes.",
    ),
    CommandSpec(
        "a2xConnectPlayer",
        (("-f", "-force", "bool"),),
        "Connect a player (first object) to blendShape nodes or meshes by name.",
    ),
    CommandSpec(
        "a2xBake",
        (("-dp", "-deletePlayer", "bool"), ("-ke", "-keyEmotions", "bool"),
         ("-en", "-emotionNode", "string"), ("-kh", "-keyHead", "bool")),  # fmt: skip
        "Key the blendShape weights a player drives over the audio's range (and, with "
        "-keyEmotions, the emotion curves as a2x_emotion_* attributes; with -keyHead, the "
        "head motion as a2x_head_pitch/yaw/roll degrees, on the same node).",
    ),
    CommandSpec("a2xLoadModelDefaults", (), "Reset face/tongue attributes to the model's."),
)


@dataclass
class Outcome:
    """What a command did: its undoable edit, its return value and messages to show."""

    edit: Any
    result: Any
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)


def find_blendshapes(scene: Any, names: Sequence[str]) -> list[str]:
    """blendShape nodes from node names (blendShapes, meshes, transforms), in order."""
    found: list[str] = []
    for name in names:
        if not scene.exists(name):
            raise ParameterError(f"{name!r} does not exist", hint="select it again")
        for blendshape in scene.blendshapes_of(name):
            if blendshape not in found:
                found.append(blendshape)
    return found


def _players(scene: Any, names: Sequence[str]) -> list[str]:
    return [n for n in names if scene.exists(n) and scene.node_type(n) == NODE_TYPE]


def preview_connections(scene: Any, blendshapes: Sequence[str], force: bool) -> ConnectionPlan:
    """The name-matched plan for these blendShapes (what connecting would do)."""
    targets = {bs: scene.weight_aliases(bs) for bs in blendshapes}
    plugs = [f"{bs}.weight[{i}]" for bs, weights in targets.items() for i in weights]
    return plan_connections(targets, scene.connected_inputs(plugs), force)


def _wire(edit: Any, player: str, plan: ConnectionPlan) -> None:
    for link in plan.links:
        edit.connect(f"{player}.{link.source_attr}", link.dest_plug, force=True)


def connect_player(scene: Any, player: str, names: Sequence[str], force: bool = False) -> Outcome:
    """Wire ``player`` to the blendShape weights of ``names`` by name (never by index)."""
    blendshapes = find_blendshapes(scene, names)
    if not blendshapes:
        raise A2XError("no blendShape node found", hint="select blendShape nodes or meshes with one")
    plan = preview_connections(scene, blendshapes, force)
    edit = scene.begin_edit()
    _wire(edit, player, plan)
    edit.do_it()
    info = [f"{player}: connected {len(plan.links)} weight(s) on {', '.join(blendshapes)}"]
    return Outcome(edit, [link.dest_plug for link in plan.links], plan.report(), info)


def emotion_mix_index(mix: str) -> int:
    """The ``emotionMix`` enum index of ``"blend"`` / ``"override"`` (any case).

    Raises:
        ParameterError: another word, naming the choices.
    """
    word = mix.strip().lower()
    if word not in EMOTION_MIX_CHOICES:
        raise ParameterError(
            f"-emotionMix {mix!r} is unknown", hint=f"use {' or '.join(EMOTION_MIX_CHOICES)}"
        )
    return EMOTION_MIX_CHOICES.index(word)


def create_player(
    scene: Any,
    names: Sequence[str],
    *,
    name: str = "",
    model: str = "",
    audio: str = "",
    force: bool = False,
    emotion_model: str = "",
    emotion_mix: str = "",
    identity: str = "",
    language: str = "",
    transcript: str = "",
) -> Outcome:
    """Create a player, drive it by ``time1``, give it the time-slider sound (or ``audio``)
    and connect it by name to the blendShapes of ``names`` (none: an unconnected player).
    ``emotion_model``, ``emotion_mix``, ``identity``, ``language`` and ``transcript`` set
    ``emotionModelPath``, ``emotionMix``, ``identity``, ``language`` (the default model's
    spoken language, checked here) and ``transcript`` (its exact words)."""
    blendshapes = find_blendshapes(scene, names)
    mix = emotion_mix_index(emotion_mix) if emotion_mix else None
    if language:
        from a2x_core.lipsync.language import check_language

        language = check_language(language)  # a bad code refused before anything is made
    edit = scene.begin_edit()
    player = edit.create_node(NODE_TYPE, name or f"{NODE_TYPE}1")
    edit.connect("time1.outTime", f"{player}.time")
    for alias, attr in all_aliases():
        edit.mel(f"aliasAttr {alias} {player}.{attr}")
    if model:
        edit.set_attr(f"{player}.modelPath", model)
    if emotion_model:
        edit.set_attr(f"{player}.emotionModelPath", emotion_model)
    if mix is not None:
        edit.set_attr(f"{player}.emotionMix", float(mix))
    if identity:
        edit.set_attr(f"{player}.identity", identity)
    if language:
        edit.set_attr(f"{player}.language", language)
    if transcript.strip():
        edit.set_attr(f"{player}.transcript", transcript.strip())
    warnings: list[str] = []
    sound = None if audio else scene.time_slider_sound()
    if audio:
        edit.set_attr(f"{player}.audioFile", audio)
    elif sound:
        for source, dest in AUDIO_WIRING:
            edit.connect(f"{sound}.{source}", f"{player}.{dest}")
    else:
        warnings.append(f"{player}: no audio; set audioFile or put a sound on the time slider")
    plan = preview_connections(scene, blendshapes, force) if blendshapes else ConnectionPlan()
    _wire(edit, player, plan)
    edit.do_it()
    warnings += plan.report()
    info = [f"created {player}" + (f", connected {len(plan.links)} weight(s)" if plan.links else "")]
    return Outcome(edit, player, warnings, info)


def load_model_defaults(scene: Any, player: str, model_info: dict[str, Any],
                        identity: str = "") -> Outcome:  # fmt: skip
    """Set the face/tongue attributes to the model's ``model_config.json`` values (a
    diffusion model's: those of the player's ``identity``, "" = the model's first)."""
    defaults = attribute_defaults_for_model(model_info, identity)
    edit = scene.begin_edit()
    for attr, value in defaults.items():
        edit.set_attr(f"{player}.{attr}", value)
    edit.do_it()
    warnings = [] if defaults else [f"{player}: the model lists no face/tongue parameters"]
    return Outcome(edit, sorted(defaults), warnings)


def _control_plugs(player: str, link: Link) -> tuple[str, str]:
    index = OUTPUT_POSES.index(link.source)
    if index < len(FACE_MULTIPLIERS.names):
        return (f"{player}.{FACE_MULTIPLIERS.name}[{index}]", f"{player}.{FACE_OFFSETS.name}[{index}]")
    index -= len(FACE_MULTIPLIERS.names)
    return (f"{player}.{TONGUE_MULTIPLIERS.name}[{index}]", f"{player}.{TONGUE_OFFSETS.name}[{index}]")


def _sample(scene: Any, plug: str, frames: np.ndarray, default: float) -> float | np.ndarray:
    value = scene.plug_samples(plug, frames.tolist())
    if isinstance(value, float) and np.isnan(value):
        return default
    return np.asarray(value, dtype=np.float64) if isinstance(value, list) else float(value)


def emotion_target(player: str, links: Sequence[Link], emotion_node: str, delete_player: bool) -> str:
    """Which node ``a2xBake -keyEmotions`` keys the emotion attributes on: ``-emotionNode``,
    else the first blendShape the player drives (it stays when the player is deleted).

    Raises:
        ParameterError: the player itself with ``-deletePlayer`` (the keys would go with it).
    """
    node = emotion_node.strip() or links[0].blendshape
    if delete_player and node == player:
        raise ParameterError(
            f"-emotionNode {player} would be deleted with -deletePlayer",
            hint="key the emotions on another node, or keep the player",
        )
    return node


def bake_player(
    scene: Any,
    player: str,
    *,
    delete_player: bool = False,
    engine: PlayerEngine | None = None,
    on_progress: Callable[[Progress], bool] | None = None,
    key_emotions: bool = False,
    emotion_node: str = "",
    key_head: bool = False,
) -> Outcome:
    """Key every blendShape weight the player drives, over the whole audio, in one undo.

    The player's cached track is used (computed now, with progress, if needed); its
    multipliers and offsets are applied as they are at each keyed frame. With
    ``key_emotions`` the emotion curves are keyed too, as keyable 0..1 attributes
    ``a2x_emotion_<e>`` (and ``a2x_emotion_detected_<e>`` with an emotion model) added to
    ``emotion_node`` (see :func:`emotion_target`), on the same frames.
    """
    links = scene.player_links(player)
    if not links:
        raise A2XError(
            f"{player} drives no blendShape weight", hint="connect it first (a2xConnectPlayer)"
        )
    node = (emotion_target(player, links, emotion_node, delete_player)
            if key_emotions or key_head else "")  # fmt: skip
    if node and not scene.exists(node):
        raise ParameterError(f"-emotionNode {node!r} does not exist", hint="name an existing node")
    fps = scene.scene_fps() or FALLBACK_FPS
    inputs = PlayerInputs.from_values(scene.player_values(player), fps)
    engine = engine or PlayerEngine()
    track = engine.wait(inputs, on_progress)
    result = track.result
    frames = plan_frames(result, fps, inputs.offset_s)
    controls = {}
    for link in links:
        mult_plug, off_plug = _control_plugs(player, link)
        controls[link.source] = (
            _sample(scene, mult_plug, frames, 1.0), _sample(scene, off_plug, frames, 0.0)
        )
    plan, curves = plan_keys(result, links, fps, inputs.offset_s, controls)
    emotions = plan_emotion_keys(result, fps, inputs.offset_s) if key_emotions else []
    head = plan_head_keys(result, fps, inputs.offset_s) if key_head else []
    warnings = list(result.warnings)
    if key_head and not head:
        warnings.append(f"{player}: the {result.model or inputs.model} model gives no head "
                        "motion to key (-keyHead needs the default model)")  # fmt: skip
    if key_emotions and not emotions:
        warnings.append(f"{player}: the {result.model or inputs.model} model gives no emotion "
                        "curves to key (-keyEmotions needs an Audio2Face-3D model)")  # fmt: skip
    edit = scene.begin_edit()
    for link in links:
        edit.disconnect(f"{player}.{link.source_attr}", link.dest_plug)
    for curve in curves:
        edit.key_curve(curve.plug, curve.frames.tolist(), curve.values.tolist())
    for curve in emotions:
        edit.add_attr(node, curve.plug, 0.0, 1.0)
        edit.key_curve(f"{node}.{curve.plug}", curve.frames.tolist(), curve.values.tolist())
    for curve in head:
        edit.add_attr(node, curve.plug, -HEAD_RANGE_DEG, HEAD_RANGE_DEG)
        edit.key_curve(f"{node}.{curve.plug}", curve.frames.tolist(), curve.values.tolist())
    if delete_player:
        edit.delete_node(player)
    edit.do_it()
    first, last = plan.frame_range
    info = [f"{player}: baked {len(curves)} weight(s), frames {first:g}-{last:g}"]
    if emotions:
        info.append(f"{player}: keyed {len(emotions)} emotion curve(s) as a2x_emotion_* on {node}")
    if head:
        info.append(f"{player}: keyed the head motion as a2x_head_* (degrees) on {node}")
    plugs = [c.plug for c in curves] + [f"{node}.{c.plug}" for c in [*emotions, *head]]
    return Outcome(edit, plugs, warnings, info)


def make_command_classes(scene: Any, run: Callable[[str, dict[str, Any], list[str]], Outcome]) -> list[type]:
    """One ``MPxCommand`` class per :data:`SPECS` entry, each calling ``run(name, flags,
    objects)`` and keeping the returned edit for undo/redo."""
    classes = []
    for spec in SPECS:

        class Command(scene.MPxCommand):  # type: ignore[name-defined, misc]
            command_spec = spec

            def __init__(self) -> None:
                super().__init__()
                self.edit: Any = None

            @classmethod
            def creator(cls) -> Any:
                return cls()

            @classmethod
            def syntax_creator(cls) -> Any:
                return scene.make_syntax(cls.command_spec)

            def isUndoable(self) -> bool:  # noqa: N802 - Maya's naming
                return self.edit is not None

            def doIt(self, args: Any) -> None:  # noqa: N802
                flags, objects = scene.parse_args(self.command_spec, args)
                try:
                    outcome = run(self.command_spec.name, flags, objects)
                except A2XError as error:
                    scene.error(str(error))
                    raise
                self.edit = outcome.edit
                for line in outcome.info:
                    scene.info(line)
                for line in outcome.warnings:
                    scene.warn(line)
                scene.set_command_result(self, outcome.result)

            def undoIt(self) -> None:  # noqa: N802
                if self.edit is not None:
                    self.edit.undo_it()

            def redoIt(self) -> None:  # noqa: N802
                if self.edit is not None:
                    self.edit.redo_it()

        Command.__name__ = spec.name
        classes.append(Command)
    return classes
