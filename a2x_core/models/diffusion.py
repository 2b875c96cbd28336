"""Audio2Face-3D v3.0 diffusion models (Claire, James and Mark in one network), as the SDK's
diffusion executor runs them (spec §2, §3, §4, §6, §8.11).

Each inference sees a 1 s window (16000 samples, zero padded: window ``w`` covers
``[8000 w - 16000, 8000 w)``) and generates 60 frames at 60 fps, of which only the 30 centre
frames are used; windows advance by those 30 frames (0.5 s). The first 45 centre frames (all of
window 0 and 15 of window 1) have negative targets and are dropped, exactly as the SDK does, and
frames at or after the end of a closed clip end the track. Per track the network's GRU state
(``[steps, layers, latent]``) is carried from window to window and starts at zero; the diffusion
noise is per track, either one constant draw (the SDK's default) or a new draw per inference,
from a seeded generator so that runs repeat: the SDK's cuRAND Philox where CuPy and a CUDA
device are (bit-identical to the SDK), NumPy's Philox elsewhere (:mod:`a2x_core.models.diffusion_noise`).
After the network, each frame goes through the same post-processing and blendshape solves as a
regression model, with the identity's own config.

The network runs at its own 60 fps. Other output rates are sampled from its frames by linear
interpolation at each output frame's target sample, before post-processing, which then runs at
the output rate (``dt = 1/fps``); at 60 fps nothing is interpolated.

The loop is the executor's (:mod:`a2x_core.executor.loop`): :class:`DiffusionStep` says which windows a
track's audio allows and runs one window of every ready track per call; offline is every clip
pushed whole and closed, a stream (:meth:`DiffusionModel.open_stream`) runs each window as soon
as its audio has arrived, so its frames equal the offline run's.

With the torch engine on CUDA the stages after the network run there too, batched over tracks
(the regression model's :class:`a2x_core.postprocess.gpu.DevicePipeline` with the deltas as its
coefficients): the kept frames never leave the device, the interpolation is a gather and one
multiply-add per output frame, and the solves use the SDK's GPU solver (ADMM, close to but not
equal to the CPU's BVLS). ``postprocess`` chooses: "auto" (that rule), "numpy" (always the CPU
stages) or a torch device ("cuda", "cuda:1", "cpu").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.accumulator import AudioAccumulator, StreamFrame, stream_frames
from ..audio.decode import Audio
from ..backends import EngineSettings, InferenceEngine, diffusion_io
from ..blendshapes.cpu import BlendshapeSolver, frontal_columns
from ..blendshapes.settings import (
    SOLVERS,
    is_solver_key,
    pose_index,
    solver_config,
    solver_parameter_ranges,
    solver_values,
)
from ..errors import ParameterError
from ..executor.loop import ChainStep, Executor, Span, Track, drain, offline_progress
from ..executor.stream import Stream, face_stream_executor
from ..jobs import CancelToken, ProgressCallback
from ..names import ARKIT_52, TONGUE_16
from ..options import EmotionKey, InferenceOptions
from ..postprocess.chain import DeviceChain, FrameBlock, HostChain, PostChain, RowSplit
from ..postprocess.cpu import EyesAnimator, SkinAnimator, frame_dt
from ..postprocess.track_frames import TrackFrames
from ..result import AnimationResult
from ..timing import SAMPLE_RATE, frame_targets, frame_targets_of, num_frames_for
from .diffusion_folder import DiffusionPackage, Identity, load_diffusion_package
from .diffusion_noise import GENERATORS, NoiseSource, noise_source
from .emotion_input import EmotionCurve, explicit_emotion_curve
from .regression_folder import (
    ANIMATOR_RANGES,
    BlendshapeConfig,
    range_text,
    validate_animator_config,
)

log = logging.getLogger("a2x_core")

#: Diffusion-only parameters (``--param constant_noise=false``) with their defaults.
#: ``noise_generator`` "auto": the SDK's cuRAND stream where CuPy and a GPU are, else NumPy's.
NOISE_PARAMETERS: dict[str, Any] = {"constant_noise": True, "noise_generator": "auto"}

#: Largest TensorRT profile batch the pipeline asks for (each row carries 64 MB of noise at
#: v3.0 size); more tracks run in several calls.
TRT_MAX_BATCH = 32

#: The SDK's diffusion executor reads audio at strength 1.0 whatever the identity's config says
#: (spec §4 step 1, §8.2); ``--param input_strength=X`` overrides it as the SDK's
#: ``SetExecutorInputStrength`` does (every window's samples times X).
SDK_INPUT_STRENGTH = 1.0


@dataclass(frozen=True)
class DiffusionSettings:
    """Effective parameters of one run: identity defaults merged with overrides, validated."""

    identity: Identity
    animator: dict[str, Any]
    skin: BlendshapeConfig
    tongue: BlendshapeConfig
    constant_noise: bool
    noise_generator: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready effective values, in the override naming."""
        out: dict[str, Any] = {**self.animator, "identity": self.identity.name,
                               "constant_noise": self.constant_noise,
                               "noise_generator": self.noise_generator}  # fmt: skip
        out.update(solver_values(self.skin, "skin", self.identity.skin.data.pose_names))
        out.update(solver_values(self.tongue, "tongue", self.identity.tongue.data.pose_names))
        return out


def _torch_cat(a: Any, b: Any) -> Any:
    from ..backends.torch_engine import import_torch

    return import_torch().cat([a, b])


