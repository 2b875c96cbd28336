"""The model a service shares between all its clients, and the one thread that runs it.

An :class:`.executor.Executor` is not thread-safe, and streams on one executor share their
network calls only when one owner feeds them all and runs the executor once per round. So every
client stream (gRPC, WebSocket) is a :class:`StreamHandle` whose pushes go to the hub's command
queue; the hub's worker thread takes every command waiting, feeds each stream, runs the
executor once (one batched network call for all streams with ready frames) and hands each
stream its frames through the stream's ``deliver`` callback (the transports turn that into
their own queues). The default model has no executor: its streams are pushed one by one.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import A2XError, ParameterError
from ..names import ARKIT_52
from ..options import EmotionKey, InferenceOptions

log = logging.getLogger("a2x_core")

#: What a stream's ``deliver`` receives: ("frames", [StreamFrame]), ("closed", [StreamFrame])
#: (the tail; the stream is done), or ("error", message) (the stream is cancelled).
Delivery = tuple[str, Any]
Deliver = Callable[[Delivery], None]

#: ARKit names as the NIM's header lists them: capitalised (``EyeBlinkLeft`` .. ``TongueOut``).
NIM_BLENDSHAPE_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_52)


class ServiceBusyError(A2XError):
    """Every stream slot (``--max-streams``) is taken; the client should retry later."""


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the service (the NIM's defaults where it has them)."""

    max_streams: int = 10  # NIM ``stream_number``
    max_message_s: float = 10.0  # NIM ``max_audio_buffer_size_second`` (one message)
    max_stream_s: float = 300.0  # NIM ``max_audio_clip_size_second``
    idle_timeout_s: float = 30.0  # NIM ``max_wait_time_idle_ms``
    max_request_bytes: int = 64 << 20  # one HTTP upload
    min_rate: int = 16_000  # NIM: 16 000 .. 144 000 Hz
    max_rate: int = 144_000


#: Samples per stream-bank push (the bank's ``max_push``): a client message longer than this
#: is pushed in several bank ticks.
BANK_PUSH = 1600
#: Bank pushes are whole blocks of this many samples (20 ms), so that streams whose clients
#: send the usual chunk sizes (20/40 ms, 1 s) share one tick per round even when a slow round
#: let different amounts pile up; a remainder waits for the next message (or the end).
BANK_BLOCK = 320
#: Recent per-round timings each hub (and mailbox) keeps for monitoring (``stage_times``).
STAGE_SAMPLES = 1 << 16


@dataclass(frozen=True)
class ServiceFrame:
    """A frame of a bank stream, with the fields the transports read (as a StreamFrame)."""

    index: int
    time_s: float
    weights: np.ndarray
    emotions: np.ndarray


