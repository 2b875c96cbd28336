"""The device post-network chain (:class:`a2x_core.postprocess.gpu.DevicePipeline`) used the way
a streaming executor uses it: tracks join and leave at any time, each tick steps the tracks that
have the same number of ready frames together (one start per row), :meth:`take` hands out the
frames as they come. Every track must get exactly the frames of its own offline run.

Torch on the CPU; the rows are the generated regression network's real outputs (torch engine) on
the bundled speech sample, so the filters, solves, jaw and eyes see speech-like motion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from a2x_core.audio.decode import decode_audio  # noqa: E402
from a2x_core.audio.windows import frame_plan  # noqa: E402
from a2x_core.blendshapes.cpu import BlendshapeSolver  # noqa: E402
from a2x_core.errors import ParameterError  # noqa: E402
from a2x_core.models.registry import load_model  # noqa: E402
from a2x_core.models.regression import RegressionModel  # noqa: E402
from a2x_core.postprocess.cpu import frame_dt  # noqa: E402
from a2x_core.postprocess.gpu import DeviceInputs, DevicePipeline, SaccadeClock  # noqa: E402
from tests.a2f_folders import make_regression_folder  # noqa: E402
from tests.conftest import SAMPLE  # noqa: E402

#: Stream and offline runs of a track: the same float32 operations, grouped differently.
ATOL = 1e-6
#: Meshes (absolute coordinates) of both runs: float32 rounding of the coordinates.
MESH_RTOL = 5e-7
FPS = 30
#: Seconds of the speech sample each track takes (different lengths, different content).
CLIPS = ((0.0, 2.1), (1.5, 4.4), (3.0, 3.9), (5.2, 7.0), (6.0, 9.5))
OUTPUTS = ("skin", "tongue", "jaw", "eyes")


@dataclass
class Chain:
    """Builds pipelines of one model and run settings, and holds each clip's network rows."""

    model: RegressionModel
    rows: list[np.ndarray]  # per clip: network results [frames, R]
    cache: dict[Any, Any]

    def pipeline(self, lengths: list[int] | None = None, **options: Any) -> DevicePipeline:
        settings = self.model.settings({})
        package = self.model.package
        return DevicePipeline(
            "cpu", settings.animator, package.model_data, self.model._skin_basis,
            self.model._tongue_basis, BlendshapeSolver(package.skin.data, settings.skin),
            BlendshapeSolver(package.tongue.data, settings.tongue), frame_dt(FPS, 1), lengths,
            cache=self.cache, **options,
        )  # fmt: skip


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    generated = make_regression_folder(tmp_path_factory.mktemp("chain") / "model")
    model = load_model(generated.model_json, backend="torch", device="cpu")
    info = model.package.network_info
    settings = model.settings({})
    speech = decode_audio(SAMPLE).samples
    clips = [speech[int(a * 16000) : int(b * 16000)] for a, b in CLIPS]
    targets = [frame_plan(len(c), FPS) for c in clips]
    explicit = np.zeros((1, len(info.explicit_emotions)), np.float32)
    emotions = [np.repeat(model._emotion_input(settings, explicit), len(t), axis=0) for t in targets]
    longest = max(len(t) for t in targets)
    inputs = DeviceInputs("cpu", clips, targets, emotions, info.buffer_len, info.buffer_ofs,
                          settings.animator["input_strength"], longest)  # fmt: skip
    audio, emotion = inputs.rows(None, 0, longest)
    feeds = {"input": audio, "emotion": emotion}
    engine = model.engine
    with torch.inference_mode():
        out = engine.run_device([feeds[name] for name in engine.capabilities.device_inputs])[0]
    out = out.reshape(len(clips), longest, -1).numpy()
    return Chain(model, [out[k, : len(t)].copy() for k, t in enumerate(targets)], {})


def _offline(chain: Chain, clip: int, chunk: int = 7, geometry: bool = False) -> dict[str, np.ndarray]:
    """One track alone, offline: ``step(..., start=int)`` in chunks, then ``finish()``."""
    rows = chain.rows[clip]
    pipe = chain.pipeline([len(rows)], geometry=geometry)
    for start in range(0, len(rows), chunk):
        pipe.step(torch.from_numpy(rows[None, start : start + chunk]), None, start)
    return pipe.finish()[0]


@pytest.fixture(scope="module")
def alone(chain: Chain) -> list[dict[str, np.ndarray]]:
    return [_offline(chain, k) for k in range(len(CLIPS))]


