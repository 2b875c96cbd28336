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
device are (bit-identical to the SDK), NumPy's Philox elsewhere (:mod:`.diffusion_noise`).
After the network, each frame goes through the same post-processing and blendshape solves as a
regression model, with the identity's own config.

The network runs at its own 60 fps. Other output rates are sampled from its frames by linear
interpolation at each output frame's target sample, before post-processing, which then runs at
the output rate (``dt = 1/fps``); at 60 fps nothing is interpolated.

With the torch engine on CUDA the stages after the network run there too, batched over tracks
(the regression model's :class:`.postprocess_gpu.DevicePipeline` with the deltas as its
coefficients): the kept frames never leave the device, the interpolation is a gather and one
multiply-add per output frame, and the solves use the SDK's GPU solver (ADMM, close to but not
equal to the CPU's BVLS). ``postprocess`` chooses: "auto" (that rule), "numpy" (always the CPU
stages) or a torch device ("cuda", "cuda:1", "cpu").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .audio import Audio
from .backends import EngineSettings, InferenceEngine, diffusion_io
from .blendshapes import BlendshapeSolver, frontal_columns
from .diffusion_noise import GENERATORS, NoiseSource, noise_source
from .diffusion_package import DiffusionPackage, Identity, load_diffusion_package
from .emotion import EmotionCurve, explicit_emotion_curve
from .errors import ParameterError
from .jobs import CancelToken, Progress, ProgressCallback
from .model_package import ANIMATOR_RANGES, BlendshapeConfig, range_text, validate_animator_config
from .names import ARKIT_52, TONGUE_16
from .options import InferenceOptions
from .postprocess import EyesAnimator, SkinAnimator, frame_dt
from .result import AnimationResult
from .solver_settings import (
    SOLVERS,
    fresh,
    is_solver_key,
    pose_index,
    solver_config,
    solver_parameter_ranges,
    solver_values,
)
from .timing import frame_targets, num_frames_for
from .track_frames import TrackFrames

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