@dataclass(eq=False)
class StreamHandle:
    """One client's stream in the hub; every method only queues a command (any thread)."""

    hub: ModelHub
    deliver: Deliver
    number: int
    stream: Any = None
    emotions: list[EmotionKey] = field(default_factory=list)
    done: bool = False
    slot: int | None = None  # its slot when the stream lives in the hub's stream bank
    pending: list[np.ndarray] = field(default_factory=list)  # bank: audio not pushed yet
    buffered: int = 0

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` pending samples (bank streams)."""
        data = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        head, rest = data[:count], data[count:]
        self.pending = [rest] if len(rest) else []
        self.buffered -= len(head)
        return head

    def push(self, samples: np.ndarray, rate: int, emotions: Sequence[EmotionKey] = ()) -> None:
        """Queue audio (and emotion keys that arrived with it) for the worker."""
        self.hub._submit(("push", self, samples, rate, tuple(emotions)))

    def close(self) -> None:
        """End of audio: the worker delivers the tail frames as ("closed", frames)."""
        self.hub._submit(("close", self))

    def cancel(self) -> None:
        """The client went away: drop the stream (no more deliveries)."""
        self.hub._submit(("cancel", self))


class ModelHub:
    """One loaded model, its stream executor, the worker thread, the stream slots."""

    def __init__(self, model: Any, fps: Fraction | int | str = 30, limits: Limits | None = None,
                 base_options: InferenceOptions | None = None, bank: bool = True,
                 emotion_model: Any = None, shared_slots: Any = None,
                 round_interval_s: float = 0.0) -> None:  # fmt: skip
        self.model = model
        #: the shortest time between the starts of two rounds: commands arriving meanwhile
        #: wait and join the next round (more streams per bank tick, fewer ticks: a tick's
        #: Python and launch cost is mostly per tick, and the worker holds the GIL the I/O
        #: thread needs); at most this much more latency. 0: a round as soon as a command waits
        self.round_interval_s = max(0.0, float(round_interval_s))
        self._round_began = 0.0
        #: an Audio2Emotion model (``--emotion-model``): each stream's emotions are detected
        #: from its audio (:class:`..emotion_stream.EmotionDrivenStream`), as the NIM runs A2E
        self.emotion_model = emotion_model
        self.limits = limits or Limits()
        self.base_options = (base_options or InferenceOptions()).with_changes(fps=fps)
        self.fps: Fraction = self.base_options.fps
        self.executor = model.stream_executor() if hasattr(model, "stream_executor") else None
        #: streams with the service's own options at 16 kHz (no header parameters, no timed
        #: emotions: the NIM's common case) live in one stream bank when the model's stages run
        #: on a torch device: a round is then array operations, not one object per stream
        self.bank = None
        if bank and emotion_model is None and hasattr(model, "stream_bank"):
            try:
                self.bank = model.stream_bank(self.base_options, max_push=BANK_PUSH)
            except A2XError:  # NumPy stages (CPU engine): per-object streams on the executor
                self.bank = None
        #: the slots of all processes of ``--processes N`` (``group.SharedSlots``): then
        #: ``max_streams`` counts them all together
        self.shared_slots = shared_slots
        #: what the health checks answer (a group's parent turns it on when all are ready)
        self.serving = True
        self._by_slot: dict[int, StreamHandle] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._commands: list[tuple[Any, ...]] = []
        self._slots = 0
        self._opened = 0
        self._stopping = False
        self._handles: set[StreamHandle] = set()
        self.rounds = 0  # worker rounds run (one executor call set each): for monitoring
        #: wall seconds the worker spent in the stream bank (pushes and closes): for
        #: monitoring (with ``rounds``: how long one bank iteration takes inside the server)
        self.bank_seconds = 0.0
        #: per round, seconds: "queue" (its oldest command's wait for the worker: the previous
        #: round's length, or the GIL) and "round" (feeding, the model, handing out the frames);
        #: a bounded history for monitoring and the benchmark's stage breakdown
        self.stage_times: dict[str, deque[float]] = {
            "queue": deque(maxlen=STAGE_SAMPLES), "round": deque(maxlen=STAGE_SAMPLES)}
        self._first_command_at = 0.0  # when the oldest waiting command was submitted
        self._thread = threading.Thread(target=self._run, name="a2x-serve-model", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------- slots

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def active_streams(self) -> int:
        return self._slots

    def reserve(self) -> int:
        """Take a stream slot (the caller must :meth:`release` it).

        Raises:
            ServiceBusyError: ``max_streams`` are already taken.
        """
        with self._lock:
            if self._stopping:
                raise ServiceBusyError("the service is stopping", hint="retry on a restarted server")
            if self._slots >= self.limits.max_streams or (
                    self.shared_slots is not None
                    and not self.shared_slots.take(self.limits.max_streams)):  # fmt: skip
                raise ServiceBusyError(
                    f"the service already runs its maximum of {self.limits.max_streams} streams",
                    hint="retry when a stream has ended, or start a2x serve with a larger "
                    "--max-streams",
                )
            self._slots += 1
            self._opened += 1
            return self._opened

    def release(self) -> None:
        with self._lock:
            if self._slots > 0 and self.shared_slots is not None:
                self.shared_slots.give()
            self._slots = max(0, self._slots - 1)

    # ------------------------------------------------------------------------- streams

    def open(self, options: InferenceOptions, deliver: Deliver, number: int,
             rate: int = 16000) -> tuple[StreamHandle, Future[None]]:  # fmt: skip
        """Open a stream with ``options`` (audio at ``rate``) on the worker thread; the future
        ends when it is open (or holds the model's refusal: an A2XError such as a
        ParameterError naming the parameter)."""
        handle = StreamHandle(self, deliver, number, emotions=list(options.emotions))
        opened: Future[None] = Future()
        self._submit(("open", handle, options, opened, rate))
        return handle, opened

    def options_for(self, parameters: dict[str, Any], emotions: Sequence[EmotionKey],
                    emotion_parameters: dict[str, Any] | None = None) -> InferenceOptions:  # fmt: skip
        """The service's options with one stream's parameters and emotion keys (the default
        model takes no emotion input, and with an emotion model the emotions are detected:
        then the keys are dropped, and reported by the transport) and, with an emotion model,
        its ``post_processing_config`` overrides."""
        if not self.model.emotion_names or self.emotion_model is not None:
            emotions = ()
        changes: dict[str, Any] = {"parameters": parameters, "emotions": tuple(emotions)}
        if self.emotion_model is not None and emotion_parameters:
            changes["emotion_parameters"] = dict(emotion_parameters)
        return self.base_options.with_changes(**changes)

    @property
    def _direct(self) -> bool:
        """Streams whose push returns their frames (no shared executor round): the default
        model's, and emotion-driven ones (their face stream runs its executor itself)."""
        return self.executor is None or self.emotion_model is not None

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel every stream and end the worker."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)

    def warm_up(self, streams: int, timeout: float = 600.0) -> float:
        """Run the stream bank (if any) through the shapes up to ``streams`` concurrent streams
        make, on zero audio and before any client comes: a server's first rounds at a new
        stream count otherwise pay CUDA-graph captures, cuDNN's algorithm timing and the state
        tensors' growth (seconds with several processes on one GPU: the H200 run's p99 of
        2-3 s in its first trials). Returns the seconds it took (0: nothing to warm).

        Raises:
            ServiceBusyError: the hub is stopping.
        """
        if self.bank is None or streams < 1:
            return 0.0
        done: Future[float] = Future()
        self._submit(("warm", None, int(streams), done))
        return done.result(timeout)

    def _warm(self, streams: int, done: Future[float]) -> None:
        """``warm_up`` on the worker thread (the bank is not thread-safe). For 8, 16, 32 ..
        ``streams`` streams, half of them a block ahead (so that one tick holds streams with
        one and with two ready frames, and the tails differ as well): 40 ms pushes past the
        look-ahead, one push of BANK_PUSH (a slow round's), then all close together (the
        tails' 7-8 frames per stream are shapes of their own). So the network's row buckets
        and the chain's group shapes up to that count are all made (benchmarks/
        service_shapes.py: none left for a 48-stream trial after a warm-up for 96)."""
        began = time.perf_counter()
        bank = self.bank
        assert bank is not None
        try:
            counts = sorted({min(streams, 8 << k) for k in range(max(streams, 8).bit_length())})
            lookahead = int(getattr(bank, "lookahead_samples", 0))
            ticks = -(-lookahead // (2 * BANK_BLOCK)) + 4
            for count in counts:
                slots = bank.open(count)
                try:
                    if count > 1:
                        ahead = slots[: count // 2]
                        bank.push(ahead, np.zeros((len(ahead), BANK_BLOCK), np.float32))
                    step = np.zeros((count, 2 * BANK_BLOCK), np.float32)
                    for _ in range(ticks):
                        bank.push(slots, step)
                    bank.push(slots, np.zeros((count, BANK_PUSH), np.float32))
                finally:
                    bank.close(slots)
        except BaseException as error:
            done.set_exception(error)
            return
        done.set_result(time.perf_counter() - began)

    def _submit(self, command: tuple[Any, ...]) -> None:
        with self._lock:
            if not self._commands:
                self._first_command_at = time.perf_counter()
            self._commands.append(command)
            self._wake.notify()

    # ------------------------------------------------------------------------- worker

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._commands and not self._stopping:
                    self._wake.wait()
            if self.round_interval_s > 0:  # let more streams' commands join this round
                left = self._round_began + self.round_interval_s - time.perf_counter()
                if left > 0:
                    time.sleep(left)
            with self._lock:
                if self._stopping:
                    commands, self._commands = self._commands, []
                    for command in commands:
                        if command[0] in ("open", "warm"):  # their futures at the same place
                            command[3].set_exception(ServiceBusyError("the service is stopping"))
                    break
                commands, self._commands = self._commands, []
                began = self._round_began = time.perf_counter()
                self.stage_times["queue"].append(began - self._first_command_at)
            try:
                self._round(commands)
            except Exception:  # never let the worker die: every other client depends on it
                log.exception("a service round failed")
            self.stage_times["round"].append(time.perf_counter() - began)
        for handle in list(self._handles):
            self._drop(handle, "the service is stopping")

    def _round(self, commands: list[tuple[Any, ...]]) -> None:
        """Every waiting command, then one executor run for all fed streams, then the frames."""
        fed: list[StreamHandle] = []
        closing: list[StreamHandle] = []
        bank_fed: list[StreamHandle] = []
        bank_closing: list[StreamHandle] = []
        for command in commands:
            kind, handle = command[0], command[1]
            if kind == "warm":
                self._warm(*command[2:])
                continue
            try:
                if kind == "open":
                    self._open(handle, *command[2:])
                elif handle.done:
                    continue
                elif handle.slot is not None:
                    self._bank_command(handle, command, bank_fed, bank_closing)
                elif handle.stream is None:
                    continue
                elif kind == "push":
                    frames = self._feed(handle, *command[2:])
                    if self._direct:
                        handle.deliver(("frames", frames))
                    elif handle not in fed:
                        fed.append(handle)
                elif kind == "close":
                    closing.append(handle)
                elif kind == "cancel":
                    self._drop(handle, None)
            except A2XError as error:
                self._drop(handle, str(error))
            except Exception as error:  # a bug must not take the other streams down
                log.exception("stream %s failed", handle.number)
                self._drop(handle, f"internal error: {type(error).__name__}: {error}")
        if fed:
            self.rounds += 1
            try:
                self.executor.run_ready()
            except Exception as error:  # the shared call failed: every fed stream hears it
                log.exception("the model's network call failed")
                for handle in fed:
                    self._drop(handle, f"the model failed: {error}")
            for handle in fed:
                if not handle.done:
                    handle.deliver(("frames", handle.stream.pull()))
        if bank_fed or bank_closing:
            began = time.perf_counter()
            self._bank_round(bank_fed, bank_closing)
            self.bank_seconds += time.perf_counter() - began
        for handle in closing:
            if handle.done:
                continue
            try:
                tail = handle.stream.close()
            except A2XError as error:
                self._drop(handle, str(error))
                continue
            handle.done = True
            self._handles.discard(handle)
            handle.deliver(("closed", tail))

    def _open(self, handle: StreamHandle, options: InferenceOptions, opened: Future[None],
              rate: int) -> None:  # fmt: skip
        try:
            if self.bank is not None and rate == 16000 and options == self.base_options:
                handle.slot = int(self.bank.open(1)[0])
                self._by_slot[handle.slot] = handle
            elif self.emotion_model is not None:
                from ..executor.emotion_stream import EmotionDrivenStream

                handle.stream = EmotionDrivenStream(self.model, self.emotion_model, options,
                                                    self.executor)  # fmt: skip
            elif self.executor is not None:
                handle.stream = self.model.open_stream(options, executor=self.executor)
            else:
                handle.stream = self.model.open_stream(options)
        except BaseException as error:
            handle.done = True
            opened.set_exception(error)
            return
        self._handles.add(handle)
        opened.set_result(None)

    def _feed(self, handle: StreamHandle, samples: np.ndarray, rate: int,
              emotions: tuple[EmotionKey, ...]) -> list[Any]:  # fmt: skip
        """Add a push's audio: the default model's frames at once, an executor's stream waits
        for the round's one executor run."""
        if emotions and self.model.emotion_names and self.emotion_model is None:
            # keys arriving later apply to the frames not computed yet, as in the NIM
            handle.emotions.extend(emotions)
            replace_emotion_curve(self.model, handle.stream, handle.emotions)
        if self._direct:
            return list(handle.stream.push(samples, rate))
        handle.stream.feed(samples, rate)
        return []

    # ------------------------------------------------------------------------- stream bank

    def _bank_command(self, handle: StreamHandle, command: tuple[Any, ...],
                      fed: list[StreamHandle], closing: list[StreamHandle]) -> None:  # fmt: skip
        kind = command[0]
        if kind == "push":
            samples, rate, emotions = command[2:]
            if emotions:
                raise ParameterError("timed emotions must come with the first audio here",
                                     hint="send every emotion key with the first chunk")  # fmt: skip
            data = np.asarray(samples)
            if data.dtype.kind == "i":  # integer PCM as the streams read it (x / 2^(bits-1))
                data = data.astype(np.float32) / (float(np.iinfo(data.dtype).max) + 1.0)
            handle.pending.append(np.asarray(data, np.float32))
            handle.buffered += len(data)
            if handle not in fed:
                fed.append(handle)
        elif kind == "close":
            closing.append(handle)
        elif kind == "cancel":
            self._drop(handle, None)

    def _bank_round(self, fed: list[StreamHandle], closing: list[StreamHandle]) -> None:
        """Push every bank stream's pending audio (streams with the same count together, at
        most BANK_PUSH per push), close the ending ones in one call, deliver by slot."""
        bank = self.bank
        assert bank is not None
        out: dict[int, list[ServiceFrame]] = {}
        ending = [h for h in closing if not h.done]
        try:
            while ready := [h for h in {*fed, *ending} if not h.done and (
                    h.buffered >= BANK_BLOCK or (h in ending and h.buffered > 0))]:  # fmt: skip
                groups: dict[int, list[StreamHandle]] = {}
                for handle in ready:
                    count = min(handle.buffered, BANK_PUSH)
                    if count >= BANK_BLOCK:
                        count -= count % BANK_BLOCK
                    groups.setdefault(count, []).append(handle)
                for count, handles in groups.items():
                    block = np.stack([h.take(count) for h in handles])
                    self._bank_frames(bank.push([h.slot for h in handles], block), out)
                self.rounds += 1
            if ending:
                self._bank_frames(bank.close([h.slot for h in ending]), out)
        except Exception as error:  # the shared call failed: every stream in it hears it
            log.exception("the stream bank failed")
            for handle in {*fed, *closing}:
                self._drop(handle, f"the model failed: {error}")
            return
        for handle in ending:
            handle.done = True
            self._handles.discard(handle)
            self._by_slot.pop(handle.slot, None)
            handle.deliver(("closed", out.pop(handle.slot, [])))
        for slot, frames in out.items():
            handle = self._by_slot.get(slot)
            if handle is not None and not handle.done:
                handle.deliver(("frames", frames))

    def _bank_frames(self, frames: Any, out: dict[int, list[ServiceFrame]]) -> None:
        if not len(frames.slots):
            return
        emotions = self._default_emotions()
        order = np.argsort(frames.slots, kind="stable")
        slots, index, times = frames.slots[order], frames.index[order], frames.time_s[order]
        weights = frames.weights[order]
        for k in range(len(order)):
            out.setdefault(int(slots[k]), []).append(
                ServiceFrame(int(index[k]), float(times[k]), weights[k], emotions))

    def _default_emotions(self) -> np.ndarray:
        info = getattr(getattr(self.model, "package", None), "network_info", None)
        default = getattr(info, "default_emotion", None)
        return np.zeros(len(self.model.emotion_names), np.float32) if default is None else \
            np.asarray(default, np.float32)  # fmt: skip

    def _drop(self, handle: StreamHandle, message: str | None) -> None:
        """Cancel a stream; tell its client why (None: the client left, tell nobody)."""
        if handle.done:
            return
        handle.done = True
        self._handles.discard(handle)
        if handle.slot is not None:
            self._by_slot.pop(handle.slot, None)
            try:
                self.bank.cancel([handle.slot])
            except Exception:  # already closed: nothing more to free
                log.debug("cancel of bank slot %s failed", handle.slot, exc_info=True)
        if handle.stream is not None:
            try:
                handle.stream.cancel()
            except Exception:  # already closed or broken: nothing more to free
                log.debug("cancel of stream %s failed", handle.number, exc_info=True)
        if message is not None:
            handle.deliver(("error", message))


class LoopMailbox:
    """Hands the worker's deliveries to an asyncio loop with one wake-up per batch (one
    ``call_soon_threadsafe`` per round, not one per stream: a round may serve hundreds)."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self._items: list[tuple[Any, Delivery]] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self._posted_at = 0.0
        #: seconds from a batch's first post to its hand-over on the loop (how busy the loop
        #: is: every frame waits this long after the model made it); bounded, for monitoring
        self.lags: deque[float] = deque(maxlen=STAGE_SAMPLES)

    def post(self, queue: Any, item: Delivery) -> None:
        """``queue.put_nowait(item)`` on the loop (from any thread)."""
        with self._lock:
            self._items.append((queue, item))
            if self._scheduled:
                return
            self._scheduled = True
            self._posted_at = time.perf_counter()
        self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
            self.lags.append(time.perf_counter() - self._posted_at)
        for queue, item in items:
            queue.put_nowait(item)


_MAILBOXES: weakref.WeakKeyDictionary[Any, LoopMailbox] = weakref.WeakKeyDictionary()


def mailbox_for(loop: Any) -> LoopMailbox:
    """The loop's mailbox (made on first use)."""
    box = _MAILBOXES.get(loop)
    if box is None:
        box = _MAILBOXES[loop] = LoopMailbox(loop)
    return box


def replace_emotion_curve(model: Any, stream: Any, keys: Sequence[EmotionKey]) -> None:
    """Give an Audio2Face stream the explicit-emotion curve of all ``keys`` so far; the frames
    already computed keep the emotions they had.

    Raises:
        ParameterError: bad keys (unknown emotion, out of range), named by the model's checks.
    """
    from ..models.emotion_input import explicit_emotion_curve

    state = getattr(getattr(stream, "track", None), "state", None)
    if state is None or not hasattr(state, "curve"):
        raise ParameterError("this model's streams take emotion keys only with the first audio")
    ordered = sorted(keys, key=lambda key: key[0])
    info = model.package.network_info
    state.curve = explicit_emotion_curve(ordered, model.emotion_names, info.default_emotion)
