"""The stages after the network, behind one interface for the executor (``docs/architecture.md``).

A chain holds many tracks, each in a *slot* with its own state (skin filters, saccade clock,
solver's temporal term). The executor hands it the rows of the network's output that a call
finished, grouped per chain step: ``rows [G, n, R]`` for the slots ``slots`` starting at their
output frames ``starts``; :meth:`PostChain.take` returns the frames finished since the last take,
per slot, as a :data:`FrameBlock`:

- ``skin`` ``[n, P_skin]`` and ``tongue`` ``[n, P_tongue]`` pose weights (the model's pose order),
  ``jaw`` ``[n, 4, 4]``, ``eyes`` ``[n, 6]``; with geometry ``skin_geometry`` ``[n, 3V]`` and
  ``tongue_geometry`` ``[n, 3Vt]``.

Two implementations: :class:`HostChain` (NumPy, one :class:`.TrackFrames` per slot, the CPU
solver) and :class:`DeviceChain` (torch, :class:`a2x_core.postprocess.gpu.DevicePipeline` batched over
slots, the SDK's GPU solver).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ..blendshapes.settings import fresh
from .track_frames import TrackFrames

#: One slot's frames since the last take (see the module docstring).
FrameBlock = dict[str, np.ndarray]

#: A kind's split of network rows ``[n, R]`` into what :meth:`.TrackFrames.add` takes:
#: skin deltas, tongue deltas, 15 jaw values, 4 eye values.
RowSplit = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


class PostChain(Protocol):
    """What the executor needs from the stages after the network."""

    def open_slot(self, stages: TrackFrames) -> int:
        """A slot with fresh state for a new track, run with ``stages``' settings."""
        ...

    def release(self, slot: int) -> None:
        """The track in ``slot`` ended; its state can go."""
        ...

    def step(self, rows: Any, slots: Sequence[int], starts: Sequence[int]) -> None:
        """Network rows ``[G, n, R]`` (host or device) of frames ``starts[g] ..`` of ``slots``."""
        ...

    def take(self) -> dict[int, FrameBlock]:
        """Each slot's frames finished since the last take, in frame order."""
        ...


class HostChain:
    """The NumPy stages (:class:`.TrackFrames`) per slot; ``split`` turns a kind's network rows
    into deltas (the regression model's PCA decode, the diffusion model's column pick)."""

    def __init__(self, split: RowSplit) -> None:
        self.split = split
        self._slots: dict[int, TrackFrames] = {}
        self._next = 0

    def open_slot(self, stages: TrackFrames) -> int:
        slot = self._next
        self._next += 1
        self._slots[slot] = fresh(stages)
        return slot

    def release(self, slot: int) -> None:
        self._slots.pop(slot, None)

    def step(self, rows: Any, slots: Sequence[int], starts: Sequence[int]) -> None:
        rows = np.asarray(rows)
        for g, slot in enumerate(slots):
            self._slots[slot].add(*self.split(rows[g]))

    def take(self) -> dict[int, FrameBlock]:
        out = {}
        for slot, frames in self._slots.items():
            block = frames.take_block()
            if block is not None:
                out[slot] = block
        return out


class DeviceChain:
    """:class:`a2x_core.postprocess.gpu.DevicePipeline` behind the chain interface: one pipeline for
    tracks that share one run's settings (its folded matrices and stacked solver), batched over
    slots.

    Offline (``streaming=False``) the pipeline was built for the run's clips with their lengths
    (slot ``k`` is clip ``k``, every step one start for all) and hands its frames over at the end
    (:meth:`.DevicePipeline.finish`, geometry included). Streaming, slots are added and released
    as streams come and go, each row at its own frame, and :meth:`take` returns the frames
    since the last take."""

    def __init__(self, pipeline: Any, *, streaming: bool = False) -> None:
        self.pipeline = pipeline
        self.streaming = streaming
        self._count = 0 if streaming else pipeline.tracks
        self._opened = 0
        self._torch = pipeline.torch

    def open_slot(self, stages: TrackFrames) -> int:
        if self.streaming:
            return int(self.pipeline.add_tracks(1)[0])
        if self._opened >= self._count:
            raise RuntimeError("the device pipeline was built for fewer tracks")
        self._opened += 1
        return self._opened - 1

    def release(self, slot: int) -> None:
        """Streaming: the slot's state is reset for reuse (its untaken frames dropped)."""
        if self.streaming:
            self.pipeline.release(slot)

    def step(self, rows: Any, slots: Sequence[int], starts: Sequence[int]) -> None:
        if self.streaming:
            if isinstance(rows, np.ndarray):  # host rows (a kind whose frames finish there)
                rows = self._torch.from_numpy(np.ascontiguousarray(rows))
            self.pipeline.step(rows, list(slots), np.asarray(starts, np.int64))
            return
        start = int(starts[0])
        if any(int(s) != start for s in starts):
            raise RuntimeError("one offline device step needs one start frame for all its tracks")
        everyone = len(slots) == self._count and list(slots) == list(range(self._count))
        live = None if everyone else self._torch.as_tensor(
            np.asarray(slots, np.int64), device=self.pipeline.device
        )
        self.pipeline.step(rows, live, start)

    def take(self) -> dict[int, FrameBlock]:
        if self.streaming:
            return {slot: {k: v for k, v in block.items() if k != "frames"}
                    for slot, block in self.pipeline.take().items()}  # fmt: skip
        out = {}
        for slot, item in enumerate(self.pipeline.finish()):
            out[slot] = {
                "skin": item["skin"], "tongue": item["tongue"], "jaw": item["jaw"],
                "eyes": item["eyes"],
                **{k: v.reshape(len(v), int(np.prod(v.shape[1:]))) for k, v in item.items()
                   if k.endswith("geometry")},  # (a track without frames has 0 rows)
            }  # fmt: skip
        return out
