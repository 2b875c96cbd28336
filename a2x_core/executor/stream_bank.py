"""Many equal streams of one regression model, stepped together on a torch device: the server
side of "one batched call per tick across all live streams" (``docs/streaming.md``).

A :class:`a2x_core.executor.stream.Stream` is one Python object per stream: every push walks its own audio,
feeds and frames, which costs tens of microseconds per stream per tick. A server holding a
thousand microphones needs the per-tick work to be array operations over all of them; a
:class:`RegressionStreamBank` is that: every stream has the same options (rate, parameters,
emotion keys), audio arrives as one ``[streams, samples]`` array per tick, and

- the audio of every stream lives in one device ring ``[slots, L]`` (``L`` = the network's
  window plus the longest push, rounded up), written with one scatter per tick;
- the ready frames of every stream come from integer formulas over the slot arrays (the SDK's
  target rule, the window's look-ahead), the windows from one gather on the device;
- one network call holds every ready frame (rows padded to a few bucket sizes so that the
  engine's CUDA graphs repeat), then the stages after it run in the regression model's growable
  :class:`a2x_core.postprocess.gpu.DevicePipeline`, one step per group of streams with the same number
  of ready frames (groups padded to a power of two with scratch slots, for the same reason);
- frames come back as arrays (:class:`BankFrames`), not per-frame objects.

Frames equal the offline device run's (:meth:`.RegressionModel.animate` with the same
``postprocess`` device) and a :class:`a2x_core.executor.stream.Stream`'s within float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ParameterError
from ..models.emotion_input import explicit_emotion_curve
from ..options import InferenceOptions
from ..timing import frame_targets_of, num_frames_for

if TYPE_CHECKING:
    from ..models.regression import RegressionModel

#: Smallest row and group buckets (padding to repeated shapes: CUDA graphs replay).
MIN_ROW_BUCKET = 16
MIN_GROUP_BUCKET = 8


@dataclass(frozen=True)
class BankFrames:
    """Frames of many streams as arrays, one row per frame (grouped by stream, each stream's
    frames in order).

    Attributes:
        slots: int64 [F] the stream (slot) of each frame.
        index: int64 [F] frame number from that stream's start.
        time_s: float64 [F] ``index / fps``.
        weights: float32 [F, 52] ARKit weights (:data:`.names.ARKIT_52` order).
        tongue_weights: float32 [F, 16]; jaw_transforms: float32 [F, 4, 4];
        eye_rotations: float32 [F, 6].
    """

    slots: np.ndarray
    index: np.ndarray
    time_s: np.ndarray
    weights: np.ndarray
    tongue_weights: np.ndarray
    jaw_transforms: np.ndarray
    eye_rotations: np.ndarray

    def __len__(self) -> int:
        return len(self.slots)

    def of(self, slot: int) -> BankFrames:
        """The frames of one stream."""
        pick = self.slots == slot
        return BankFrames(*(getattr(self, f)[pick] for f in self.__dataclass_fields__))


def _bucket(count: int, least: int) -> int:
    return max(least, 1 << max(0, int(count) - 1).bit_length())


def _row_bucket(rows: int) -> int:
    """Network rows padded to a power of two up to 256, then to a multiple of 256 (the
    compiled network's pass): few distinct shapes, little padding at a thousand streams."""
    return _bucket(rows, MIN_ROW_BUCKET) if rows <= 256 else -(-rows // 256) * 256


class RegressionStreamBank:
    """See the module docstring. Made by :meth:`.RegressionModel.stream_bank`.

    Not thread-safe: one thread pushes (a server's tick loop).
    """

    def __init__(
        self, model: RegressionModel, options: InferenceOptions, *, max_push: int = 16000
    ) -> None:
        from ..backends.torch_engine import import_torch
        from ..postprocess.chain import DeviceChain
        from ..postprocess.gpu import same_device, upload

        device = model.postprocess_device()
        if device is None:
            raise ParameterError(
                "a stream bank runs the stages after the network on a torch device, and this "
                "model's postprocess is numpy",
                hint="load the model with postprocess='cuda' (or 'cpu' for torch on the CPU), "
                "or use model.open_stream on a stream_executor()",
            )
        if options.geometry:
            raise ParameterError("geometry=True is not available on a stream bank",
                                 hint="stream weights only")  # fmt: skip
        if int(max_push) < 1:
            raise ParameterError(f"max_push must be >= 1, got {max_push}")
        torch = self.torch = import_torch()
        self._put = upload
        self._staging: Any = None  # page-locked audio of a push (CUDA), and its copy's event
        self._staged: Any = None
        self.model = model
        self.options = options
        self.device = torch.device(device)
        run = model._prepare(options)
        self.fps = run.fps
        info = model.package.network_info
        self.buffer_len, self.buffer_ofs = int(info.buffer_len), int(info.buffer_ofs)
        #: samples after a frame's target its window needs (the model's inherent latency)
        self.lookahead_samples = self.buffer_len - self.buffer_ofs
        self.max_push = int(max_push)
        # the ring holds every sample a window of a not-yet-run frame can read after any push
        self.ring_len = _bucket(self.buffer_len + self.max_push + 2, 1024)
        self._chain = DeviceChain(model._device_pipeline(run, device), streaming=True)
        caps = model.engine.capabilities
        self._on_device = caps.device_tensors and same_device(torch, caps.device, self.device)
        curve = explicit_emotion_curve(options.emotions, model.emotion_names,
                                       info.default_emotion, start_s=0.0)  # fmt: skip
        self._curve = curve
        self._implicit = np.asarray(run.settings.implicit_emotion, np.float32)
        self._emotion_width = len(self._implicit) + len(model.emotion_names)
        #: the emotion row when no key changes it (no keys: the model's default emotion)
        self._constant_emotion = None
        if not options.emotions:
            row = np.concatenate([self._implicit, curve.sample(np.zeros(1, np.int64))[0]])
            self._constant_emotion = torch.as_tensor(row.astype(np.float32), device=self.device)
        self._strength = float(run.settings.animator["input_strength"])
        self._capacity = 0
        self._ring: Any = torch.zeros((0, self.ring_len), device=self.device)
        self._received = np.zeros(0, np.int64)
        self._next = np.zeros(0, np.int64)
        self._open = np.zeros(0, bool)
        self._ended = np.zeros(0, bool)
        self._scratch: list[int] = []  # chain slots that pad a group (their frames dropped)
        self._arange = torch.arange(self.buffer_len, device=self.device)

    # ------------------------------------------------------------------------- slots

    @property
    def open_streams(self) -> int:
        return int(self._open.sum())

    def open(self, count: int = 1) -> np.ndarray:
        """``count`` new streams (fresh state, frame 0 at their first sample); their slot ids."""
        slots = np.asarray(self._chain.pipeline.add_tracks(int(count)), np.int64)
        if len(slots) and slots.max() >= self._capacity:
            self._grow(int(slots.max()) + 1)
        self._received[slots] = 0
        self._next[slots] = 0
        self._open[slots] = True
        self._ended[slots] = False
        if len(slots):
            self._ring[self.torch.as_tensor(slots, device=self.device)] = 0.0
        return slots

    def _grow(self, needed: int) -> None:
        size = _bucket(needed, 64)
        extra = size - self._capacity
        torch = self.torch
        self._ring = torch.cat([self._ring, torch.zeros((extra, self.ring_len),
                                                        device=self.device)])  # fmt: skip
        self._received = np.concatenate([self._received, np.zeros(extra, np.int64)])
        self._next = np.concatenate([self._next, np.zeros(extra, np.int64)])
        self._open = np.concatenate([self._open, np.zeros(extra, bool)])
        self._ended = np.concatenate([self._ended, np.zeros(extra, bool)])
        self._capacity = size

    def _check_slots(self, slots: Any, action: str) -> np.ndarray:
        slots = np.asarray(slots, np.int64).reshape(-1)
        bad = slots[(slots < 0) | (slots >= self._capacity)]
        if len(bad) == 0:
            bad = slots[~self._open[slots]]
        if len(bad):
            raise ParameterError(f"cannot {action}: stream {int(bad[0])} is not open",
                                 hint="use the slot ids open() returned, until close()")  # fmt: skip
        if len(np.unique(slots)) != len(slots):
            raise ParameterError(f"cannot {action}: a stream is named twice in one call")
        return slots

    # ------------------------------------------------------------------------- audio in

    def push(self, slots: Any, samples: Any) -> BankFrames:
        """Append ``samples[k]`` (16 kHz float32, the same count for every stream of the call,
        at most ``max_push``) to stream ``slots[k]``, run every frame the audio completed, and
        return them.

        Raises:
            ParameterError: unknown/closed slots, a slot twice, a bad shape or too many samples.
            AudioInvalidSamplesError: NaN/inf or values beyond +-1000.
        """
        from ..audio.decode import MAX_SAMPLE_MAGNITUDE
        from ..errors import AudioInvalidSamplesError

        slots = self._check_slots(slots, "push")
        data = np.asarray(samples, np.float32)
        if data.ndim != 2 or len(data) != len(slots):
            raise ParameterError(
                f"samples have shape {data.shape}, expected ({len(slots)}, n): one row per slot"
            )
        n = data.shape[1]
        if n > self.max_push:
            raise ParameterError(f"{n} samples in one push exceed max_push={self.max_push}",
                                 hint="push smaller blocks or make the bank with a larger "
                                 "max_push")  # fmt: skip
        if not np.all(np.abs(data) <= MAX_SAMPLE_MAGNITUDE):
            raise AudioInvalidSamplesError(
                "pushed samples are NaN, infinite or beyond +-1000", path="<stream bank>",
                hint="push float samples in [-1, 1]",
            )  # fmt: skip
        if n and len(slots):
            torch = self.torch
            # ring positions computed on the device from one small upload per push
            where = self._upload(np.stack([slots, self._received[slots] % self.ring_len]))
            pos = (where[1][:, None] + torch.arange(n, device=self.device)[None, :]) % self.ring_len
            self._ring[where[0][:, None], pos] = self._stage(data)
            self._received[slots] += n
        return self._tick()

    def close(self, slots: Any) -> BankFrames:
        """End of audio for ``slots``: their remaining frames (windows zero past the end, as
        offline); then the slots are free for :meth:`open`."""
        slots = self._check_slots(slots, "close")
        self._ended[slots] = True
        frames = self._tick()
        for slot in slots.tolist():
            self._chain.release(slot)
        self._open[slots] = False
        return frames

    def cancel(self, slots: Any) -> None:
        """Drop ``slots`` now (no more frames)."""
        slots = self._check_slots(slots, "cancel")
        for slot in slots.tolist():
            self._chain.release(slot)
        self._open[slots] = False

    # ------------------------------------------------------------------------- one tick

    def _ready(self) -> np.ndarray:
        received = self._received
        existing = num_frames_for(received, self.fps)
        complete = num_frames_for(received - self.lookahead_samples + 1, self.fps)
        ready = np.where(self._ended, existing, np.minimum(existing, complete))
        return np.where(self._open, ready, 0)

    def _tick(self) -> BankFrames:
        counts = np.maximum(self._ready() - self._next, 0)
        live = np.flatnonzero(counts)
        if len(live) == 0:
            return self._empty()
        counts_live = counts[live]
        slot_rows = np.repeat(live, counts_live)
        first = self._next[live]
        offsets = np.arange(len(slot_rows)) - np.repeat(np.cumsum(counts_live) - counts_live,
                                                        counts_live)  # fmt: skip
        index = np.repeat(first, counts_live) + offsets
        targets = frame_targets_of(index, self.fps)
        rows_total = len(slot_rows)
        audio_in, emotion_in = self._inputs(slot_rows, targets)
        result = self._network(audio_in, emotion_in)[:rows_total].reshape(rows_total, -1)
        self._step_chain(result, live, counts_live, first)
        self._next[live] += counts_live
        return self._collect()

    def _inputs(self, slot_rows: np.ndarray, targets: np.ndarray) -> tuple[Any, Any]:
        """The network's ``input`` and ``emotion`` rows for frames at ``targets`` of the streams
        ``slot_rows``, padded to a bucket: windows gathered on the device from the ring (zero
        before the stream's start and past its end), emotion rows from the bank's keys."""
        torch = self.torch
        rows = len(slot_rows)
        padded = _row_bucket(rows)
        plan = self._upload(np.stack([slot_rows, targets - self.buffer_ofs,
                                      self._received[slot_rows]]))  # fmt: skip
        pos = plan[1][:, None] + self._arange[None, :]
        audio_in = torch.zeros((padded, 1, self.buffer_len), device=self.device)
        window = self._ring[plan[0][:, None], pos & (self.ring_len - 1)]  # a power of two
        window.masked_fill_((pos < 0) | (pos >= plan[2][:, None]), 0.0)
        if self._strength != 1.0:
            window.mul_(np.float32(self._strength))
        audio_in[:rows, 0] = window
        emotion_in = torch.zeros((padded, 1, self._emotion_width), device=self.device)
        if self._constant_emotion is not None:
            emotion_in[:rows, 0] = self._constant_emotion
        else:
            explicit = self._curve.sample(targets)
            emotion = np.concatenate([np.broadcast_to(self._implicit, (rows, len(self._implicit))),
                                      explicit], axis=1).astype(np.float32)  # fmt: skip
            emotion_in[:rows, 0] = self._upload(emotion)
        return audio_in, emotion_in

    def _stage(self, data: np.ndarray) -> Any:
        """The pushed audio on the device: on CUDA copied once into a page-locked buffer kept
        by the bank (one plain memcpy; ``pin_memory()`` of a fresh megabyte copies with every
        CPU thread, which then spin), then sent without waiting. The buffer is reused once its
        last copy has finished."""
        torch = self.torch
        if self.device.type != "cuda":
            return torch.from_numpy(data).to(self.device)
        size = data.size
        if self._staging is None or self._staging.numel() < size:
            self._staging = torch.empty(max(size, 1), dtype=torch.float32, pin_memory=True)
        if self._staged is not None:
            self._staged.synchronize()
        buffer = self._staging[:size].view(data.shape)
        np.copyto(buffer.numpy(), data)
        out = buffer.to(self.device, non_blocking=True)
        self._staged = torch.cuda.Event()
        self._staged.record(torch.cuda.current_stream(self.device))
        return out

    def _upload(self, array: np.ndarray) -> Any:
        """A host array on the bank's device without waiting for it: a plain copy from pageable
        memory waits until the device has run everything queued before it, which in the middle
        of a tick (after the network's launch) is the network itself, and the chain's launches
        then no longer overlap it."""
        return self._put(self.torch, array, self.device)

    def _network(self, audio: Any, emotion: Any) -> Any:
        """One network call for every row of the tick (a method: the benchmark times it)."""
        return self.model._infer_on(self.device, audio, emotion, self._on_device)

    def _step_chain(self, result: Any, live: np.ndarray, counts: np.ndarray,
                    first: np.ndarray) -> None:  # fmt: skip
        """One chain step per group of streams with the same number of ready frames, padded
        with scratch slots to a power of two (their rows repeat the group's first)."""
        at = np.cumsum(counts) - counts
        for count in np.unique(counts).tolist():
            members = np.flatnonzero(counts == count)
            groups = _bucket(len(members), MIN_GROUP_BUCKET)
            pad = groups - len(members)
            while len(self._scratch) < pad:
                self._scratch.extend(self._chain.pipeline.add_tracks(pad - len(self._scratch)))
            index = at[members][:, None] + np.arange(count)[None, :]
            index = np.concatenate([index, np.repeat(index[:1], pad, axis=0)])
            rows = result[self._upload(index)]
            slots = np.concatenate([live[members], np.asarray(self._scratch[:pad], np.int64)])
            starts = np.concatenate([first[members], np.ones(pad, np.int64)])
            self._chain.step(rows, slots.tolist(), starts)

    def _collect(self) -> BankFrames:
        """The tick's frames on the host: rows of scratch slots dropped and the pose columns
        picked in one copy per output (a thousand streams' frames are a few hundred KB: each
        extra pass over them costs tens of microseconds of the tick)."""
        model = self.model
        rows = self._chain.pipeline.take_rows()
        slots = rows["slots"]
        keep: Any = slice(None)
        if self._scratch:
            keep = np.flatnonzero(~np.isin(slots, np.asarray(self._scratch, np.int64)))
            slots = slots[keep]
        if not len(slots):
            return self._empty()
        index = rows["frames"][keep]
        fps = self.fps
        if isinstance(keep, slice):
            keep = np.arange(len(slots))
        return BankFrames(
            slots=slots,
            index=index,
            time_s=index * (fps.denominator / fps.numerator),
            weights=rows["skin"][np.ix_(keep, model._skin_columns)].astype(np.float32,
                                                                         copy=False),  # fmt: skip
            tongue_weights=rows["tongue"][np.ix_(keep, model._tongue_columns)].astype(
                np.float32, copy=False),  # fmt: skip
            jaw_transforms=rows["jaw"][keep].astype(np.float32, copy=False),
            eye_rotations=rows["eyes"][keep].astype(np.float32, copy=False),
        )

    def _empty(self) -> BankFrames:
        return BankFrames(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                          np.zeros((0, 52), np.float32), np.zeros((0, 16), np.float32),
                          np.zeros((0, 4, 4), np.float32), np.zeros((0, 6), np.float32))  # fmt: skip