def _assert_frames(got: dict[str, list[np.ndarray]], want: dict[str, np.ndarray], frames: int) -> None:
    """The frames received for a track (``take`` pieces, in order) are ``want``'s first
    ``frames`` frames, each exactly once."""
    indices = np.concatenate(got["frames"]) if got["frames"] else np.zeros(0, np.int64)
    np.testing.assert_array_equal(indices, np.arange(frames))
    for name in OUTPUTS:
        values = np.concatenate(got[name]) if got[name] else want[name][:0]
        np.testing.assert_allclose(values, want[name][:frames], atol=ATOL, rtol=0, err_msg=name)


class Streams:
    """An executor's bookkeeping around one pipeline: slots of the live clips, each clip's next
    frame, and what :meth:`DevicePipeline.take` handed out per clip."""

    def __init__(self, pipe: DevicePipeline, chain: Chain) -> None:
        self.pipe, self.chain = pipe, chain
        self.slot: dict[int, int] = {}  # clip -> slot
        self.next: dict[int, int] = {}  # clip -> its next frame
        self.got: dict[int, dict[str, list[np.ndarray]]] = {}

    def join(self, *clips: int) -> None:
        for clip, slot in zip(clips, self.pipe.add_tracks(len(clips)), strict=True):
            assert slot not in self.slot.values()
            self.slot[clip], self.next[clip] = slot, 0
            self.got[clip] = {name: [] for name in (*OUTPUTS, "frames")}

    def tick(self, ready: dict[int, int]) -> None:
        """Step ``ready[clip]`` more frames of each clip, one call per group of equal counts."""
        groups: dict[int, list[int]] = {}
        for clip, n in ready.items():
            n = min(n, len(self.chain.rows[clip]) - self.next[clip])
            if n > 0:
                groups.setdefault(n, []).append(clip)
        for n, clips in groups.items():
            rows = np.stack([self.chain.rows[c][self.next[c] : self.next[c] + n] for c in clips])
            starts = np.array([self.next[c] for c in clips], np.int64)
            live = [self.slot[c] for c in clips]
            self.pipe.step(torch.from_numpy(rows), live, starts)
            for c in clips:
                self.next[c] += n

    def take(self) -> None:
        by_slot = {slot: clip for clip, slot in self.slot.items()}
        for slot, out in self.pipe.take().items():
            clip = by_slot[slot]  # never a slot nobody holds
            assert len(out["frames"]) > 0
            for name, values in out.items():
                self.got[clip][name].append(values)

    def leave(self, clip: int) -> None:
        self.pipe.release(self.slot.pop(clip))


def test_streams_joining_and_leaving_get_the_frames_of_each_track_alone(
    chain: Chain, alone: list[dict[str, np.ndarray]]
) -> None:
    """Tracks fed in random chunk sizes at their own frame positions, grouped by chunk size
    (rows of one call at different starts, a track's first chunk next to running ones), joining
    late, one leaving early and its slot taken by a later track; takes at random ticks."""
    rng = np.random.default_rng(12)
    streams = Streams(chain.pipeline(), chain)
    streams.join(0, 1)
    early_leave = 1  # leaves with frames still to come; its slot goes to clip 4
    mixed_first = False
    for tick in range(400):
        if tick == 3:
            streams.join(2)
        if tick == 9:
            streams.join(3)
        ready = {clip: int(rng.integers(0, 9)) for clip in streams.slot}
        if tick == 3:  # clip 2's first chunk in one call with clip 0's later frames
            ready[2] = ready[0] = 5
            mixed_first = streams.next[0] > 0
        streams.tick(ready)
        if rng.random() < 0.4:
            streams.take()
        if early_leave in streams.slot and streams.next[early_leave] >= 40:
            streams.take()
            left_at = streams.next[early_leave]
            streams.leave(early_leave)
            streams.join(4)
            assert streams.slot[4] == 1  # the released slot, reused
        done = [c for c in streams.slot if streams.next[c] == len(chain.rows[c])]
        if done:
            streams.take()
            for clip in done:
                streams.leave(clip)
        if not streams.slot:
            break
    assert mixed_first and not streams.slot
    assert streams.pipe.take() == {}  # nothing handed out twice
    for clip in range(len(CLIPS)):
        frames = left_at if clip == early_leave else len(chain.rows[clip])
        _assert_frames(streams.got[clip], alone[clip], frames)