class FrameResampler:
    """Network-rate frames in, output-rate frames out, streaming (linear in target samples).

    Output frame ``i`` (target ``t``) takes network frames ``lo`` and ``lo + 1`` around ``t``
    with weight ``(t - T_lo) / (T_lo+1 - T_lo)``; at equal rates every weight is 0 and frames
    pass through unchanged. Past the last network frame the last one holds (weight 0).
    """

    def __init__(self, net_targets: np.ndarray, out_targets: np.ndarray) -> None:
        self.net_count = len(net_targets)
        self.count = len(out_targets)
        last = max(self.net_count - 1, 0)
        lo = np.searchsorted(net_targets, out_targets, side="right") - 1
        self.lo = np.clip(lo, 0, last)
        if self.net_count:
            # 0 past the last network frame: that frame holds
            span = net_targets[np.minimum(self.lo + 1, last)] - net_targets[self.lo]
            weight = np.where(span > 0, (out_targets - net_targets[self.lo]) / np.maximum(span, 1),
                              0.0)  # fmt: skip
        else:
            weight = np.zeros(self.count)
        self.weight = weight.astype(np.float32)
        #: the last network frame each output frame reads (non-decreasing)
        self.needs = self.lo + (self.weight > 0)
        self._next = 0  # next output frame to emit
        self._base = 0  # network index of self._buffer[0]
        self._buffer: np.ndarray | None = None

    def advance(self, end: int) -> slice:
        """The output frames completed once the network frames before ``end`` are in (each
        frame once, in order): :meth:`push` without the frames, for a caller that keeps them."""
        stop = max(self._next, int(np.searchsorted(self.needs, end, side="left")))
        done = slice(self._next, stop)
        self._next = stop
        return done

    def push(self, first: int, frames: np.ndarray) -> np.ndarray:
        """Add network frames ``first ...``; return the output frames now complete."""
        if self._buffer is None:
            self._buffer, self._base = frames, first
        else:
            if first != self._base + len(self._buffer):
                raise ValueError(f"network frame {first} pushed out of order")
            self._buffer = np.concatenate([self._buffer, frames])
        pick = self.advance(self._base + len(self._buffer))
        stop = pick.stop
        lo = self.lo[pick] - self._base
        w = self.weight[pick][:, None]
        hi = np.minimum(lo + 1, len(self._buffer) - 1)
        a = self._buffer[lo]
        out = a if not np.any(w) else (a + (self._buffer[hi] - a) * w).astype(np.float32)
        if stop < len(self.lo):  # keep only what later output frames still read
            drop = min(int(self.lo[stop]) - self._base, len(self._buffer))
            self._buffer, self._base = self._buffer[drop:], self._base + drop
        return out


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
        self._device_noise: tuple[Any, Any] | None = None  # (draw key, tensor) for the torch engine
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
        from .postprocess_gpu import postprocess_choice

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
    ) -> list[AnimationResult]:
        """Animate several tracks as one batch; each result equals its one-track run."""
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
        shared_noise = noise_source(
            settings.noise_generator, noise_shape, options.seed, settings.constant_noise
        )
        runs = [self._track_run(audio, options, fps, stages) for audio in tracks]
        if runs:  # TensorRT: profile = tracks (a no-op where the batch is not fixed)
            self.engine.ensure_max_batch(min(len(runs), TRT_MAX_BATCH))
        device = self.postprocess_device()
        if device is not None:
            self._animate_device(device, runs, identity, shared_noise, stages, dt,
                                 options.geometry, progress, cancel)  # fmt: skip
        else:
            total = sum(r.num_windows for r in runs) or 1
            done = 0
            for window in range(max((r.num_windows for r in runs), default=0)):
                if cancel is not None:
                    cancel.check()
                live = [r for r in runs if window < r.num_windows]
                feeds = self._feeds(live, window, identity, params["input_strength"])
                feeds["input_latents"] = np.stack([r.latents for r in live], axis=2)
                centre, latents = self._infer(feeds, shared_noise, window)
                for b, run in enumerate(live):
                    run.latents = latents[:, :, b].copy()
                    self._consume(run, window, centre[b], columns)
                done += len(live)
                if progress is not None:
                    progress(Progress(done / total, "Audio2Face-3D diffusion"))
        effective = settings.to_dict()
        effective["noise_generator"] = shared_noise.generator  # what drew ("auto" resolved)
        effective["engine"] = self.engine.name
        # where the stages after the network ran, and which solver (BVLS on the CPU, ADMM there)
        effective["postprocess"] = device or "numpy"
        return [self._result(run, options, fps, effective, identity) for run in runs]

    def _track_run(
        self, audio: Audio, options: InferenceOptions, fps: Fraction, stages: TrackFrames
    ) -> _TrackRun:
        info = self.package.network_info
        n = len(audio.samples)
        net_count = num_frames_for(n, info.fps)
        out_targets = frame_targets(num_frames_for(n, fps), fps)
        # the window holding the last kept frame (generated frame net_count - 1 + leading)
        windows = 0 if net_count == 0 else (net_count - 1 + info.leading_frames) // info.center_frames + 1
        curve = explicit_emotion_curve(
            options.emotions, self.emotion_names, info.default_emotion, start_s=audio.start_s
        )
        latents = np.zeros(
            (info.num_diffusion_steps, info.num_gru_layers, info.gru_latent_dim), np.float32
        )
        return _TrackRun(
            audio=audio,
            curve=curve,
            num_windows=windows,
            net_count=net_count,
            resampler=FrameResampler(frame_targets(net_count, info.fps), out_targets),
            explicit=curve.sample(out_targets),
            latents=latents,
            frames=fresh(stages),
        )

    def window_frames(self, window: int) -> np.ndarray:
        """Network-rate frame index of each centre frame of ``window`` (negative = dropped)."""
        info = self.package.network_info
        return window * info.center_frames + np.arange(info.center_frames) - info.leading_frames

    def window_start(self, window: int) -> int:
        """First audio sample of ``window`` (negative = zero padding), spec §3."""
        info = self.package.network_info
        return window * info.stride - info.padding_left

    def _feeds(
        self, live: list[_TrackRun], window: int, identity: Identity, input_strength: float
    ) -> dict[str, np.ndarray]:
        """The network inputs of ``window`` for the tracks ``live``, but the GRU state and noise;
        the audio times ``input_strength``."""
        info = self.package.network_info
        start = self.window_start(window)
        # emotion targets of the centre frames on the network-fps grid (negative before 0)
        targets = (self.window_frames(window) * info.buffer_len) // info.frames
        one_hot = np.zeros(len(info.identities), np.float32)
        one_hot[identity.index] = 1.0
        return {
            "window": np.stack([_window(r.audio.samples, start, info.buffer_len, input_strength)
                                for r in live]),  # fmt: skip
            "identity": np.broadcast_to(one_hot, (len(live), len(one_hot))).copy(),
            "emotion": np.stack([r.curve.sample(targets) for r in live]).astype(np.float32),
        }

    def _infer(
        self, feeds_all: dict[str, np.ndarray], noise: NoiseSource, window: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Centre frames ``[rows, C, output]`` and output GRU state on the host, any engine."""
        info = self.package.network_info
        rows = len(feeds_all["window"])
        if self.engine.capabilities.device_tensors:
            from .backends.torch_engine import import_torch

            torch, device = import_torch(), self.engine.capabilities.device
            tensors = {name: torch.from_numpy(np.ascontiguousarray(value)).to(device)
                       for name, value in feeds_all.items()}  # fmt: skip
            centre, latents = self._infer_on_device(tensors, noise, window)
            return centre.cpu().numpy(), latents.float().cpu().numpy()
        draw = noise.window(window)
        feeds_all["noise"] = np.broadcast_to(draw, (rows, *draw.shape))
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
        self, tensors: dict[str, Any], noise: NoiseSource, window: int
    ) -> tuple[Any, Any]:
        """The torch engine without host copies of the noise: every track of a window shares one
        draw (64 MB at v3.0 size), uploaded once (once per run when constant) and broadcast over
        the batch on the device. Device tensors in (but the noise) -> the centre frames
        ``[rows, C, output]`` (float32) and the output GRU state, on the device."""
        from .backends.torch_engine import import_torch

        engine, caps = self.engine, self.engine.capabilities
        torch = import_torch()
        key = (*noise.key, None if noise.constant else window)
        if self._device_noise is None or self._device_noise[0] != key:
            self._device_noise = (key, noise.device_window(window, torch, caps.device))
        rows = len(tensors["window"])
        shared = self._device_noise[1]
        tensors = {**tensors, "noise": shared.unsqueeze(0).expand(rows, *shared.shape)}
        outs = dict(zip(caps.device_outputs,
                        engine.run_device([tensors[n] for n in caps.device_inputs]),
                        strict=True))  # fmt: skip
        info = self.package.network_info
        centre = slice(info.left_truncate, info.left_truncate + info.center_frames)
        return outs["prediction"][:, centre].float(), outs["output_latents"]

    def _consume(
        self, run: _TrackRun, window: int, centre: np.ndarray, columns: np.ndarray | None
    ) -> None:
        """Keep the centre frames of one window that land inside the clip; post-process the
        output frames they complete."""
        info = self.package.network_info
        frames = self.window_frames(window)
        keep = (frames >= 0) & (frames < run.net_count)
        if not keep.any():
            return
        ready = run.resampler.push(int(frames[keep][0]), np.asarray(centre[keep], np.float32))
        if len(ready) == 0:
            return
        skin_end = info.skin_size
        tongue_end = skin_end + info.tongue_size
        run.frames.add(
            ready[:, :skin_end] if columns is None else ready[:, columns],
            ready[:, skin_end:tongue_end],
            ready[:, tongue_end : tongue_end + 15],
            ready[:, tongue_end + 15 : tongue_end + 19],
        )

    # ------------------------------------------------------------------------- device path

    def _animate_device(
        self,
        device: str,
        runs: list[_TrackRun],
        identity: Identity,
        noise: NoiseSource,
        stages: TrackFrames,
        dt: np.float32,
        geometry: bool,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> None:
        """Every track at once, the stages after the network on ``device``
        (:class:`.postprocess_gpu.DevicePipeline`, deltas in); fills the runs' outputs. With the
        torch engine on that device the GRU state and the kept frames stay there."""
        from .postprocess_gpu import DevicePipeline, same_device, upload

        info = self.package.network_info
        pipe = DevicePipeline(
            device, stages.params, identity.data, None, None, stages.skin_solver,
            stages.tongue_solver, dt, [r.resampler.count for r in runs], geometry=geometry,
            cache=self._device_cache,
        )  # fmt: skip
        torch = pipe.torch
        caps = self.engine.capabilities
        on_device = caps.device_tensors and same_device(torch, caps.device, pipe.device)
        resampler = _DeviceResampler(torch, pipe.device, runs)

        def indices(values: list[int]) -> Any:
            return upload(torch, np.asarray(values, np.int64), pipe.device)

        total = sum(r.num_windows for r in runs) or 1
        done = 0
        with torch.inference_mode():
            shape = (info.num_diffusion_steps, info.num_gru_layers, len(runs), info.gru_latent_dim)
            latents = torch.zeros(shape, device=pipe.device) if on_device else None
            for window in range(max((r.num_windows for r in runs), default=0)):
                if cancel is not None:
                    cancel.check()
                ids = [k for k, r in enumerate(runs) if window < r.num_windows]
                live = [runs[k] for k in ids]
                feeds = self._feeds(live, window, identity, stages.params["input_strength"])
                if latents is not None:
                    everyone = len(ids) == len(runs)
                    index = None if everyone else indices(ids)
                    tensors = {name: upload(torch, value, pipe.device)
                               for name, value in feeds.items()}  # fmt: skip
                    tensors["input_latents"] = latents if everyone else latents[:, :, index]
                    centre, out = self._infer_on_device(tensors, noise, window)
                    # the engine's outputs may be a CUDA graph's, overwritten by the next call
                    if everyone:
                        latents.copy_(out)
                    else:
                        latents[:, :, index] = out.to(latents.dtype)
                else:
                    feeds["input_latents"] = np.stack([r.latents for r in live], axis=2)
                    centre_host, out_host = self._infer(feeds, noise, window)
                    for b, run in enumerate(live):
                        run.latents = out_host[:, :, b].copy()
                    centre = upload(torch, centre_host, pipe.device)
                for start, tracks, rows in resampler.window(ids, self.window_frames(window), centre):
                    pipe.step(rows, None if len(tracks) == len(runs) else indices(tracks), start)
                done += len(ids)
                if progress is not None:
                    progress(Progress(done / total, "Audio2Face-3D diffusion"))
        for run, out_track in zip(runs, pipe.finish(), strict=True):
            frames = run.frames
            frames.skin_w, frames.tongue_w = [out_track["skin"]], [out_track["tongue"]]
            frames.jaw, frames.eye = [out_track["jaw"]], [out_track["eyes"]]
            if geometry:
                frames.skin_geo = [out_track["skin_geometry"]]
                frames.tongue_geo = [out_track["tongue_geometry"]]

    def _result(
        self,
        run: _TrackRun,
        options: InferenceOptions,
        fps: Fraction,
        effective: dict[str, Any],
        identity: Identity,
    ) -> AnimationResult:
        skin_columns, tongue_columns = self._columns[identity.name]
        return run.frames.result(
            run.frames.take_block(), run.audio, options, fps, model=f"{self.name} ({identity.name})",
            version=self.version, parameters=effective, skin_columns=skin_columns,
            tongue_columns=tongue_columns, emotions=run.explicit,
            emotion_names=self.emotion_names,
        )  # fmt: skip


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


def _window(
    samples: np.ndarray, start: int, length: int, input_strength: float = 1.0
) -> np.ndarray:
    """``samples[start : start + length]``, zero outside the clip, times ``input_strength``
    (skipped at exactly 1, as the SDK's ``AudioAccumulator::Read``)."""
    out = np.zeros(length, np.float32)
    lo, hi = max(start, 0), min(start + length, len(samples))
    if hi > lo:
        out[lo - start : hi - start] = samples[lo:hi]
    if input_strength != 1.0:
        out *= np.float32(input_strength)
    return out


class _DeviceResampler:
    """:class:`FrameResampler` for the tracks of a device run: each track's resampler plans on
    the host which output frames a window completes; the frames are gathered and interpolated
    on the device, batched over tracks. Between windows it keeps each track's last network
    frame, the only earlier frame a later output frame can read (when any weight is not 0)."""

    def __init__(self, torch: Any, device: Any, runs: list[_TrackRun]) -> None:
        self.torch = torch
        self.device = device
        self.runs = runs
        self.tail: Any = None  # [tracks, 1, R]
        self.interpolates = any(bool(np.any(r.resampler.weight)) for r in runs)

    def upload(self, values: Any) -> Any:
        """Indices or weights on the device, without waiting for it."""
        from .postprocess_gpu import upload

        return upload(self.torch, np.asarray(values), self.device)

    def window(
        self, ids: list[int], frames: np.ndarray, centre: Any
    ) -> list[tuple[int, list[int], Any]]:
        """Output frames completed by one window whose centre frames ``centre``
        ``[len(ids), C, R]`` are network frames ``frames`` of the tracks ``ids``: (first output
        frame, tracks, ``[G, n, R]``) for each set of tracks at the same first output frame (one
        but where tracks end), a track with fewer than ``n`` frames padded with its last."""
        torch = self.torch
        base = int(frames[0]) - 1  # network frame at position 0 of [tail, centre]
        groups: dict[int, list[tuple[int, int, slice]]] = {}
        for b, k in enumerate(ids):
            run = self.runs[k]
            kept = frames[(frames >= 0) & (frames < run.net_count)]
            ready = run.resampler.advance(int(kept[-1]) + 1) if len(kept) else slice(0, 0)
            if ready.stop > ready.start:
                groups.setdefault(ready.start, []).append((b, k, ready))
        out = []
        for start, members in groups.items():
            width = max(r.stop - r.start for _, _, r in members)
            pos = np.zeros((2, len(members), width), np.int64)  # lo, hi (hi = lo at weight 0)
            weight = np.zeros((len(members), width), np.float32)
            for g, (_, k, ready) in enumerate(members):
                plan = self.runs[k].resampler
                lo, w = plan.lo[ready], plan.weight[ready]
                n = len(lo)
                pos[0, g, :n], pos[1, g, :n], weight[g, :n] = lo - base, lo + (w > 0) - base, w
                pos[:, g, n:] = pos[:, g, n - 1 : n]
            rows = [b for b, _, _ in members]
            tracks = [k for _, k, _ in members]
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
                self.tail = torch.zeros((len(self.runs), 1, centre.shape[-1]), device=centre.device)
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


@dataclass
class _TrackRun:
    """One track's inputs, carried state (GRU latents, filters) and collected outputs."""

    audio: Audio
    curve: EmotionCurve
    num_windows: int
    net_count: int
    resampler: FrameResampler
    explicit: np.ndarray
    latents: np.ndarray
    frames: TrackFrames  # post-network stages and outputs
