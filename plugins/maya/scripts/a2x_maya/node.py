"""The player node's glue: what ``compute`` and the main-thread poller do, via the facade.

:func:`make_node_class` builds the ``MPxNode`` subclass on the facade's base class, so the
same code runs under Maya and, with the tests' fake facade, under plain CPython.
"""

from __future__ import annotations

import logging
from typing import Any

from a2x_core.errors import A2XError

from . import NODE_TYPE
from .attributes import EYE_ROTATIONS, JAW_TRANSFORM, OUTPUT_ARRAYS
from .engine import ENGINES, PlayerEngine, poll_all
from .parameters import PlaybackControls, PlayerInputs
from .timeunits import FALLBACK_FPS

log = logging.getLogger("a2x_maya")

#: Every output attribute, dirtied when a track lands.
OUTPUT_PLUGS: tuple[str, ...] = (
    *(array.name for array in OUTPUT_ARRAYS), JAW_TRANSFORM[0], *(n for n, _ in EYE_ROTATIONS)
)


def evaluate(scene: Any, node: Any, block: Any) -> None:
    """One compute: read the inputs, make sure a track is (being) computed, write the
    looked-up frame. Batch sessions (mayapy, render) wait for the track instead."""
    values = scene.read_inputs(block, node.attrs)
    inputs = PlayerInputs.from_values(values, scene.scene_fps() or FALLBACK_FPS)
    engine: PlayerEngine = node.engine
    status = engine.request(inputs)
    if status.state == "computing" and not scene.is_interactive():
        try:
            engine.wait(inputs)
        except A2XError as error:
            log.warning("a2x player: %s", error)
        status = engine.status
    frame = engine.sample(float(values["time"]), PlaybackControls.from_values(values))
    scene.write_outputs(block, node.attrs, frame, status.fraction if status.state != "ready" else 1.0)


class Poller:
    """Main-thread timer work: collect finished tracks, dirty their nodes, show progress and
    errors once each."""

    def __init__(self, scene: Any) -> None:
        self.scene = scene
        self._shown_errors: dict[int, str] = {}
        self._progress_shown = False

    def tick(self) -> None:
        """Poll every engine; called every 0.2 s while Maya is idle."""
        for engine in poll_all():
            owner = getattr(engine, "owner", None)
            node = owner() if owner is not None else None
            if node is None:
                continue
            name = self.scene.node_name(node)
            for output in OUTPUT_PLUGS:  # a new track changes every output, not an input
                self.scene.dirty(f"{name}.{output}")
            status = engine.status
            if status.state == "error" and self._shown_errors.get(id(engine)) != status.message:
                self._shown_errors[id(engine)] = status.message
                self.scene.warn(f"{name}: {status.message}")
            for warning in engine.warnings:
                self.scene.warn(f"{name}: {warning}")
            engine.warnings = []
        busy = [e for e in list(ENGINES) if e.busy]
        if busy:
            fraction = min(e.status.fraction for e in busy)
            if not self._progress_shown:
                self.scene.progress_begin("a2x: computing animation")
                self._progress_shown = True
            if not self.scene.progress_update(fraction, f"a2x: {busy[0].status.message}"):
                for engine in busy:
                    engine.cancel()
        elif self._progress_shown:
            self.scene.progress_end()
            self._progress_shown = False


def make_node_class(scene: Any, node_id: int) -> type:
    """The ``a2xInferencePlayer`` MPxNode class, built on the facade's ``MPxNode``."""
    import weakref

    class A2XInferencePlayer(scene.MPxNode):  # type: ignore[name-defined, misc]
        """Plays an a2x track: whole-track inference on a worker, per-frame lookup."""

        type_name = NODE_TYPE
        type_id = scene.MTypeId(node_id)
        attrs: dict[str, Any] = {}

        def __init__(self) -> None:
            super().__init__()
            self.engine = PlayerEngine()
            self.engine.owner = weakref.ref(self)  # type: ignore[attr-defined]

        @staticmethod
        def creator() -> Any:
            return A2XInferencePlayer()

        @classmethod
        def initialize(cls) -> None:
            cls.attrs.update(scene.define_player_attributes(cls))

        def compute(self, plug: Any, block: Any) -> Any:
            if not scene.is_output_plug(plug, self.attrs):
                return None  # Maya computes inherited attributes
            evaluate(scene, self, block)
            return self

    return A2XInferencePlayer
