"""A hand-written fake of :class:`a2x_maya.maya_api.MayaScene`: an in-memory scene graph.

It models only what the facade promises (nodes with attributes and aliases, connections,
anim curves, undoable edits, messages), so that the glue in ``commands``, ``node`` and
``plugin`` runs under plain CPython. It is not a Maya emulator: Maya's renaming rules,
DG evaluation and the API types are out of scope and are exercised by ``smoke_mayapy.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from a2x_maya import attributes as A
from a2x_maya.connect import Link
from a2x_maya.track import FrameValues


class FakeMPxNode:
    """Stands in for ``om.MPxNode``: the node knows its name through the fake scene."""

    def thisMObject(self) -> Any:  # noqa: N802 - Maya's naming
        return self


class FakeMPxCommand:
    """Stands in for ``om.MPxCommand``: keeps the last result."""

    def __init__(self) -> None:
        self.result: Any = None

    def setResult(self, value: Any) -> None:  # noqa: N802
        self.result = value


class FakePlugin:
    """Records registrations like ``om.MFnPlugin``."""

    def __init__(self, scene: FakeScene) -> None:
        self.scene = scene

    def registerNode(self, name: str, type_id: Any, creator: Callable[[], Any], init: Any) -> None:  # noqa: N802
        init()
        self.scene.node_creators[name] = creator

    def registerCommand(self, name: str, creator: Any, syntax: Any) -> None:  # noqa: N802
        self.scene.command_classes[name] = creator

    def deregisterCommand(self, name: str) -> None:  # noqa: N802
        del self.scene.command_classes[name]

    def deregisterNode(self, type_id: Any) -> None:  # noqa: N802
        self.scene.node_creators.clear()


class FakeEdit:
    """Applies each operation at once and keeps its inverse for undo."""

    def __init__(self, scene: FakeScene) -> None:
        self.scene = scene
        self.ops: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self.log: list[tuple[Any, ...]] = []

    def _apply(self, do: Callable[[], None], undo: Callable[[], None]) -> None:
        do()
        self.ops.append((do, undo))

    def create_node(self, node_type: str, name: str) -> str:
        name = self.scene.unique_name(name)
        user = self.scene.node_creators[node_type]() if node_type in self.scene.node_creators else None

        def do() -> None:
            self.scene.nodes[name] = {"type": node_type, "attrs": {}, "aliases": {}, "user": user}

        self._apply(do, lambda: self.scene.nodes.pop(name))
        self.log.append(("create", node_type, name))
        return name

    def connect(self, source: str, dest: str, force: bool = False) -> None:
        old = self.scene.connections.get(dest)
        if old is not None and not force:
            return

        def do() -> None:
            self.scene.connections[dest] = source

        def undo() -> None:
            if old is None:
                self.scene.connections.pop(dest, None)
            else:
                self.scene.connections[dest] = old

        self._apply(do, undo)
        self.log.append(("connect", source, dest))

    def disconnect(self, source: str, dest: str) -> None:
        assert self.scene.connections.get(dest) == source, f"{source} -> {dest} is not connected"
        self._apply(lambda: self.scene.connections.pop(dest), lambda: self.scene.connections.__setitem__(dest, source))
        self.log.append(("disconnect", source, dest))

    def mel(self, command: str) -> None:
        match = re.fullmatch(r"aliasAttr (\S+) ([^.]+)\.(\S+)", command)
        assert match, f"the fake understands aliasAttr only, got {command!r}"
        alias, node, attr = match.groups()
        aliases = self.scene.nodes[node]["aliases"]
        self._apply(lambda: aliases.__setitem__(alias, attr), lambda: aliases.pop(alias))

    def set_attr(self, plug: str, value: float | str) -> None:
        node, attr = plug.split(".", 1)
        attrs = self.scene.nodes[node]["attrs"]
        old = attrs.get(attr, _MISSING)

        def undo() -> None:
            if old is _MISSING:
                attrs.pop(attr, None)
            else:
                attrs[attr] = old

        self._apply(lambda: attrs.__setitem__(attr, value), undo)

    def add_attr(self, node: str, name: str, minimum: float, maximum: float) -> None:
        extra = self.scene.nodes[node].setdefault("extra_attrs", {})
        if name in extra:
            return
        self._apply(lambda: extra.__setitem__(name, (minimum, maximum)), lambda: extra.pop(name))
        self.log.append(("add_attr", node, name))

    def key_curve(self, plug: str, frames: Sequence[float], values: Sequence[float]) -> None:
        assert plug not in self.scene.connections, f"{plug} still has an input"
        node, attr = plug.split(".", 1)
        if "[" not in attr:  # a plain attribute must exist: static or added by add_attr
            assert attr in self.scene.nodes[node].get("extra_attrs", {}), f"{plug} does not exist"
        keys = (np.asarray(frames, float), np.asarray(values, float))
        old = self.scene.curves.get(plug)  # an earlier bake's curve is replaced

        def undo() -> None:
            if old is None:
                self.scene.curves.pop(plug)
            else:
                self.scene.curves[plug] = old

        self._apply(lambda: self.scene.curves.__setitem__(plug, keys), undo)
        self.log.append(("key", plug, len(frames)))

    def delete_node(self, name: str) -> None:
        node = self.scene.nodes[name]
        links = {d: s for d, s in self.scene.connections.items() if d.startswith(name + ".") or s.startswith(name + ".")}

        def do() -> None:
            self.scene.nodes.pop(name)
            for dest in links:
                self.scene.connections.pop(dest, None)

        def undo() -> None:
            self.scene.nodes[name] = node
            self.scene.connections.update(links)

        self._apply(do, undo)
        self.log.append(("delete", name))

    def do_it(self) -> None:
        self.scene.done_edits.append(self)

    def undo_it(self) -> None:
        for _do, undo in reversed(self.ops):
            undo()

    def redo_it(self) -> None:
        for do, _undo in self.ops:
            do()


_MISSING = object()


class FakeScene:
    """In-memory stand-in for :class:`a2x_maya.maya_api.MayaScene` (same public methods)."""

    MPxNode = FakeMPxNode
    MPxCommand = FakeMPxCommand

    @staticmethod
    def MTypeId(value: int) -> int:  # noqa: N802
        return value

    def __init__(self, fps: Fraction | None = Fraction(24), interactive: bool = True) -> None:
        self.fps = fps
        self.interactive = interactive
        self.nodes: dict[str, dict[str, Any]] = {"time1": {"type": "time", "attrs": {}, "aliases": {}, "user": None}}
        self.connections: dict[str, str] = {}
        self.curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.selected: list[str] = []
        self.messages: list[tuple[str, str]] = []
        self.progress: list[tuple[str, Any]] = []
        self.cancel_progress = False
        self.node_creators: dict[str, Callable[[], Any]] = {}
        self.command_classes: dict[str, Any] = {}
        self.done_edits: list[FakeEdit] = []
        self.dirtied: list[str] = []
        self.menu: list[tuple[str, str]] | None = None
        self.timers: list[Callable[[], None]] = []
        self.slider_sound: str | None = None
        self.executed: list[str] = []

    # -- building test scenes ----------------------------------------------------------
    def add_blendshape(self, name: str, targets: dict[int, str], mesh: str | None = None) -> str:
        self.nodes[name] = {"type": "blendShape", "attrs": {}, "aliases": {}, "user": None,
                            "targets": dict(targets), "mesh": mesh}  # fmt: skip
        if mesh:
            self.nodes[mesh] = {"type": "mesh", "attrs": {}, "aliases": {}, "user": None}
        return name

    def add_sound(self, name: str, path: str, offset_frame: float = 0.0) -> str:
        attrs = {"filename": path, "offset": offset_frame, "sourceStart": 0.0, "sourceEnd": -1.0}
        self.nodes[name] = {"type": "audio", "attrs": attrs, "aliases": {}, "user": None}
        return name

    def unique_name(self, name: str) -> str:
        base, n = name.rstrip("0123456789") or name, 1
        candidate = name
        while candidate in self.nodes:
            n += 1
            candidate = f"{base}{n}"
        return candidate

    def value(self, plug: str) -> Any:
        """An input value: connection first (audio node attributes), then the set value."""
        source = self.connections.get(plug)
        if source is not None and not source.startswith("time1."):
            node, attr = source.split(".", 1)
            value = self.nodes[node]["attrs"][attr]
            if attr in ("offset", "sourceStart", "sourceEnd") and self.fps and value >= 0:
                return float(value) / float(self.fps)  # frames -> seconds, as MTime does
            return value
        node, attr = plug.split(".", 1)
        return self.nodes[node]["attrs"].get(attr)

    def evaluate(self, player: str, time_s: float) -> dict[str, Any]:
        """Run the node's compute at ``time_s`` and return what it wrote."""
        user = self.nodes[player]["user"]
        block = dict(self.player_values(player), time=time_s)
        user.compute(A.OUTPUT_WEIGHTS.name, block)
        return block["outputs"]

    # -- the facade ----------------------------------------------------------------------
    def plugin(self, mobject: Any, vendor: str, version: str) -> FakePlugin:
        return FakePlugin(self)

    def make_syntax(self, spec: Any) -> Any:
        return spec

    def parse_args(self, spec: Any, args: Any) -> tuple[dict[str, Any], list[str]]:
        flags, objects = args
        return dict(flags), list(objects) or self.selection()

    def set_command_result(self, command: Any, value: Any) -> None:
        command.setResult(value)

    def define_player_attributes(self, node_class: Any) -> dict[str, Any]:
        names = [n for n, *_ in A.SOURCE_ATTRS] + [a.name for a in A.PARAMETER_ATTRS + A.EMOTION_ATTRS]
        names += [a.name for a in A.INPUT_ARRAYS + A.OUTPUT_ARRAYS]
        return {n: n for n in names}

    def is_output_plug(self, plug: Any, attrs: Any) -> bool:
        return plug in (A.OUTPUT_WEIGHTS.name, A.OUTPUT_EMOTIONS.name)

    def read_inputs(self, block: Any, attrs: Any) -> dict[str, Any]:
        return dict(block)

    def write_outputs(self, block: Any, attrs: Any, frame: FrameValues, progress: float) -> None:
        assert len(frame.emotions) == len(frame.detected) == len(A.EMOTIONS)
        block["outputs"] = {"frame": frame, "progress": progress}

    def scene_fps(self) -> Fraction | None:
        return self.fps

    def is_interactive(self) -> bool:
        return self.interactive

    def node_name(self, user_node: Any) -> str:
        return next(n for n, node in self.nodes.items() if node["user"] is user_node)

    def user_node(self, name: str) -> Any:
        return self.nodes[name]["user"]

    def exists(self, name: str) -> bool:
        return name.split(".")[0] in self.nodes

    def node_type(self, name: str) -> str:
        return str(self.nodes[name]["type"])

    def selection(self) -> list[str]:
        return list(self.selected)

    def nodes_of_type(self, node_type: str) -> list[str]:
        return [n for n, node in self.nodes.items() if node["type"] == node_type]

    def blendshapes_of(self, name: str) -> list[str]:
        if self.nodes[name]["type"] == "blendShape":
            return [name]
        return [n for n, node in self.nodes.items() if node.get("mesh") == name]

    def weight_aliases(self, blendshape: str) -> dict[int, str]:
        return dict(self.nodes[blendshape]["targets"])

    def connected_inputs(self, plugs: Sequence[str]) -> list[str]:
        return [p for p in plugs if p in self.connections]

    def player_links(self, player: str) -> list[Link]:
        links = []
        prefix = f"{player}.{A.OUTPUT_WEIGHTS.name}["
        for dest, source in sorted(self.connections.items()):
            if source.startswith(prefix):
                node, attr = dest.split(".", 1)
                index = int(attr[len("weight["):-1])
                src_index = int(source[len(prefix):-1])
                links.append(Link(node, index, self.weight_aliases(node)[index], A.OUTPUT_POSES[src_index]))
        return links

    def player_values(self, player: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, _short, _kind, default in A.SOURCE_ATTRS:
            value = self.value(f"{player}.{name}")
            values[name] = default if value is None else value
        for spec in A.PARAMETER_ATTRS + A.EMOTION_ATTRS:
            value = self.value(f"{player}.{spec.name}")
            values[spec.name] = spec.default if value is None else float(value)
        attrs = self.nodes[player]["attrs"]
        for array in A.INPUT_ARRAYS:
            pattern = re.compile(rf"^{array.name}\[(\d+)\]$")
            values[array.name] = {int(m.group(1)): v for k, v in attrs.items() if (m := pattern.match(k))}
        return values

    def plug_samples(self, plug: str, frames: Sequence[float]) -> float | list[float]:
        if plug in self.curves:
            keys, values = self.curves[plug]
            return [float(v) for v in np.interp(frames, keys, values)]
        node, attr = plug.split(".", 1)
        value = self.nodes[node]["attrs"].get(attr)
        return float("nan") if value is None else float(value)

    def time_slider_sound(self) -> str | None:
        return self.slider_sound

    def create_sound(self, path: str, offset_frame: float = 0.0) -> str:
        return self.add_sound(self.unique_name("audio1"), path, offset_frame)

    def set_time_slider_sound(self, sound: str) -> None:
        self.slider_sound = sound

    def begin_edit(self) -> FakeEdit:
        return FakeEdit(self)

    def dirty(self, plug: str) -> None:
        self.dirtied.append(plug)

    def info(self, message: str) -> None:
        self.messages.append(("info", message))

    def warn(self, message: str) -> None:
        self.messages.append(("warning", message))

    def error(self, message: str) -> None:
        self.messages.append(("error", message))

    def progress_begin(self, status: str) -> None:
        self.progress.append(("begin", status))

    def progress_update(self, fraction: float, status: str) -> bool:
        self.progress.append(("update", fraction))
        return not self.cancel_progress

    def progress_end(self) -> None:
        self.progress.append(("end", None))

    def start_timer(self, callback: Callable[[], None], interval_s: float = 0.2) -> Any:
        if not self.interactive:
            return None
        self.timers.append(callback)
        return callback

    def stop_timer(self, timer: Any) -> None:
        if timer in self.timers:
            self.timers.remove(timer)

    def build_menu(self, items: Sequence[tuple[str, str]]) -> None:
        if self.interactive:
            self.menu = list(items)

    def delete_menu(self) -> None:
        self.menu = None

    def main_window_pointer(self) -> int | None:
        return None

    def execute(self, command: str) -> Any:
        self.executed.append(command)
        return None