def _device_lerp(buffer: Any, lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> Any:
    """:meth:`FrameResampler.push`'s interpolation on the buffer's torch device (float32)."""
    from ..backends.torch_engine import import_torch

    torch = import_torch()
    index = torch.as_tensor(lo, device=buffer.device)
    a = buffer.index_select(0, index)
    if not np.any(w):
        return a
    b = buffer.index_select(0, torch.as_tensor(hi, device=buffer.device))
    return a + (b - a) * torch.as_tensor(w, device=buffer.device)


class FrameResampler:
    """Network-rate frames in, output-rate frames out, streaming (linear in target samples).

    Output frame ``i`` (target ``t``) takes network frames ``lo`` and ``lo + 1`` around ``t``
    with weight ``(t - T_lo) / (T_lo+1 - T_lo)``; at equal rates every weight is 0 and frames
    pass through unchanged. Past the last network frame the last one holds (weight 0).

    ``net`` and ``out`` are either the target samples of a closed clip's frames (arrays) or
    frame rates (Fractions, targets by the SDK's rule, computed as frames go): then the clip is
    open until :meth:`end` says how many frames it has, and an output frame that may still read
    a network frame that has not come waits for it (or for :meth:`end`). Only the network frames
    that later output frames read are kept.
    """

    def __init__(self, net: np.ndarray | Fraction, out: np.ndarray | Fraction) -> None:
        self._net, self._out = net, out
        #: frames of the clip (None while it is open)
        self.net_count: int | None = None if isinstance(net, Fraction) else len(net)
        self.count: int | None = None if isinstance(out, Fraction) else len(out)
        self._next = 0  # next output frame to emit
        self._base = 0  # network index of self._buffer[0]
        self._buffer: np.ndarray | None = None

    @property
    def ended(self) -> bool:
        return self.net_count is not None and self.count is not None

    @property
    def emitted(self) -> int:
        """Output frames emitted so far."""
        return self._next

    @property
    def held_frames(self) -> int:
        """Network frames held for output frames still to come (bounded on endless streams)."""
        return 0 if self._buffer is None else len(self._buffer)

    def end(self, net_count: int, out_count: int) -> None:
        """The clip ended: ``net_count`` network and ``out_count`` output frames in all."""
        self.net_count, self.count = int(net_count), int(out_count)

    def plan(self, end: int) -> tuple[int, np.ndarray, np.ndarray]:
        """The output frames completed once the network frames before ``end`` are in (each
        frame once, in order): their first index, each one's ``lo`` and weight. :meth:`push`
        without the frames, for a caller that keeps them (the device path)."""
        first = self._next
        lo, weight = self._lo_weight(first, self._candidates(end))
        needs = lo + (weight > 0)  # the last network frame each reads (non-decreasing)
        done = int(np.searchsorted(needs, end, side="left"))
        self._next = first + done
        return first, lo[:done], weight[:done]

    def push(self, first: int, frames: Any) -> Any:
        """Add network frames ``first ...`` (a NumPy array, or a torch tensor kept on its
        device: a stream on the GPU); return the output frames now complete, of the same
        kind."""
        on_host = isinstance(frames, np.ndarray)
        if self._buffer is None or len(self._buffer) == 0:
            self._buffer, self._base = frames, first
        else:
            if first != self._base + len(self._buffer):
                raise ValueError(f"network frame {first} pushed out of order")
            self._buffer = (np.concatenate([self._buffer, frames]) if on_host
                            else _torch_cat(self._buffer, frames))  # fmt: skip
        _, lo, weight = self.plan(self._base + len(self._buffer))
        lo = lo - self._base
        w = weight[:, None]
        hi = np.minimum(lo + 1, len(self._buffer) - 1)
        if on_host:
            a = self._buffer[lo]
            out = a if not np.any(w) else (a + (self._buffer[hi] - a) * w).astype(np.float32)
        else:
            out = _device_lerp(self._buffer, lo, hi, w)
        # keep only what later output frames still read (from the next one's lo)
        if self.count is not None and self._next >= self.count:
            keep = self._base + len(self._buffer)
        else:
            keep = int(self._lo_of(self._out_targets(self._next))[0])
        drop = min(keep - self._base, len(self._buffer))
        if drop > 0:
            self._buffer, self._base = self._buffer[drop:], self._base + drop
        return out

    # ------------------------------------------------------------------------- targets

    def _net_targets(self, index: np.ndarray) -> np.ndarray:
        if isinstance(self._net, Fraction):
            return (index * (SAMPLE_RATE * self._net.denominator)) // self._net.numerator
        return np.asarray(self._net)[index]

    def _out_targets(self, first: int, count: int = 1) -> np.ndarray:
        index = np.arange(first, first + count, dtype=np.int64)
        if isinstance(self._out, Fraction):
            return (index * (SAMPLE_RATE * self._out.denominator)) // self._out.numerator
        return np.asarray(self._out)[index]

    def _lo_of(self, targets: np.ndarray) -> np.ndarray:
        """The last network frame at or before each target (at least 0; at most the last)."""
        if isinstance(self._net, Fraction):
            # floor(f * a / b) <= t  <=>  f <= ((t + 1) * b - 1) // a
            net = self._net
            lo = ((targets + 1) * net.numerator - 1) // (SAMPLE_RATE * net.denominator)
        else:
            lo = np.searchsorted(self._net, targets, side="right") - 1
        lo = np.maximum(lo, 0)
        return lo if self.net_count is None else np.minimum(lo, max(self.net_count - 1, 0))

    def _candidates(self, end: int) -> int:
        """Output frames from the next one whose ``lo`` is before network frame ``end`` (their
        targets are before network frame ``end``'s)."""
        if self.net_count == 0:
            return 0
        if self.ended and end >= int(self.net_count or 0):
            stop = int(self.count or 0)
        else:
            limit = int(self._net_targets(np.array([end], np.int64))[0])
            if isinstance(self._out, Fraction):
                stop = num_frames_for(limit, self._out)  # frames with a target < limit
            else:
                stop = int(np.searchsorted(self._out, limit, side="left"))
            if self.count is not None:
                stop = min(stop, self.count)
        return max(0, stop - self._next)

    def _lo_weight(self, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        out = self._out_targets(first, count)
        lo = self._lo_of(out)
        limit = np.iinfo(np.int64).max if self.net_count is None else self.net_count
        has_next = lo + 1 < limit
        at_lo = self._net_targets(lo)
        span = np.where(has_next, self._net_targets(np.where(has_next, lo + 1, lo)) - at_lo, 0)
        weight = np.where(span > 0, (out - at_lo) / np.maximum(span, 1), 0.0)
        return lo, weight.astype(np.float32)


class DiffusionModel:
    """An Audio2Face-3D v3.0 diffusion folder loaded for inference (``AnimationModel``)."""

    kind = "diffusion"

    def __init__(self, package: DiffusionPackage, engine: InferenceEngine) -> None:
        self.package = package
        self.engine = engine
        info = package.network_info
        self.name = package.folder.name or info.actor
        self.version = info.version or "3.0"
        self.emotion_names: tuple[str, ...] = info.emotions
        self.identities: tuple[str, ...] = info.identities
        self._columns = {
            identity.name: (
                pose_index(identity.skin.data.pose_names, ARKIT_52, identity.skin.data_path,
                           "ARKit-52 skin"),
                pose_index(identity.tongue.data.pose_names, TONGUE_16, identity.tongue.data_path,
                           "tongue"),
            )
            for identity in package.identities
        }  # fmt: skip
        self._device_noise: dict[tuple[Any, ...], Any] = {}  # draws on the torch engine's device
        #: Where the stages after the network run: "auto", "numpy" or a torch device string.
        self.postprocess = "auto"
        self._device_cache: dict[Any, Any] = {}  # the device path's stacked solver

    @classmethod
    def load(
        cls,
        model_json: str | Path,
        engine: EngineSettings | None = None,
        *,
        postprocess: str = "auto",
    ) -> DiffusionModel:
        """Load and validate a diffusion folder and create its inference engine.

        ``engine``: which engine, where and how (default: auto, all cores, fp32);
        ``postprocess``: where the stages after the network run (see the module docstring).

        Raises:
            ModelError, ModelPackageError: the folder is incomplete or inconsistent.
            EngineError: the backend is unavailable or the network does not match.
            ParameterError: an unknown ``postprocess``.
        """
        package = load_diffusion_package(model_json)
        inputs, outputs = diffusion_io(**network_shapes(package))
        model = cls(package, (engine or EngineSettings()).create(package.onnx_path, inputs, outputs))
        model.postprocess = postprocess
        model.postprocess_device()  # validate the choice now
        return model

    def postprocess_device(self) -> str | None:
        """The torch device the stages after the network run on, or None for the NumPy stages
        ("auto": the torch engine's CUDA device).

        Raises:
            ParameterError: ``postprocess`` is not one of ``POSTPROCESS_CHOICES``.
        """
        from ..postprocess.gpu import postprocess_choice

        caps = self.engine.capabilities
        on_cuda = caps.device_tensors and caps.on_cuda  # host-array engines keep NumPy stages
        return postprocess_choice(self.postprocess, caps.device if on_cuda else None)

    # ------------------------------------------------------------------------- parameters

    def parameter_ranges(self) -> dict[str, str]:
        """Every overridable parameter name -> its accepted values (for ``a2x info``)."""
        out = {name: range_text(*bounds) for name, bounds in ANIMATOR_RANGES.items()}
        out["constant_noise"] = "true (one noise draw, the SDK default) or false (new per window)"
        out["noise_generator"] = ("auto (default: curand where CuPy and a CUDA device are, else "
                                  "numpy), curand (the SDK's cuRAND Philox) or numpy (portable)")
        out.update(solver_parameter_ranges())
        return out

    def settings(
        self, overrides: Mapping[str, Any] | None = None, identity: str | None = None
    ) -> DiffusionSettings:
        """The identity's defaults merged with ``overrides``, validated as the SDK's setters do.

        Raises:
            ModelError: unknown identity. ParameterError: unknown name, bad value.
        """
        chosen = self.package.identity(identity)
        animator = {**chosen.config, "input_strength": SDK_INPUT_STRENGTH}
        noise = dict(NOISE_PARAMETERS)
        solver_over: dict[str, dict[str, Any]] = {s: {} for s in SOLVERS}
        for key, value in (overrides or {}).items():
            if key in animator:
                animator[key] = value
            elif key == "constant_noise":
                if not isinstance(value, bool):
                    raise ParameterError(f"{key} must be true or false, found {value!r}")
                noise[key] = value
            elif key == "noise_generator":
                if value not in GENERATORS:
                    raise ParameterError(
                        f"noise_generator={value!r} is unknown", hint="use auto, numpy or curand"
                    )
                noise[key] = value
            elif is_solver_key(key):
                solver, _, rest = key.partition(".")
                solver_over[solver][rest] = value
            else:
                raise ParameterError(
                    f"unknown parameter {key!r}",
                    hint="valid parameters: " + ", ".join(self.parameter_ranges()),
                )
        animator = validate_animator_config(animator, error=ParameterError, implicit_emotion=False)
        return DiffusionSettings(
            chosen,
            animator,
            solver_config(chosen.skin, solver_over["skin"], "skin"),
            solver_config(chosen.tongue, solver_over["tongue"], "tongue"),
            bool(noise["constant_noise"]),
            str(noise["noise_generator"]),
        )

    # ------------------------------------------------------------------------- info

    def info(self) -> dict[str, Any]:
        """Facts for ``a2x info``: files, sizes, identities, engine and every parameter."""
        p = self.package
        info = p.network_info
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "model_json": str(p.model_json),
            "network": str(p.onnx_path),
            "engine": self.engine.describe(),
            "identities": list(self.identities),
            "network_info": {
                "skin_size": info.skin_size,
                "tongue_size": info.tongue_size,
                "num_diffusion_steps": info.num_diffusion_steps,
                "num_gru_layers": info.num_gru_layers,
                "gru_latent_dim": info.gru_latent_dim,
                "frames": f"{info.left_truncate} + {info.center_frames} + {info.right_truncate}",
                "network_fps": str(info.fps),
                "buffer_len": info.buffer_len,
                "padding_left": info.padding_left,
            },
            "emotions": list(self.emotion_names),
            "default_emotion": info.default_emotion.tolist(),
            "parameters": {i.name: self.settings(identity=i.name).to_dict() for i in p.identities},
            "parameter_ranges": self.parameter_ranges(),
            "notes": (
                "--identity picks the face (default: the first); the network runs at "
                f"{info.fps} fps and other rates are interpolated before post-processing; "
                "input_strength is 1.0 as in the SDK's diffusion executor; noise is seeded by "
                "--seed (constant per run unless constant_noise=false), from the SDK's cuRAND "
                "Philox where CuPy and a CUDA device are, else NumPy's Philox "
                "(noise_generator=auto; numpy or curand force one)"
            ),
            "outputs": "weights [frames, 52] ARKit, tongue_weights [frames, 16], jaw_transforms "
            "[frames, 4, 4], eye_rotations [frames, 6], emotions [frames, 10]",
        }

    # ------------------------------------------------------------------------- animate

    def animate(
        self,
        tracks: Sequence[Audio],
        options: InferenceOptions,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        *,
        track_emotions: Sequence[tuple[EmotionKey, ...]] | None = None,
    ) -> list[AnimationResult]:
        """Animate several tracks as one batch; each result equals its one-track run.

        ``track_emotions``: one tuple of emotion keys per track, replacing ``options.emotions``
        for that track (the Animator's emotion model hands each clip its own curve).

        Raises:
            ParameterError: bad parameters or emotion keys; ``track_emotions`` not one per track.
            ModelError: an unknown identity. EngineError: the noise generator cannot start.
            CancelledError: ``cancel`` was set.
        """
        run = self._prepare(options)
        keys_per_track = _emotions_per_track(options, tracks, track_emotions)
        curves = [self._curve(keys, audio.start_s)
                  for audio, keys in zip(tracks, keys_per_track, strict=True)]  # fmt: skip
        if tracks:  # TensorRT: profile = tracks (a no-op where the batch is not fixed)
            self.engine.ensure_max_batch(min(len(tracks), TRT_MAX_BATCH))
        device = self.postprocess_device()
        if device is None:
            step = DiffusionStep(self)
            chain: PostChain = HostChain(self._split_for(run.columns))
        else:
            step, chain = self._device_step(device, run, tracks)
        executor = Executor(step)
        opened = [self._open_track(executor, AudioAccumulator.whole(audio.samples), run, chain,
                                   curve) for audio, curve in zip(tracks, curves, strict=True)]  # fmt: skip
        total = sum(step.ready_units(t) for t in opened)
        executor.run_ready(cancel, offline_progress(progress, total, "Audio2Face-3D diffusion"))
        effective = run.settings.to_dict()
        effective["noise_generator"] = run.noise.generator  # what drew ("auto" resolved)
        effective["engine"] = self.engine.name
        # where the stages after the network ran, and which solver (BVLS on the CPU, ADMM there)
        effective["postprocess"] = device or "numpy"
        identity = run.settings.identity
        skin_columns, tongue_columns = self._columns[identity.name]
        results = []
        for track, audio in zip(opened, tracks, strict=True):
            targets = frame_targets(num_frames_for(len(audio.samples), run.fps), run.fps)
            results.append(run.stages.result(
                drain(track), audio, options, run.fps, model=f"{self.name} ({identity.name})",
                version=self.version, parameters=effective, skin_columns=skin_columns,
                tongue_columns=tongue_columns, emotions=track.state.curve.sample(targets),
                emotion_names=self.emotion_names,
            ))  # fmt: skip
        return results

    # ------------------------------------------------------------------------- streams

    def open_stream(self, options: InferenceOptions, executor: Executor | None = None) -> Stream:
        """A stream of pushed audio on this model: frames come out as soon as the windows they
        read have arrived (:meth:`lookahead_samples`) and equal :meth:`animate`'s frames of the
        whole clip (``docs/streaming.md``). Streams opened on one ``executor``
        (:meth:`stream_executor`) share its network calls, each at its own window. A stream
        runs the NumPy stages after the network (the network itself on the model's engine).

        Raises:
            ParameterError: bad ``options.parameters``/emotions, ``geometry`` (not on a stream
                yet), or an executor of another model.
            ModelError: an unknown identity. EngineError: the noise generator cannot start.
        """
        executor = face_stream_executor(self, options, executor, DiffusionStep)
        step = executor.step
        # streams of the same settings share one run (its noise source: the offline batch's
        # rule) and one chain (on a device: one batched DevicePipeline); emotions stay per stream
        key = ("diffusion", Fraction(options.fps), options.identity, options.seed,
               repr(sorted((options.parameters or {}).items())))  # fmt: skip
        if key not in executor.shared:
            run = self._prepare(options)
            executor.shared[key] = (run, self._stream_chain(run, step.device))
        run, chain = executor.shared[key]
        track = self._open_track(executor, AudioAccumulator(), run, chain,
                                 self._curve(options.emotions, 0.0))  # fmt: skip
        # TensorRT: one row per open stream in a call
        self.engine.ensure_max_batch(min(len(executor.tracks), TRT_MAX_BATCH))
        return Stream(executor, track, self._stream_frames, self.lookahead_samples(run.fps))

    def stream_executor(self) -> Executor:
        """An executor for streams of this model; streams opened on the same executor share
        network calls. The stages after the network run where :attr:`postprocess` says
        (:meth:`postprocess_device`): NumPy per stream, or batched on a torch device."""
        step = DiffusionStep(self)
        step.device = self.postprocess_device()
        return Executor(step)

    def _stream_chain(self, run: _Run, device: str | None) -> PostChain:
        """The chain the streams of ``run`` share: NumPy stages per stream, or one growable
        :class:`a2x_core.postprocess.gpu.DevicePipeline` (deltas in) batched over them."""
        if device is None:
            return HostChain(self._split_for(run.columns))
        from ..postprocess.gpu import DevicePipeline

        stages = run.stages
        pipe = DevicePipeline(
            device, stages.params, run.settings.identity.data, None, None, stages.skin_solver,
            stages.tongue_solver, run.dt, None, cache=self._device_cache,
        )  # fmt: skip
        return DeviceChain(pipe, streaming=True)

    def lookahead_samples(self, fps: Fraction) -> int:
        """The most samples after an output frame's target sample that a stream at ``fps`` must
        have received before the frame comes out: the frame's network frame (the next one too
        where it interpolates between two) comes from a window that runs once its whole span has
        arrived (and a frame of the next window has: see :meth:`DiffusionStep.ready_units`).
        For v3.0: 12000 samples (0.75 s) at 60 and 24 fps, 11734 at 30, 12266 at 30000/1001."""
        info = self.package.network_info
        fps = Fraction(fps)
        # the output targets' pattern against the windows repeats every `period` output frames
        cycle = info.stride * fps.numerator
        period = cycle // math.gcd(cycle, SAMPLE_RATE * fps.denominator)
        out = frame_targets(min(period, LOOKAHEAD_SCAN), fps)
        net = info.fps
        lo = ((out + 1) * net.numerator - 1) // (SAMPLE_RATE * net.denominator)
        needs = lo + (out > frame_targets_of(lo, net))
        window = (needs + info.leading_frames) // info.center_frames
        arrive = np.maximum(window * info.stride - info.padding_left + info.buffer_len,
                            frame_targets_of((window + 1) * info.center_frames
                                             - info.leading_frames, net) + 1)  # fmt: skip
        return int((arrive - out).max())

    def _stream_frames(self, track: Track, block: FrameBlock, first: int) -> list[StreamFrame]:
        state: _TrackState = track.state
        fps = state.run.fps
        skin_columns, tongue_columns = self._columns[state.run.settings.identity.name]
        index = np.arange(first, first + len(block["skin"]), dtype=np.int64)
        explicit = state.curve.sample(frame_targets_of(index, fps))
        return stream_frames(block, first, fps, skin_columns, tongue_columns, explicit)

    # ------------------------------------------------------------------------- one run

    def _prepare(self, options: InferenceOptions) -> _Run:
        """The settings, noise and prepared post-network stages of one run of ``options``."""
        settings = self.settings(options.parameters, options.identity)
        info = self.package.network_info
        identity = settings.identity
        params = settings.animator
        fps = Fraction(options.fps)
        dt = frame_dt(fps.numerator, fps.denominator)
        columns = None if options.geometry else frontal_columns(identity.skin.data)
        stages = TrackFrames(
            params,
            SkinAnimator(params, identity.data.neutral_skin, identity.data.eye_close_pose_delta,
                         identity.data.lip_open_pose_delta, dt, columns),
            EyesAnimator(params, identity.data.saccade_rot_matrix, dt),
            BlendshapeSolver(identity.skin.data, settings.skin),
            BlendshapeSolver(identity.tongue.data, settings.tongue),
            identity.data.neutral_tongue, identity.data.neutral_jaw,
            masked=columns is not None, keep_geometry=options.geometry,
        )  # fmt: skip
        noise_shape = (info.num_diffusion_steps + 1, info.frames, info.output_size)
        noise = noise_source(
            settings.noise_generator, noise_shape, options.seed, settings.constant_noise
        )
        one_hot = np.zeros(len(info.identities), np.float32)
        one_hot[identity.index] = 1.0
        return _Run(options, settings, fps, dt, stages, noise, columns, one_hot)

    def _curve(self, keys: Sequence[EmotionKey], start_s: float) -> EmotionCurve:
        info = self.package.network_info
        return explicit_emotion_curve(keys, self.emotion_names, info.default_emotion,
                                      start_s=start_s)  # fmt: skip

    def _open_track(
        self, executor: Executor, audio: AudioAccumulator, run: _Run, chain: PostChain,
        curve: EmotionCurve,
    ) -> Track:  # fmt: skip
        """A track of ``run`` in ``executor`` (zero GRU state); its frames go to ``chain``."""
        info = self.package.network_info
        latents = np.zeros(
            (info.num_diffusion_steps, info.num_gru_layers, info.gru_latent_dim), np.float32
        )
        state = _TrackState(run, curve, len(executor.tracks), latents,
                            FrameResampler(info.fps, run.fps))  # fmt: skip
        return executor.add(Track(audio, state, chain, chain.open_slot(run.stages)))

    def _split_for(self, columns: np.ndarray | None) -> RowSplit:
        """Prediction rows ``[n, output]`` (skin deltas | tongue deltas | 15 jaw | 4 eyes) ->
        what the NumPy stages take (the skin's solver columns only, unless ``columns`` None)."""
        info = self.package.network_info
        skin_end = info.skin_size
        tongue_end = skin_end + info.tongue_size

        def split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            return (
                rows[:, :skin_end] if columns is None else rows[:, columns],
                rows[:, skin_end:tongue_end],
                rows[:, tongue_end : tongue_end + 15],
                rows[:, tongue_end + 15 : tongue_end + 19],
            )

        return split

    def window_frames(self, window: int) -> np.ndarray:
        """Network-rate frame index of each centre frame of ``window`` (negative = dropped)."""
        info = self.package.network_info
        return window * info.center_frames + np.arange(info.center_frames) - info.leading_frames

    def window_start(self, window: int) -> int:
        """First audio sample of ``window`` (negative = zero padding), spec §3."""
        info = self.package.network_info
        return window * info.stride - info.padding_left

    def centre_targets(self, window: int) -> np.ndarray:
        """Emotion targets of ``window``'s centre frames on the network-fps grid (negative
        before 0)."""
        info = self.package.network_info
        return (self.window_frames(window) * info.buffer_len) // info.frames

    def stream_audio_for_emotions(self, last_key: int) -> int:
        """How many samples a stream may hold when its emotion keys reach sample ``last_key``:
        up to just before the first window whose centre frames read the curve past it
        (:class:`a2x_core.executor.emotion_stream.EmotionDrivenStream` holds the rest back)."""
        info = self.package.network_info

        def last_centre(window: int) -> int:
            return int(self.centre_targets(window).max())

        window = max(0, (last_key - last_centre(0)) // info.stride)
        while window > 0 and last_centre(window) > last_key:
            window -= 1
        while last_centre(window) <= last_key:
            window += 1
        # `window` is the first that reads past the keys: it runs once (ready_units) this many
        # samples have arrived
        return info.buffer_len - info.padding_left + window * info.stride - 1

    def windows_for(self, num_samples: int) -> int:
        """Windows of a closed clip of ``num_samples``: up to the one holding the last kept
        network frame (generated frame ``net_count - 1 + leading``)."""
        info = self.package.network_info
        net_count = num_frames_for(num_samples, info.fps)
        return 0 if net_count == 0 else (net_count - 1 + info.leading_frames) // info.center_frames + 1

    # ------------------------------------------------------------------------- network

    def _infer(
        self, feeds_all: dict[str, np.ndarray], draws: Sequence[tuple[NoiseSource, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Centre frames ``[rows, C, output]`` and output GRU state on the host, any engine;
        ``draws``: each row's noise source and window."""
        info = self.package.network_info
        rows = len(feeds_all["window"])
        if self.engine.capabilities.device_tensors:
            from ..backends.torch_engine import import_torch

            torch, device = import_torch(), self.engine.capabilities.device
            tensors = {name: torch.from_numpy(np.ascontiguousarray(value)).to(device)
                       for name, value in feeds_all.items()}  # fmt: skip
            centre, latents = self._infer_on_device(tensors, draws)
            return centre.cpu().numpy(), latents.float().cpu().numpy()
        by_key = {_draw_key(source, window): (source, window) for source, window in draws}
        if len(by_key) == 1:  # every row the same draw: one array, broadcast
            source, window = next(iter(by_key.values()))
            draw = source.window(window)
            feeds_all["noise"] = np.broadcast_to(draw, (rows, *draw.shape))
        else:
            arrays = {key: source.window(window) for key, (source, window) in by_key.items()}
            feeds_all["noise"] = np.stack([arrays[_draw_key(s, w)] for s, w in draws])
        limit = self.engine.max_batch or rows
        predictions, latents = [], []
        for lo in range(0, rows, limit):
            part = slice(lo, min(lo + limit, rows))
            feeds = {k: np.ascontiguousarray(v[:, :, part] if k == "input_latents" else v[part])
                     for k, v in feeds_all.items()}  # fmt: skip
            out = self.engine.run(feeds)
            predictions.append(out["prediction"][:, info.left_truncate : info.left_truncate
                                                 + info.center_frames])  # fmt: skip
            latents.append(out["output_latents"])
        return np.concatenate(predictions), np.concatenate(latents, axis=2)

    def _infer_on_device(
        self, tensors: dict[str, Any], draws: Sequence[tuple[NoiseSource, int]]
    ) -> tuple[Any, Any]:
        """The torch engine without host copies of the noise: each draw (64 MB at v3.0 size)
        is uploaded once (once per run when constant) and, when every row has the same one,
        broadcast over the batch on the device. Device tensors in (but the noise) -> the centre
        frames ``[rows, C, output]`` (float32) and the output GRU state, on the device."""
        from ..backends.torch_engine import import_torch

        engine, caps = self.engine, self.engine.capabilities
        torch = import_torch()
        keys = [_draw_key(source, window) for source, window in draws]
        uploaded: dict[tuple[Any, ...], Any] = {}
        for key, (source, window) in zip(keys, draws, strict=True):
            if key not in uploaded:
                kept = self._device_noise.get(key)
                uploaded[key] = (kept if kept is not None
                                 else source.device_window(window, torch, caps.device))  # fmt: skip
        self._device_noise = uploaded  # the draws in use stay (a constant one for the run)
        rows = len(tensors["window"])
        if len(uploaded) == 1:
            shared = next(iter(uploaded.values()))
            noise = shared.unsqueeze(0).expand(rows, *shared.shape)
        else:
            noise = torch.stack([uploaded[key] for key in keys])
        tensors = {**tensors, "noise": noise}
        outs = dict(zip(caps.device_outputs,
                        engine.run_device([tensors[n] for n in caps.device_inputs]),
                        strict=True))  # fmt: skip
        info = self.package.network_info
        centre = slice(info.left_truncate, info.left_truncate + info.center_frames)
        return outs["prediction"][:, centre].float(), outs["output_latents"]

    # ------------------------------------------------------------------------- device path

    def _device_step(
        self, device: str, run: _Run, tracks: Sequence[Audio]
    ) -> tuple[DiffusionStep, PostChain]:
        """The network step and the device chain of an offline run of ``tracks`` on ``device``
        (:class:`a2x_core.postprocess.gpu.DevicePipeline` with the deltas as its rows: every track at
        once, batched)."""
        from ..postprocess.gpu import DevicePipeline

        stages = run.stages
        lengths = [num_frames_for(len(a.samples), run.fps) for a in tracks]
        pipe = DevicePipeline(
            device, stages.params, run.settings.identity.data, None, None, stages.skin_solver,
            stages.tongue_solver, run.dt, lengths, geometry=run.options.geometry,
            cache=self._device_cache,
        )  # fmt: skip
        return DiffusionStep(self, pipe), DeviceChain(pipe)


def network_shapes(package: DiffusionPackage) -> dict[str, int]:
    """``diffusion_io`` keyword arguments from a folder's ``network_info.json``."""
    info = package.network_info
    return {
        "window": info.buffer_len,
        "frames": info.frames,
        "center_frames": info.center_frames,
        "emotions": len(info.emotions),
        "identities": len(info.identities),
        "steps": info.num_diffusion_steps,
        "gru_layers": info.num_gru_layers,
        "latent": info.gru_latent_dim,
        "output_size": info.output_size,
    }


def _draw_key(source: NoiseSource, window: int) -> tuple[Any, ...]:
    """What identifies one row's noise: the source's draws and, unless constant, the window."""
    return (*source.key, None if source.constant else int(window))


def _emotions_per_track(
    options: InferenceOptions,
    tracks: Sequence[Audio],
    track_emotions: Sequence[tuple[EmotionKey, ...]] | None,
) -> list[Sequence[EmotionKey]]:
    """Each track's emotion keys: ``track_emotions`` (one tuple per track) or
    ``options.emotions`` for all.

    Raises:
        ParameterError: ``track_emotions`` does not hold one entry per track.
    """
    if track_emotions is None:
        return [options.emotions] * len(tracks)
    per_track = list(track_emotions)
    if len(per_track) != len(tracks):
        raise ParameterError(
            f"track_emotions has {len(per_track)} entries for {len(tracks)} tracks",
            hint="give one tuple of emotion keys per track, or None for options.emotions",
        )
    return per_track


@dataclass
class _Run:
    """What every track of one options set shares: validated settings, the noise source and
    the prepared (never run) post-network stages, fresh per track."""

    options: InferenceOptions
    settings: DiffusionSettings
    fps: Fraction
    dt: np.float32
    stages: TrackFrames
    noise: NoiseSource
    columns: np.ndarray | None  # the skin solver's xyz columns (None: full geometry)
    one_hot: np.ndarray  # the identity input


class _TrackState:
    """One track's feeds and carried state: its run, emotion curve, GRU state (host) and the
    streaming resampler from network frames to output frames."""

    def __init__(
        self, run: _Run, curve: EmotionCurve, index: int, latents: np.ndarray,
        resampler: FrameResampler,
    ) -> None:  # fmt: skip
        self.run = run
        self.curve = curve
        self.index = index  # position among an offline run's tracks (the device path's slot)
        self.latents = latents  # [steps, layers, latent]; the device path keeps its own
        self.resampler = resampler


class DiffusionStep:
    """The diffusion network as an executor step (:class:`a2x_core.executor.loop.ModelStep`): a unit is one
    network window (1 s of audio, stride 0.5 s); each call runs the next window of every track
    with a ready one (one per track: the GRU state carries from window to window), so tracks of
    a stream executor may be at different windows. Each row gets its track's GRU state and its
    own noise draw (the track's source at the track's window; with constant noise every row
    shares one draw). The kept centre frames go through the track's streaming
    :class:`FrameResampler` to the output rate, and the output frames they complete go to the
    track's chain.

    ``pipeline`` None: host rows, the NumPy stages. Else the device run of an offline batch
    (:class:`a2x_core.postprocess.gpu.DevicePipeline`): every track at the same window, the GRU state
    and (with the torch engine there) the kept frames on the device, the output frames gathered
    and interpolated there (:class:`_DeviceResampler`).
    """

    units_per_call = 1

    def __init__(self, model: DiffusionModel, pipeline: Any = None) -> None:
        self.model = model
        self.pipeline = pipeline
        info = model.package.network_info
        self.info = info
        self._device: _DeviceResampler | None = None
        self._latents: Any = None  # [steps, layers, tracks, latent] on the device
        self._on_device = False
        #: torch device of the stages after the network on a stream executor (None: NumPy)
        self.device: str | None = None
        self._stream_on_device: bool | None = None  # streams: network rows stay on the device

    # ------------------------------------------------------------------------- ModelStep

    def ready_units(self, track: Track) -> int:
        """Once the audio ended: the offline window count. Before: the windows whose whole span
        has arrived, but not the last window of the audio so far (the clip may end inside it:
        its output frames past the last network frame need to know; for v3.0 that window's
        span never has arrived)."""
        received = track.audio.received
        total = self.model.windows_for(received)
        if track.audio.ended:
            return total
        info = self.info
        arrived = (received + info.padding_left - info.buffer_len) // info.stride + 1
        return max(0, min(arrived, total - 1))

    def keep_from(self, track: Track) -> int:
        if track.audio.ended:  # a closed clip is held whole (dropping would copy the rest)
            return track.audio.first
        return max(0, self.model.window_start(track.next_unit))

    def run(self, spans: Sequence[Span]) -> list[ChainStep]:
        for span in spans:
            self._end_if_closed(span.track)
        if self.pipeline is not None:
            return self._run_device(spans)
        feeds = self._feeds(spans)
        on_device = self._streams_on_device()
        if on_device:
            centre, latents, stack = self._infer_stream_rows(spans, feeds)
        else:
            feeds["input_latents"] = np.stack([s.track.state.latents for s in spans], axis=2)
            centre, latents = self.model._infer(feeds, self._draws(spans))
            stack = np.stack
        groups: dict[int, list[tuple[Track, Any, int]]] = {}
        for b, span in enumerate(spans):
            state: _TrackState = span.track.state
            # the device rows are a clone of the call's outputs already: views suffice
            state.latents = latents[:, :, b] if on_device else latents[:, :, b].copy()
            frames = self.model.window_frames(span.first)
            keep = self._kept(state, frames)
            if not keep.any():
                continue
            resampler = state.resampler
            kept = np.flatnonzero(keep)  # contiguous: the window's frames inside the clip
            rows = (centre[b, int(kept[0]):int(kept[-1]) + 1] if on_device
                    else np.asarray(centre[b][keep], np.float32))  # fmt: skip
            ready = resampler.push(int(frames[kept[0]]), rows)
            if len(ready):
                item = (span.track, ready, resampler.emitted - len(ready))
                groups.setdefault(len(ready), []).append(item)
        # one chain step per count of finished frames (a device chain batches the tracks)
        return [ChainStep(stack([rows for _, rows, _ in items]), [t for t, _, _ in items],
                          [start for _, _, start in items])  # fmt: skip
                for items in groups.values()]

    def _streams_on_device(self) -> bool:
        """Streams whose stages run on the engine's own torch device keep the GRU state, the
        centre frames and the resampling there (no host round trip of 24k-vertex frames)."""
        if self.device is None:
            return False
        if self._stream_on_device is None:
            from ..backends.torch_engine import import_torch
            from ..postprocess.gpu import same_device

            caps = self.model.engine.capabilities
            self._stream_on_device = bool(caps.device_tensors) and same_device(
                import_torch(), caps.device, self.device)  # fmt: skip
        return self._stream_on_device

    def _infer_stream_rows(self, spans: Sequence[Span], feeds: dict[str, np.ndarray]
                           ) -> tuple[Any, Any, Any]:  # fmt: skip
        """The network on the device for streams: each track's GRU state as a device tensor
        (uploaded once from its host zeros), centre frames and new state left on the device."""
        from ..backends.torch_engine import import_torch
        from ..postprocess.gpu import upload

        torch = import_torch()
        device = self.model.engine.capabilities.device
        tensors = {name: upload(torch, value, device) for name, value in feeds.items()}
        states = []
        for span in spans:
            state: _TrackState = span.track.state
            if isinstance(state.latents, np.ndarray):
                state.latents = upload(torch, state.latents, device)
            states.append(state.latents)
        tensors["input_latents"] = torch.stack(states, dim=2)
        with torch.inference_mode():
            centre, latents = self.model._infer_on_device(tensors, self._draws(spans))
            # the engine's outputs may be a CUDA graph's, overwritten by the next call; the
            # resamplers keep centre frames across calls
            return centre.clone(), latents.clone(), torch.stack

    # ------------------------------------------------------------------------- feeds

    def _end_if_closed(self, track: Track) -> None:
        """The track's audio ended: its resampler learns the clip's frame counts."""
        state: _TrackState = track.state
        if track.audio.ended and not state.resampler.ended:
            n = track.audio.received
            state.resampler.end(num_frames_for(n, self.info.fps), num_frames_for(n, state.run.fps))

    @staticmethod
    def _kept(state: _TrackState, frames: np.ndarray) -> np.ndarray:
        """Which centre frames land in the clip (before the end: all of a ready window's)."""
        net_count = state.resampler.net_count
        return (frames >= 0) if net_count is None else (frames >= 0) & (frames < net_count)

    def _feeds(self, spans: Sequence[Span]) -> dict[str, np.ndarray]:
        """The network inputs of each span's window, but the GRU state and noise; the audio
        times the track's ``input_strength``."""
        model, length = self.model, self.info.buffer_len
        windows, identities, emotions = [], [], []
        for span in spans:
            state: _TrackState = span.track.state
            strength = state.run.settings.animator["input_strength"]
            windows.append(span.track.audio.read(model.window_start(span.first), length, strength))
            identities.append(state.run.one_hot)
            emotions.append(state.curve.sample(model.centre_targets(span.first)))
        return {
            "window": np.stack(windows),
            "identity": np.stack(identities),
            "emotion": np.stack(emotions).astype(np.float32),
        }

    @staticmethod
    def _draws(spans: Sequence[Span]) -> list[tuple[NoiseSource, int]]:
        return [(span.track.state.run.noise, span.first) for span in spans]

    # ------------------------------------------------------------------------- device path

    def _run_device(self, spans: Sequence[Span]) -> list[ChainStep]:
        """One window of an offline device run: every live track at the same window (they
        advance together); a track's output frames to the pipeline in groups of one start."""
        from ..postprocess.gpu import same_device, upload

        pipe, model, info = self.pipeline, self.model, self.info
        torch = pipe.torch
        count = pipe.tracks
        window = spans[0].first
        if any(s.first != window for s in spans):
            raise RuntimeError("an offline device run keeps every track at one window")

        def indices(values: list[int]) -> Any:
            return upload(torch, np.asarray(values, np.int64), pipe.device)

        with torch.inference_mode():
            if self._device is None:
                caps = model.engine.capabilities
                self._on_device = caps.device_tensors and same_device(torch, caps.device,
                                                                      pipe.device)  # fmt: skip
                fps = spans[0].track.state.run.fps
                self._device = _DeviceResampler(torch, pipe.device, count,
                                                (info.fps / fps).denominator != 1)  # fmt: skip
                if self._on_device:
                    shape = (info.num_diffusion_steps, info.num_gru_layers, count,
                             info.gru_latent_dim)  # fmt: skip
                    self._latents = torch.zeros(shape, device=pipe.device)
            ids = [s.track.state.index for s in spans]
            feeds = self._feeds(spans)
            if self._on_device:
                latents = self._latents
                everyone = len(ids) == count
                index = None if everyone else indices(ids)
                tensors = {name: upload(torch, value, pipe.device)
                           for name, value in feeds.items()}  # fmt: skip
                tensors["input_latents"] = latents if everyone else latents[:, :, index]
                centre, out = model._infer_on_device(tensors, self._draws(spans))
                # the engine's outputs may be a CUDA graph's, overwritten by the next call
                if everyone:
                    latents.copy_(out)
                else:
                    latents[:, :, index] = out.to(latents.dtype)
            else:
                feeds["input_latents"] = np.stack([s.track.state.latents for s in spans], axis=2)
                centre_host, out_host = model._infer(feeds, self._draws(spans))
                for b, span in enumerate(spans):
                    span.track.state.latents = out_host[:, :, b].copy()
                centre = upload(torch, centre_host, pipe.device)
            frames = model.window_frames(window)
            plans = []
            for span in spans:
                state: _TrackState = span.track.state
                kept = frames[self._kept(state, frames)]
                empty = np.zeros(0, np.int64)
                plans.append(state.resampler.plan(int(kept[-1]) + 1) if len(kept)
                             else (state.resampler.emitted, empty, empty.astype(np.float32)))  # fmt: skip
            by_index = {s.track.state.index: s.track for s in spans}
            return [ChainStep(rows, [by_index[k] for k in tracks], [start] * len(tracks))
                    for start, tracks, rows in self._device.window(ids, frames, centre, plans)]  # fmt: skip


#: Output frames scanned for a stream's look-ahead (the pattern's period; exact for every rate
#: :func:`.timing.parse_fps` gives).
LOOKAHEAD_SCAN = 1 << 21


class _DeviceResampler:
    """:class:`FrameResampler` for the tracks of a device run: each track's resampler plans on
    the host which output frames a window completes; the frames are gathered and interpolated
    on the device, batched over tracks. Between windows it keeps each track's last network
    frame, the only earlier frame a later output frame can read (when it ``interpolates``)."""

    def __init__(self, torch: Any, device: Any, count: int, interpolates: bool) -> None:
        self.torch = torch
        self.device = device
        self.count = count
        self.tail: Any = None  # [tracks, 1, R]
        self.interpolates = interpolates

    def upload(self, values: Any) -> Any:
        """Indices or weights on the device, without waiting for it."""
        from ..postprocess.gpu import upload

        return upload(self.torch, np.asarray(values), self.device)

    def window(
        self,
        ids: list[int],
        frames: np.ndarray,
        centre: Any,
        plans: list[tuple[int, np.ndarray, np.ndarray]],
    ) -> list[tuple[int, list[int], Any]]:
        """Output frames completed by one window whose centre frames ``centre``
        ``[len(ids), C, R]`` are network frames ``frames`` of the tracks ``ids``, with each
        track's plan (first output frame, ``lo``, weights; :meth:`FrameResampler.plan`):
        (first output frame, tracks, ``[G, n, R]``) for each set of tracks at the same first
        output frame (one but where tracks end), a track with fewer than ``n`` frames padded
        with its last."""
        torch = self.torch
        base = int(frames[0]) - 1  # network frame at position 0 of [tail, centre]
        groups: dict[int, list[tuple[int, int, np.ndarray, np.ndarray]]] = {}
        for b, (k, (first, lo, w)) in enumerate(zip(ids, plans, strict=True)):
            if len(lo):
                groups.setdefault(first, []).append((b, k, lo, w))
        out = []
        for start, members in groups.items():
            width = max(len(lo) for _, _, lo, _ in members)
            pos = np.zeros((2, len(members), width), np.int64)  # lo, hi (hi = lo at weight 0)
            weight = np.zeros((len(members), width), np.float32)
            for g, (_, _, lo, w) in enumerate(members):
                n = len(lo)
                pos[0, g, :n], pos[1, g, :n], weight[g, :n] = lo - base, lo + (w > 0) - base, w
                pos[:, g, n:] = pos[:, g, n - 1 : n]
            rows = [b for b, _, _, _ in members]
            tracks = [k for _, k, _, _ in members]
            src = centre if rows == list(range(len(centre))) else centre[self.upload(rows)]
            if pos.min() == 0:
                src = torch.cat([self.tail[self.upload(tracks)], src], dim=1)
            else:
                pos -= 1
            step = _stride(pos[0])
            if step and not weight.any():  # every track the same evenly spaced frames: a view
                picked = src[:, pos[0, 0, 0] : pos[0, 0, -1] + 1 : step]
            else:
                at = self.upload(pos)
                g_index = torch.arange(len(members), device=centre.device)[:, None]
                picked = src[g_index, at[0]]
                if weight.any():  # a + (b - a) * w in float32, as FrameResampler
                    w_t = self.upload(weight)[..., None]
                    picked = picked + (src[g_index, at[1]] - picked) * w_t
            out.append((start, tracks, picked))
        if self.interpolates:
            if self.tail is None:
                self.tail = torch.zeros((self.count, 1, centre.shape[-1]), device=centre.device)
            self.tail[self.upload(ids)] = centre[:, -1:]
        return out


def _stride(positions: np.ndarray) -> int:
    """The step of positions ``[G, n]`` that are one evenly spaced run, the same in every row
    (a slice reads them), else 0."""
    first = positions[0]
    step = int(first[1] - first[0]) if len(first) > 1 else 1
    if step < 1 or not (positions == first).all() or not (np.diff(first) == step).all():
        return 0
    return step
