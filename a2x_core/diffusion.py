"""Audio2Face-3D v3.0 diffusion models (Claire, James and Mark in one network), as the SDK's
diffusion executor runs them (spec §2, §3, §4, §6, §8.11).

Each inference sees a 1 s window (16000 samples, zero padded: window ``w`` covers
``[8000 w - 16000, 8000 w)``) and generates 60 frames at 60 fps, of which only the 30 centre
frames are used; windows advance by those 30 frames (0.5 s). The first 45 centre frames (all of
window 0 and 15 of window 1) have negative targets and are dropped, exactly as the SDK does, and
frames at or after the end of a closed clip end the track. Per track the network's GRU state
(``[steps, layers, latent]``) is carried from window to window and starts at zero; the diffusion
noise is per track, either one constant draw (the SDK's default) or a new draw per inference,
from a seeded generator so that runs repeat. After the network, each frame goes through the same
post-processing and blendshape solves as a regression model, with the identity's own config.

The network runs at its own 60 fps. Other output rates are sampled from its frames by linear
interpolation at each output frame's target sample, before post-processing, which then runs at
the output rate (``dt = 1/fps``); at 60 fps nothing is interpolated.
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
from .backends import InferenceEngine, create_engine, diffusion_io
from .blendshapes import BlendshapeSolver
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
NOISE_PARAMETERS: dict[str, Any] = {"constant_noise": True, "noise_generator": "numpy"}

#: The SDK's diffusion executor reads audio at strength 1.0 whatever the identity's config says
#: (spec §4 step 1, §8.2); ``--param input_strength=X`` still overrides it.
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
    pass through unchanged. Past the last network frame the last one holds.
    """

    def __init__(self, net_targets: np.ndarray, out_targets: np.ndarray) -> None:
        self.net_count = len(net_targets)
        lo = np.searchsorted(net_targets, out_targets, side="right") - 1
        self.lo = np.clip(lo, 0, max(self.net_count - 1, 0))
        hi_target = np.where(
            self.lo + 1 < self.net_count,
            net_targets[np.minimum(self.lo + 1, max(self.net_count - 1, 0))],
            out_targets,
        )
        span = hi_target - net_targets[self.lo] if self.net_count else np.zeros_like(out_targets)
        self.weight = np.where(
            span > 0, (out_targets - net_targets[self.lo]) / np.maximum(span, 1), 0.0
        ).astype(np.float32)
        self._next = 0  # next output frame to emit
        self._base = 0  # network index of self._buffer[0]
        self._buffer: np.ndarray | None = None

    def push(self, first: int, frames: np.ndarray) -> np.ndarray:
        """Add network frames ``first ...``; return the output frames now complete."""
        if self._buffer is None:
            self._buffer, self._base = frames, first
        else:
            if first != self._base + len(self._buffer):
                raise ValueError(f"network frame {first} pushed out of order")
            self._buffer = np.concatenate([self._buffer, frames])
        end = self._base + len(self._buffer)
        stop = self._next
        while stop < len(self.lo):
            lo = int(self.lo[stop])
            needs = lo + 1 if self.weight[stop] > 0 else lo
            if needs >= end:
                break
            stop += 1
        pick = slice(self._next, stop)
        lo = self.lo[pick] - self._base
        w = self.weight[pick][:, None]
        hi = np.minimum(lo + 1, len(self._buffer) - 1)
        a = self._buffer[lo]
        out = a if not np.any(w) else (a + (self._buffer[hi] - a) * w).astype(np.float32)
        self._next = stop
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

    @classmethod
    def load(
        cls,
        model_json: str | Path,
        *,
        backend: str = "auto",
        threads: int | None = None,
        device: str = "auto",
        precision: str = "fp32",
    ) -> DiffusionModel:
        """Load and validate a diffusion folder and create its inference engine.

        Raises:
            ModelError, ModelPackageError: the folder is incomplete or inconsistent.
            EngineError: the backend is unavailable or the network does not match.
        """
        package = load_diffusion_package(model_json)
        inputs, outputs = diffusion_io(**network_shapes(package))
        engine = create_engine(
            backend, package.onnx_path, inputs, outputs, threads=threads, device=device,
            precision=precision,
        )  # fmt: skip
        return cls(package, engine)

    # ------------------------------------------------------------------------- parameters

    def parameter_ranges(self) -> dict[str, str]:
        """Every overridable parameter name -> its accepted values (for ``a2x info``)."""
        out = {name: range_text(*bounds) for name, bounds in ANIMATOR_RANGES.items()}
        out["constant_noise"] = "true (one noise draw, the SDK default) or false (new per window)"
        out["noise_generator"] = "numpy (portable, default) or curand (the SDK's cuRAND Philox; CuPy + GPU)"
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
                        f"noise_generator={value!r} is unknown", hint="use numpy or curand"
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
            "parameters": {i.name: DiffusionSettings(i, {**i.config, "input_strength": 1.0},
                                                     i.skin.config, i.tongue.config,
                                                     True, "numpy").to_dict()
                           for i in p.identities},  # fmt: skip
            "parameter_ranges": self.parameter_ranges(),
            "notes": (
                "--identity picks the face (default: the first); the network runs at "
                f"{info.fps} fps and other rates are interpolated before post-processing; "
                "input_strength is 1.0 as in the SDK's diffusion executor; noise is seeded by "
                "--seed (constant per run unless constant_noise=false)"
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
        mask = identity.skin.data.frontal_mask
        columns = (
            None
            if options.geometry or mask is None
            else (mask.astype(np.int64)[:, None] * 3 + np.arange(3)).reshape(-1)
        )
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
        total = sum(r.num_windows for r in runs) or 1
        done = 0
        for window in range(max((r.num_windows for r in runs), default=0)):
            if cancel is not None:
                cancel.check()
            live = [r for r in runs if window < r.num_windows]
            prediction, latents = self._infer(live, window, identity, shared_noise)
            for b, run in enumerate(live):
                run.latents = latents[:, :, b].copy()
                self._consume(run, window, prediction[b], columns)
            done += len(live)
            if progress is not None:
                progress(Progress(done / total, "Audio2Face-3D diffusion"))
        effective = settings.to_dict()
        effective["engine"] = self.engine.name
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

    def _infer(
        self, live: list[_TrackRun], window: int, identity: Identity, noise: NoiseSource
    ) -> tuple[np.ndarray, np.ndarray]:
        info = self.package.network_info
        start = self.window_start(window)
        # emotion targets of the centre frames on the network-fps grid (negative before 0)
        targets = (self.window_frames(window) * info.buffer_len) // info.frames
        one_hot = np.zeros(len(info.identities), np.float32)
        one_hot[identity.index] = 1.0
        rows = len(live)
        feeds_all = {
            "window": np.stack([_window(r.audio.samples, start, info.buffer_len) for r in live]),
            "identity": np.broadcast_to(one_hot, (rows, len(one_hot))).copy(),
            "emotion": np.stack([r.curve.sample(targets) for r in live]).astype(np.float32),
            "input_latents": np.ascontiguousarray(np.stack([r.latents for r in live], axis=2)),
        }
        if self.engine.name == "torch":
            return self._infer_on_device(feeds_all, noise, window)
        draw = noise.window(window)
        feeds_all["noise"] = np.broadcast_to(draw, (rows, *draw.shape))
        limit = self.engine.max_batch or rows
        predictions, latents = [], []
        for lo in range(0, rows, limit):
            part = slice(lo, min(lo + limit, rows))
            feeds = {k: np.ascontiguousarray(v[:, :, part] if k == "input_latents" else v[part])
                     for k, v in feeds_all.items()}  # fmt: skip
            out = self.engine.run(feeds)
            predictions.append(out["prediction"])
            latents.append(out["output_latents"])
        return np.concatenate(predictions), np.concatenate(latents, axis=2)

    def _infer_on_device(
        self, feeds: dict[str, np.ndarray], noise: NoiseSource, window: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The torch engine without host copies of the noise: every track of a window shares one
        draw (64 MB at v3.0 size), uploaded once (once per run when constant) and broadcast over
        the batch on the device; only the centre frames come back to the host."""
        engine: Any = self.engine
        torch = engine.torch
        key = (*noise.key, None if noise.constant else window)
        if self._device_noise is None or self._device_noise[0] != key:
            self._device_noise = (key, noise.device_window(window, torch, engine.device))
        rows = len(feeds["window"])
        shared = self._device_noise[1]
        tensors = {name: torch.from_numpy(np.ascontiguousarray(value)).to(engine.device)
                   for name, value in feeds.items()}  # fmt: skip
        tensors["noise"] = shared.unsqueeze(0).expand(rows, *shared.shape)
        outs = dict(zip(engine.graph.output_names,
                        engine.run_device([tensors[n] for n in engine.graph.input_names]),
                        strict=True))  # fmt: skip
        info = self.package.network_info
        centre = slice(info.left_truncate, info.left_truncate + info.center_frames)
        prediction = np.zeros((rows, info.frames, info.output_size), np.float32)
        prediction[:, centre] = outs["prediction"][:, centre].float().cpu().numpy()
        return prediction, outs["output_latents"].float().cpu().numpy()

    def _consume(
        self, run: _TrackRun, window: int, prediction: np.ndarray, columns: np.ndarray | None
    ) -> None:
        """Keep the centre frames of one window that land inside the clip; post-process the
        output frames they complete."""
        info = self.package.network_info
        frames = self.window_frames(window)
        keep = (frames >= 0) & (frames < run.net_count)
        if not keep.any():
            return
        centre = prediction[info.left_truncate : info.left_truncate + info.center_frames]
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
            run.audio, options, fps, model=f"{self.name} ({identity.name})",
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


def _window(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    """``samples[start : start + length]``, zero outside the clip (input strength 1.0)."""
    out = np.zeros(length, np.float32)
    lo, hi = max(start, 0), min(start + length, len(samples))
    if hi > lo:
        out[lo - start : hi - start] = samples[lo:hi]
    return out


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
