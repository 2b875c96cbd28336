"""Plug-in registration and the command dispatcher; the entry file calls :func:`initialize`.

Registration order is explicit: the node, then one command per
:data:`a2x_maya.commands.SPECS`, then (interactive sessions) the "a2x" menu and the poller.
"""

from __future__ import annotations

from typing import Any

from a2x_core.version import __version__

from . import NODE_ID, NODE_TYPE, VENDOR
from .commands import (
    Outcome,
    bake_player,
    connect_player,
    create_player,
    load_model_defaults,
    make_command_classes,
)
from .engine import MODELS, PlayerEngine
from .node import Poller, make_node_class

#: The "a2x" menu: (label, command); "" = divider. Every item runs a registered command.
MENU_ITEMS: tuple[tuple[str, str], ...] = (
    ("Create Player on Selection", "a2xCreatePlayer"),
    ("Connect Player to Selection (player first)", "a2xConnectPlayer -force"),
    ("", ""),
    ("Bake Player", "a2xBake"),
    ("Bake Player with Emotion Curves", "a2xBake -keyEmotions"),
    ("Bake Player and Delete It", "a2xBake -deletePlayer"),
    ("", ""),
    ("Load Model Defaults", "a2xLoadModelDefaults"),
    ("Open a2x Panel...", "python:import a2x_maya.panel; a2x_maya.panel.show()"),
)


class Runtime:
    """What the loaded plug-in holds: the facade, the node class, the poller and its timer."""

    def __init__(self, scene: Any) -> None:
        self.scene = scene
        self.node_class = make_node_class(scene, NODE_ID)
        self.command_classes = make_command_classes(scene, self.run)
        self.poller = Poller(scene)
        self.timer: Any = None

    def engine_of(self, player: str) -> PlayerEngine:
        """The player's own engine (its cached track), or a fresh one."""
        node = self.scene.user_node(player)
        engine = getattr(node, "engine", None)
        return engine if isinstance(engine, PlayerEngine) else PlayerEngine()

    def _bake_progress(self, progress: Any) -> bool:
        return bool(self.scene.progress_update(progress.fraction, f"a2x: {progress.stage}"))

    def run(self, name: str, flags: dict[str, Any], objects: list[str]) -> Outcome:
        """Dispatch one command (see :data:`a2x_maya.commands.SPECS`)."""
        scene = self.scene
        if name == "a2xCreatePlayer":
            return create_player(scene, objects, name=flags.get("name", ""),
                                 model=flags.get("model", ""), audio=flags.get("audio", ""),
                                 force=bool(flags.get("force")),
                                 emotion_model=flags.get("emotionModel", ""),
                                 emotion_mix=flags.get("emotionMix", ""),
                                 identity=flags.get("identity", ""),
                                 language=flags.get("language", ""),
                                 transcript=flags.get("transcript", ""))  # fmt: skip
        players = [o for o in objects if scene.exists(o) and scene.node_type(o) == NODE_TYPE]
        if not players:
            from a2x_core.errors import A2XError

            raise A2XError(f"no {NODE_TYPE} given or selected", hint="select the player first")
        player = players[0]
        if name == "a2xConnectPlayer":
            rest = [o for o in objects if o != player]
            return connect_player(scene, player, rest, force=bool(flags.get("force")))
        if name == "a2xBake":
            scene.progress_begin("a2x: baking")
            try:
                return bake_player(scene, player, delete_player=bool(flags.get("deletePlayer")),
                                   engine=self.engine_of(player), on_progress=self._bake_progress,
                                   key_emotions=bool(flags.get("keyEmotions")),
                                   emotion_node=flags.get("emotionNode", ""),
                                   key_head=bool(flags.get("keyHead")))  # fmt: skip
            finally:
                scene.progress_end()
        if name == "a2xLoadModelDefaults":
            values = scene.player_values(player)
            model = MODELS.get(str(values.get("modelPath") or "default")).model
            return load_model_defaults(scene, player, model.info(),
                                       identity=str(values.get("identity") or ""))  # fmt: skip
        raise ValueError(f"unknown command {name!r}")


_RUNTIME: Runtime | None = None


def initialize(mobject: Any, scene: Any | None = None) -> Runtime:
    """Register the node and commands; build the menu and start the poller when interactive."""
    global _RUNTIME
    if scene is None:
        from .maya_api import MayaScene

        scene = MayaScene()
    runtime = Runtime(scene)
    plugin = scene.plugin(mobject, VENDOR, __version__)
    node = runtime.node_class
    plugin.registerNode(NODE_TYPE, node.type_id, node.creator, node.initialize)
    for command in runtime.command_classes:
        plugin.registerCommand(command.__name__, command.creator, command.syntax_creator)
    scene.build_menu(MENU_ITEMS)
    runtime.timer = scene.start_timer(runtime.poller.tick)
    _RUNTIME = runtime
    return runtime


def uninitialize(mobject: Any, scene: Any | None = None) -> None:
    """Stop the poller, remove the menu, deregister commands and the node."""
    global _RUNTIME
    runtime = _RUNTIME
    scene = scene or (runtime.scene if runtime else None)
    if runtime is None or scene is None:
        return
    scene.stop_timer(runtime.timer)
    scene.delete_menu()
    plugin = scene.plugin(mobject, VENDOR, __version__)
    for command in runtime.command_classes:
        plugin.deregisterCommand(command.__name__)
    plugin.deregisterNode(runtime.node_class.type_id)
    _RUNTIME = None


def runtime() -> Runtime | None:
    """The loaded plug-in's runtime (the panel uses it), or None."""
    return _RUNTIME