def test_released_slot_drops_untaken_frames_and_restarts_fresh(
    chain: Chain, alone: list[dict[str, np.ndarray]]
) -> None:
    """A stream cancelled with frames still on the device: none of them reach the slot's next
    stream, which gets exactly a fresh track's frames (filters, solver and saccades restart)
    though its first chunk shares a call with a running track's."""
    streams = Streams(chain.pipeline(), chain)
    streams.join(3, 1)
    for _ in range(5):
        streams.tick({3: 6, 1: 6})
    streams.leave(3)  # 30 frames stepped, never taken
    streams.join(0)
    assert streams.slot[0] == 0 and streams.next[1] == 30
    for tick in range(20):
        streams.tick({0: 11, 1: 11})
        if tick % 2:
            streams.take()
    streams.take()
    assert not streams.got[3]["frames"]
    for clip in (0, 1):
        assert streams.next[clip] == len(chain.rows[clip])
        _assert_frames(streams.got[clip], alone[clip], len(chain.rows[clip]))
    for slot, out in enumerate(streams.pipe.finish()):  # take() left nothing behind
        assert len(out["frames"]) == 0, slot


def test_offline_rows_at_their_own_starts_are_cut_at_each_length(
    chain: Chain, alone: list[dict[str, np.ndarray]]
) -> None:
    """An offline pipeline (known lengths) stepped with one start per row and chunks padded
    past a track's end: ``finish`` gives each track's frames and meshes, the padding cut."""
    clips = (2, 0, 3)
    lengths = [len(chain.rows[c]) for c in clips]
    pipe = chain.pipeline(lengths, geometry=True)
    offsets = (0, 4, 9)  # track k starts its frames `offsets[k]` ticks late
    chunk = 8
    for tick in range(max(lengths) // chunk + max(offsets) + 1):
        starts = np.array([(tick - o) * chunk for o in offsets])
        live = np.flatnonzero((starts >= 0) & (starts < lengths))
        if not len(live):
            continue
        rows = []
        for k in live:  # rows past a track's end repeat its last frame (as DeviceInputs pads)
            clip_rows = chain.rows[clips[k]]
            at = np.minimum(np.arange(starts[k], starts[k] + chunk), len(clip_rows) - 1)
            rows.append(clip_rows[at])
        pipe.step(torch.from_numpy(np.stack(rows)), torch.from_numpy(live), starts[live])
    for k, out in enumerate(pipe.finish()):
        assert len(out["skin"]) == lengths[k]
        _assert_frames({name: [out[name]] for name in out}, alone[clips[k]], lengths[k])
        meshes = _offline(chain, clips[k], chunk, geometry=True)
        for name in ("skin_geometry", "tongue_geometry"):
            assert out[name].shape == meshes[name].shape
            # coordinates of ~20: the batched basis product may round the last bit differently
            np.testing.assert_allclose(out[name], meshes[name], atol=ATOL, rtol=MESH_RTOL,
                                       err_msg=name)  # fmt: skip


def test_saccade_clock_extended_in_pieces_equals_one_run() -> None:
    params = {"eye_saccade_seed": 4990}
    dt = frame_dt(30000, 1001)
    whole = SaccadeClock(params, 5000, dt).extend(2500)
    clock = SaccadeClock(params, 5000, dt)
    pieces = np.concatenate([clock.extend(n) for n in (0, 1, 700, 1024, 775)])
    np.testing.assert_array_equal(pieces, whole)


def test_bad_calls_name_the_problem(chain: Chain) -> None:
    pipe = chain.pipeline()
    slots = pipe.add_tracks(2)
    rows = torch.from_numpy(np.stack([chain.rows[0][:4], chain.rows[1][:4]]))
    with pytest.raises(ParameterError, match="start"):
        pipe.step(rows, slots, np.array([0, 0, 0]))
    with pytest.raises(ParameterError, match="start"):
        pipe.step(rows, slots, np.array([0.0, 4.0]))
    with pytest.raises(ParameterError, match=">= 0"):
        pipe.step(rows, slots, np.array([0, -4]))
    with pytest.raises(ParameterError, match="rows"):
        pipe.step(rows, slots[:1], 0)
    with pytest.raises(ParameterError, match="slot 5"):
        pipe.release(5)
    pipe.release(slots[0])
    with pytest.raises(ParameterError, match="not in use"):
        pipe.release(slots[0])
    with pytest.raises(ParameterError, match="offline"):
        chain.pipeline(geometry=True)
    offline = chain.pipeline([4], geometry=True)
    for call in (offline.take, lambda: offline.add_tracks(1), lambda: offline.release(0)):
        with pytest.raises(ParameterError, match="offline"):
            call()
