"""The one loop under every model: audio in per track, network calls batched over tracks, the
stages after the network, frames out (``docs/architecture.md``, ``docs/streaming.md``).

A *track* is one clip or one stream: an :class:`a2x_core.audio.accumulator.AudioAccumulator` plus the model
kind's per-track state. A model kind (:class:`ModelStep`) says how many of a track's network
*units* can run with the audio that has arrived (a regression frame, a diffusion window, an
emotion inference), builds one batched call for a list of :class:`Span` s (each track's next
units), and turns the call's outputs into rows for the track's :class:`a2x_core.postprocess.chain.PostChain`.
The executor owns the rest: which tracks run together, cancel and progress, dropping audio no
future unit reads, collecting finished frames per track.

Offline is "push the whole clip, then close": every track has all its audio and has ended, and
:meth:`Executor.run_ready` runs until every unit is done, giving each call the same rows as a
stream of that clip would (so streams equal the offline run). Streams push as audio arrives;
each push runs what became ready for *every* open track in shared calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..audio.accumulator import AudioAccumulator, StreamLife
from ..jobs import CancelToken, Progress, ProgressCallback
from ..postprocess.chain import FrameBlock, PostChain


class Track:
    """One clip or stream in an executor: its audio, the kind's state, where its frames go."""

    def __init__(self, audio: AudioAccumulator, state: Any, chain: PostChain, slot: int) -> None:
        self.audio = audio
        self.state = state  # the model kind's per-track state (feeds, carried network state)
        self.chain = chain
        self.slot = slot
        self.next_unit = 0  # first network unit not yet run
        self.blocks: list[FrameBlock] = []  # finished frames not yet handed out
        self.life = StreamLife()


@dataclass
class Span:
    """Units ``first .. first + count`` of ``track`` in one network call."""

    track: Track
    first: int
    count: int


@dataclass
class ChainStep:
    """Rows ``[G, n, R]`` for one :meth:`.PostChain.step`: output frames ``starts[g] ..`` of
    ``tracks[g]``."""

    rows: Any
    tracks: list[Track]
    starts: list[int] = field(default_factory=list)


class ModelStep(Protocol):
    """A model kind reduced to what differs between kinds (the executor owns the loop)."""

    #: units of one track per network call (a short span is padded as the kind needs)
    units_per_call: int

    def ready_units(self, track: Track) -> int:
        """How many units (from 0) the audio that has arrived allows; once the track's audio
        ended, all of them."""
        ...

    def run(self, spans: Sequence[Span]) -> list[ChainStep]:
        """One batched network call for ``spans`` (feeds -> engine -> split), as chain steps."""
        ...

    def keep_from(self, track: Track) -> int:
        """The first sample any unit from ``track.next_unit`` on reads (earlier ones go)."""
        ...


class Executor:
    """Runs a :class:`ModelStep` over tracks; see the module docstring."""

    def __init__(self, step: ModelStep) -> None:
        self.step = step
        self.tracks: list[Track] = []
        #: what the model kind shares between the tracks of one settings set (its prepared run
        #: and chain), keyed by the kind
        self.shared: dict[Any, Any] = {}

    def add(self, track: Track) -> Track:
        self.tracks.append(track)
        return track

    def remove(self, track: Track) -> None:
        """Take a track out (ended or cancelled) and free its chain slot."""
        if track in self.tracks:
            self.tracks.remove(track)
            track.chain.release(track.slot)

    def pending(self) -> list[Span]:
        """Each track's next call's worth of ready units."""
        per_call = max(1, int(self.step.units_per_call))
        spans = []
        for track in self.tracks:
            ready = self.step.ready_units(track)
            if ready > track.next_unit:
                spans.append(Span(track, track.next_unit, min(per_call, ready - track.next_unit)))
        return spans

    def run_ready(
        self,
        cancel: CancelToken | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Run every unit the tracks' audio allows, in calls shared by all tracks with ready
        units; finished frames wait in each track's ``blocks``. Returns the units run.
        ``progress(units_done_in_this_call)`` after each call; ``cancel`` checked before each."""
        done = 0
        while spans := self.pending():
            if cancel is not None:
                cancel.check()
            for chain_step in self.step.run(spans):
                self._to_chains(chain_step)
            for span in spans:
                span.track.next_unit = span.first + span.count
                track = span.track
                track.audio.drop_before(self.step.keep_from(track))
            units = sum(s.count for s in spans)
            done += units
            if progress is not None:
                progress(units)
        self._collect()
        return done

    def _to_chains(self, chain_step: ChainStep) -> None:
        """One chain step per chain among the tracks (tracks of other settings may share a
        network call but not a chain)."""
        by_chain: dict[int, list[int]] = {}
        for g, track in enumerate(chain_step.tracks):
            by_chain.setdefault(id(track.chain), []).append(g)
        for rows_of in by_chain.values():
            tracks = [chain_step.tracks[g] for g in rows_of]
            rows = chain_step.rows
            if len(rows_of) != len(chain_step.tracks):
                rows = rows[row_index(rows, rows_of)]
            starts = [chain_step.starts[g] for g in rows_of]
            tracks[0].chain.step(rows, [t.slot for t in tracks], starts)

    def _collect(self) -> None:
        """Hand each chain's finished frames to their tracks."""
        chains = {id(t.chain): t.chain for t in self.tracks}
        by_slot = {(id(t.chain), t.slot): t for t in self.tracks}
        for key, chain in chains.items():
            for slot, block in chain.take().items():
                track = by_slot.get((key, slot))
                if track is not None and block_frames(block):
                    track.blocks.append(block)


def row_index(rows: Any, picks: Any) -> Any:
    """An index for ``rows[...]`` picking ``picks`` (ints, or an int array of any shape) of a
    NumPy array or a torch tensor (on the tensor's device)."""
    device = getattr(rows, "device", None)
    if device is None or isinstance(rows, np.ndarray):
        return np.asarray(picks, np.int64)
    import torch  # rows are a torch tensor: index on its device

    return torch.as_tensor(picks, device=device)


def block_frames(block: FrameBlock) -> int:
    """Frames in a block (every array in it has one row per frame)."""
    return len(next(iter(block.values()))) if block else 0


def drain(track: Track) -> FrameBlock | None:
    """A track's waiting frames as one block (None when there are none); empties it."""
    if not track.blocks:
        return None
    blocks, track.blocks = track.blocks, []
    if len(blocks) == 1:
        return blocks[0]
    return {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}


def offline_progress(
    progress: ProgressCallback | None, total: int, label: str
) -> Callable[[int], None] | None:
    """An executor progress callback that reports the fraction of ``total`` units done."""
    if progress is None:
        return None
    done = 0

    def report(units: int) -> None:
        nonlocal done
        done += units
        progress(Progress(min(done / max(total, 1), 1.0), label))

    return report
