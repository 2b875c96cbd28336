"""Audio2Face-3D v2.x regression models (Mark, Claire, James) on the CPU, as the SDK runs them.

Per frame and track (SDK spec §4): audio window x ``input_strength`` and the 26-value emotion
(implicit DB row + 10 explicit) -> network -> skin/tongue PCA decode -> skin post-process ->
tongue offsets -> jaw Kabsch -> eyes + saccades -> blendshape solves (skin 52, tongue 16).

The SDK runs one inference per frame with all tracks in the batch (spec §6). Here each network
call holds a fixed number of consecutive frames of every track (padded with silent rows), so the
rows a track gets do not depend on which other tracks share the batch; every stage after the
network runs per track, in frame order, with its own state (filters, saccade clock, solver).

When the network runs on a CUDA device (the torch engine there, or TensorRT), the stages after it
run there too, batched over tracks (:mod:`.postprocess_gpu`): PCA decode, skin/tongue
post-process, jaw, eyes and both solves with the SDK's GPU solver (ADMM, close to but not equal
to the CPU's BVLS). ``postprocess`` chooses: "auto" (that rule), "numpy" (always the CPU stages
below) or a torch device ("cuda", "cuda:1", "cpu").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import Audio
from .backends import EngineSettings, InferenceEngine, regression_io
from .blendshapes import BlendshapeSolver, frontal_columns
from .emotion import explicit_emotion_curve
from .errors import ParameterError
from .jobs import CancelToken, Progress, ProgressCallback
from .model_package import (
    ANIMATOR_RANGES,
    BlendshapeConfig,
    RegressionPackage,
    load_regression_package,
    range_text,
    validate_animator_config,
)
from .names import ARKIT_52, TONGUE_16
from .options import InferenceOptions
from .postprocess import (
    EyesAnimator,
    SkinAnimator,
    frame_dt,
    pca_decode,
)
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
from .track_frames import TrackFrames
from .windows import audio_windows, frame_plan

if TYPE_CHECKING:
    from .regression_stream import RegressionStream

log = logging.getLogger("a2x_core")

#: Frames of one track per network call (see the module docstring).
FRAMES_PER_CALL = 16
#: Network rows (tracks x frames) per call on the device path; frames per track per call are
#: this over the track count, between :data:`FRAMES_PER_CALL` and :data:`DEVICE_MAX_FRAMES`.
DEVICE_ROWS_PER_CALL = 16384
DEVICE_MAX_FRAMES = 256
#: Largest batch the pipeline asks a TensorRT engine's profile for (tracks x frames per call,
#: rounded up to a power of two); larger calls are split.
TRT_MAX_BATCH = 256
#: Padded samples of all tracks kept on the device for windowing there (above: host windows).
DEVICE_AUDIO_BYTES = 4 << 30

#: Parameter names: model_config.json keys as they are; blendshape-config keys prefixed by the
#: solver, e.g. ``skin.strengthL2regularization``; per-pose arrays as a full list, a
#: ``{pose: value}`` dict, or one pose at a time: ``tongue.bsWeightMultipliers.tongueUp``
#: (:mod:`.solver_settings`).


@dataclass(frozen=True)
class Settings:
    """Effective parameters of one run: model defaults merged with overrides, all validated."""

    animator: dict[str, Any]
    skin: BlendshapeConfig
    tongue: BlendshapeConfig
    implicit_emotion: np.ndarray  # float32 [16]

    def to_dict(self, pose_names: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
        """JSON-ready effective values, in the override naming."""
        out: dict[str, Any] = dict(self.animator)
        out.update(solver_values(self.skin, "skin", pose_names["skin"]))
        out.update(solver_values(self.tongue, "tongue", pose_names["tongue"]))
        return out


class RegressionModel:
    """An Audio2Face-3D regression model folder loaded for inference (``AnimationModel``)."""

    kind = "regression"

    def __init__(self, package: RegressionPackage, engine: InferenceEngine) -> None:
        self.package = package
        self.engine = engine
        info = package.network_info
        self.name = info.actor
        self.version = info.version or "2.3"
        self.emotion_names: tuple[str, ...] = info.explicit_emotions
        self._skin_columns = pose_index(
            package.skin.data.pose_names, ARKIT_52, package.skin.data_path, "ARKit-52 skin"
        )
        self._tongue_columns = pose_index(
            package.tongue.data.pose_names, TONGUE_16, package.tongue.data_path, "tongue"
        )
        data = package.model_data
        self._skin_basis = data.shapes_matrix_skin.reshape(info.num_shapes_skin, -1)
        self._tongue_basis = data.shapes_matrix_tongue.reshape(info.num_shapes_tongue, -1)
        # xyz columns the skin solver reads; without --geometry only these are computed
        self._mask_columns = frontal_columns(package.skin.data)
        self._masked_basis: np.ndarray | None = None
        #: Consecutive frames of each track per network call; 1 = the SDK's one inference per
        #: frame. Results differ from 1 only by float32 rounding inside the engine's kernels.
        self.frames_per_call = FRAMES_PER_CALL
        #: The same on the device path (None: from :data:`DEVICE_ROWS_PER_CALL`).
        self.device_frames_per_call: int | None = None
        #: Where the stages after the network run: "auto", "numpy" or a torch device string.
        self.postprocess = "auto"
        #: Device path with the torch engine on CUDA: run the network through ``torch.compile``
        #: (:class:`.postprocess_gpu.CompiledNetwork`; seconds to compile at the first run).
        self.compile_network = False
        self._device_cache: dict[Any, Any] = {}  # device copies of the PCA bases

    @classmethod
    def load(
        cls,
        model_json: str | Path,
        engine: EngineSettings | None = None,
        *,
        postprocess: str = "auto",
        compile_network: bool = False,
    ) -> RegressionModel:
        """Load and validate a model folder and create its inference engine.

        ``engine``: which engine, where and how (default: auto, all cores, fp32);
        ``postprocess``: where the stages after the network run (see the module docstring);
        ``compile_network``: see :attr:`compile_network`.

        Raises:
            ModelError, ModelPackageError: the folder is incomplete or inconsistent.
            EngineError: the backend is unavailable or the network does not match.
        """
        package = load_regression_package(model_json)
        info = package.network_info
        inputs, outputs = regression_io(info.buffer_len, info.emotion_size, info.result_size)
        model = cls(package, (engine or EngineSettings()).create(package.onnx_path, inputs, outputs))
        model.postprocess = postprocess
        model.compile_network = bool(compile_network)
        model.postprocess_device()  # validate the choice now
        return model

    # ------------------------------------------------------------------------- parameters

    def parameter_ranges(self) -> dict[str, str]:
        """Every overridable parameter name -> its accepted values (for ``a2x info``)."""
        out = {name: range_text(*bounds) for name, bounds in ANIMATOR_RANGES.items()}
        out["source_shot"] = (
            f"one of {len(self.package.emotion_db.shots)} shots of implicit_emo_db.npz"
        )
        out["source_frame"] = "integer frame inside source_shot"
        out.update(solver_parameter_ranges())
        return out

    def settings(self, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Model defaults merged with ``overrides`` and validated as the SDK's setters do.

        Raises:
            ParameterError: unknown name (listing the valid ones), bad type, out of range, NaN.
        """
        package = self.package
        animator = dict(package.config)
        solver_over: dict[str, dict[str, Any]] = {s: {} for s in SOLVERS}
        for key, value in (overrides or {}).items():
            if key in animator:
                animator[key] = value
                continue
            if is_solver_key(key):
                solver, _, rest = key.partition(".")
                solver_over[solver][rest] = value
                continue
            raise ParameterError(
                f"unknown parameter {key!r}",
                hint="valid parameters: " + ", ".join(self.parameter_ranges()),
            )
        animator = validate_animator_config(animator, error=ParameterError)
        implicit = package.emotion_db.row(animator["source_shot"], animator["source_frame"])
        skin = solver_config(package.skin, solver_over["skin"], "skin")
        tongue = solver_config(package.tongue, solver_over["tongue"], "tongue")
        return Settings(animator, skin, tongue, implicit)

    # ------------------------------------------------------------------------- info

    def info(self) -> dict[str, Any]:
        """Facts for ``a2x info``: files, sizes, engine, emotions and every parameter."""
        p = self.package
        info = p.network_info
        defaults = Settings(
            p.config, p.skin.config, p.tongue.config, np.zeros(info.implicit_emotion_len)
        ).to_dict({"skin": p.skin.data.pose_names, "tongue": p.tongue.data.pose_names})
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "model_json": str(p.model_json),
            "network": str(p.onnx_path),
            "engine": self.engine.describe(),
            "network_info": {
                "num_shapes_skin": info.num_shapes_skin,
                "num_shapes_tongue": info.num_shapes_tongue,
                "num_verts_skin": info.num_verts_skin,
                "num_verts_tongue": info.num_verts_tongue,
                "buffer_len": info.buffer_len,
                "buffer_ofs": info.buffer_ofs,
                "implicit_emotion_len": info.implicit_emotion_len,
            },
            "emotions": list(self.emotion_names),
            "default_emotion": info.default_emotion.tolist(),
            "emotion_shots": sorted(p.emotion_db.shots),
            "skin_poses": len(p.skin.data.pose_names),
            "tongue_poses": len(p.tongue.data.pose_names),
            "parameters": defaults,
            "parameter_ranges": self.parameter_ranges(),
            "parameter_naming": (
                "model_config.json keys as they are (input_strength, upper_face_smoothing, "
                "eye_saccade_seed, source_shot, ...); blendshape-config keys prefixed by "
                "'skin.' or 'tongue.' (skin.strengthL2regularization); per-pose arrays as a list, "
                "a {pose: value} object, or one pose: skin.bsWeightMultipliers.jawOpen=1.2"
            ),
            "notes": (
                "options.seed is not used: saccades follow eye_saccade_seed as in the SDK; "
                "emotion key times are seconds of the source audio file"
            ),
            "outputs": "weights [frames, 52] ARKit, tongue_weights [frames, 16], jaw_transforms "
            "[frames, 4, 4] (M[:3, 3] = translation; the SDK's flat 16 are column-major), "
            "eye_rotations [frames, 6] (right x, y, 0, left x, y, 0), emotions [frames, 10]",
        }

    # ------------------------------------------------------------------------- animate

    def _skin_basis_for(self, columns: np.ndarray | None) -> np.ndarray:
        if columns is None:
            return self._skin_basis
        if self._masked_basis is None:
            self._masked_basis = np.ascontiguousarray(self._skin_basis[:, columns])
        return self._masked_basis

    def _track_stages(
        self,
        settings: Settings,
        dt: np.float32,
        skin_solver: BlendshapeSolver,
        tongue_solver: BlendshapeSolver,
        geometry: bool,
    ) -> tuple[TrackFrames, np.ndarray]:
        """The post-network stages of one track (fresh state) and the skin PCA basis they
        decode with (only the solver's columns unless ``geometry``); shared by the offline run
        and :class:`.regression_stream.RegressionStream` so that both compute the same frames."""
        data = self.package.model_data
        params = settings.animator
        columns = None if geometry else self._mask_columns
        skin_animator = SkinAnimator(
            params, data.shapes_mean_skin, data.eye_close_pose_delta, data.lip_open_pose_delta,
            dt, columns,
        )  # fmt: skip
        stages = TrackFrames(
            params, skin_animator, EyesAnimator(params, data.saccade_rot_matrix, dt), skin_solver,
            tongue_solver, data.shapes_mean_tongue, data.neutral_jaw, masked=columns is not None,
            keep_geometry=geometry,
        )  # fmt: skip
        return stages, self._skin_basis_for(columns)

    def _emotion_input(self, settings: Settings, explicit: np.ndarray) -> np.ndarray:
        """The network's ``[n, 26]`` emotion rows: the implicit DB row, then the explicit values."""
        info = self.package.network_info
        implicit = np.broadcast_to(
            settings.implicit_emotion, (len(explicit), info.implicit_emotion_len)
        )
        return np.concatenate([implicit, explicit], axis=1).astype(np.float32)

    def _add_outputs(self, frames: TrackFrames, out: np.ndarray, skin_basis: np.ndarray) -> None:
        """Split ``[n, result_size]`` network rows (skin PCA | tongue PCA | 15 jaw | 4 eyes),
        decode them and run them through one track's post-network stages, in frame order."""
        s_count = self.package.network_info.num_shapes_skin
        jaw_at = s_count + self.package.network_info.num_shapes_tongue
        frames.add(
            pca_decode(out[:, :s_count], skin_basis),
            pca_decode(out[:, s_count:jaw_at], self._tongue_basis),
            out[:, jaw_at : jaw_at + 15],
            out[:, jaw_at + 15 : jaw_at + 19],
        )

    def open_stream(self, options: InferenceOptions) -> RegressionStream:
        """A stream of pushed audio on this model: frames come out as soon as the network's
        look-ahead allows and equal :meth:`animate`'s frames of the whole clip
        (:mod:`.regression_stream`, ``docs/streaming.md``).

        Raises:
            ParameterError: bad ``options.parameters``/emotions, or an option a stream cannot
                honour (``geometry``).
        """
        from .regression_stream import RegressionStream

        return RegressionStream(self, options)

    def animate(
        self,
        tracks: Sequence[Audio],
        options: InferenceOptions,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> list[AnimationResult]:
        """Animate several tracks as one batch; each result equals its one-track run."""
        settings = self.settings(options.parameters)
        info = self.package.network_info
        params = settings.animator
        fps = Fraction(options.fps)
        dt = frame_dt(fps.numerator, fps.denominator)
        skin_solver = BlendshapeSolver(self.package.skin.data, settings.skin)
        tongue_solver = BlendshapeSolver(self.package.tongue.data, settings.tongue)
        stages, skin_basis = self._track_stages(
            settings, dt, skin_solver, tongue_solver, options.geometry
        )

        runs = []
        for audio in tracks:
            targets = frame_plan(len(audio.samples), fps)
            curve = explicit_emotion_curve(
                options.emotions, self.emotion_names, info.default_emotion, start_s=audio.start_s
            )
            explicit = curve.sample(targets)
            runs.append(
                _TrackRun(
                    audio=audio,
                    targets=targets,
                    emotion_in=self._emotion_input(settings, explicit),
                    explicit=explicit,
                    frames=fresh(stages),
                )
            )
        device = self.postprocess_device()
        if device is not None:
            self._animate_device(device, runs, settings, dt, skin_solver, tongue_solver,
                                 options.geometry, progress, cancel)  # fmt: skip
            return self._results(runs, options, fps, settings, device)
        total = sum(len(r.targets) for r in runs) or 1
        done = 0
        step = max(1, int(self.frames_per_call))
        self._reserve_batch(len(runs) * step)
        num_chunks = max((len(r.targets) + step - 1) // step for r in runs) if runs else 0
        for chunk in range(num_chunks):
            if cancel is not None:
                cancel.check()
            live = [r for r in runs if chunk * step < len(r.targets)]
            audio_rows = np.zeros((len(live) * step, 1, info.buffer_len), dtype=np.float32)
            emotion_rows = np.zeros((len(live) * step, 1, info.emotion_size), dtype=np.float32)
            spans = []
            for k, run in enumerate(live):
                sl = slice(chunk * step, min((chunk + 1) * step, len(run.targets)))
                n = sl.stop - sl.start
                audio_rows[k * step : k * step + n, 0] = audio_windows(
                    run.audio.samples, run.targets[sl], info.buffer_len, info.buffer_ofs,
                    params["input_strength"],
                )  # fmt: skip
                emotion_rows[k * step : k * step + n, 0] = run.emotion_in[sl]
                spans.append(n)
            result = self._infer(audio_rows, emotion_rows)
            for k, (run, n) in enumerate(zip(live, spans, strict=True)):
                self._add_outputs(run.frames, result[k * step : k * step + n, 0], skin_basis)
                done += n
            if progress is not None:
                progress(Progress(done / total, "Audio2Face-3D inference"))
        return self._results(runs, options, fps, settings, None)

    def _results(
        self,
        runs: list[_TrackRun],
        options: InferenceOptions,
        fps: Fraction,
        settings: Settings,
        device: str | None,
    ) -> list[AnimationResult]:
        effective = settings.to_dict(
            {
                "skin": self.package.skin.data.pose_names,
                "tongue": self.package.tongue.data.pose_names,
            }
        )
        effective["engine"] = self.engine.name  # which backend ran ("auto" resolves here)
        # where the stages after the network ran, and which solver (BVLS on the CPU, ADMM there)
        effective["postprocess"] = device or "numpy"
        return [self._result(run, options, fps, effective) for run in runs]

    # ------------------------------------------------------------------------- device path

    def postprocess_device(self) -> str | None:
        """The torch device the stages after the network run on, or None for the NumPy stages.

        Raises:
            ParameterError: ``postprocess`` is not one of :data:`.postprocess_gpu.POSTPROCESS_CHOICES`.
        """
        from .postprocess_gpu import postprocess_choice

        caps = self.engine.capabilities
        auto = None
        if caps.on_cuda:
            # a host-array engine on the GPU (TensorRT) needs torch to see CUDA for the stages
            from .backends.torch_engine import cuda_available

            if caps.device_tensors or cuda_available():
                auto = caps.device
        return postprocess_choice(self.postprocess, auto)

    def _reserve_batch(self, rows: int) -> None:
        """Let an engine with a build-time batch limit (TensorRT's profile) hold ``rows`` rows
        (capped at :data:`TRT_MAX_BATCH`) in one call, as the SDK sizes its engine for the
        number of tracks."""
        if rows > 0:
            self.engine.ensure_max_batch(min(TRT_MAX_BATCH, 1 << (int(rows) - 1).bit_length()))

    def _animate_device(
        self,
        device: str,
        runs: list[_TrackRun],
        settings: Settings,
        dt: np.float32,
        skin_solver: BlendshapeSolver,
        tongue_solver: BlendshapeSolver,
        geometry: bool,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> None:
        """Every track at once on ``device`` (:mod:`.postprocess_gpu`); fills the runs."""
        from .postprocess_gpu import CompiledNetwork, DeviceInputs, DevicePipeline, same_device

        info = self.package.network_info
        params = settings.animator
        lengths = np.array([len(r.targets) for r in runs], dtype=np.int64)
        longest = int(lengths.max()) if len(runs) else 0
        step = self.device_frames_per_call or min(
            DEVICE_MAX_FRAMES, max(FRAMES_PER_CALL, DEVICE_ROWS_PER_CALL // max(1, len(runs)))
        )
        step = max(1, int(step))
        pipe = DevicePipeline(
            device, params, self.package.model_data, self._skin_basis, self._tongue_basis,
            skin_solver, tongue_solver, dt, lengths, geometry=geometry, cache=self._device_cache,
        )  # fmt: skip
        torch = pipe.torch
        engine = self.engine
        caps = engine.capabilities
        on_device = caps.device_tensors and same_device(torch, caps.device, pipe.device)
        samples = [r.audio.samples for r in runs]
        feeder = None
        if on_device and DeviceInputs.nbytes(samples, info.buffer_len, info.buffer_ofs) <= (
            DEVICE_AUDIO_BYTES
        ):
            feeder = DeviceInputs(
                device, samples, [r.targets for r in runs], [r.emotion_in for r in runs],
                info.buffer_len, info.buffer_ofs, params["input_strength"], longest,
            )  # fmt: skip
        else:
            self._reserve_batch(len(runs) * step)
        names = caps.device_inputs
        network: Any = engine
        if on_device and self.compile_network and pipe.device.type == "cuda":
            key = ("compiled", id(engine))
            if key not in self._device_cache:
                self._device_cache[key] = CompiledNetwork(engine)
            network = self._device_cache[key]
        total = int(lengths.sum()) or 1
        done = 0
        for start in range(0, longest, step):
            if cancel is not None:
                cancel.check()
            live_np = np.flatnonzero(lengths > start)
            n = min(step, int(lengths[live_np].max()) - start)
            everyone = len(live_np) == len(runs)
            live = None if everyone else torch.as_tensor(live_np, device=pipe.device)
            if feeder is not None:
                audio_rows, emotion_rows = feeder.rows(live, start, n)
                feeds = {"input": audio_rows, "emotion": emotion_rows}
                result = network.run_device([feeds[name] for name in names])[0]
            else:
                audio_np, emotion_np = self._host_rows([runs[k] for k in live_np], start, n,
                                                       params["input_strength"])  # fmt: skip
                if on_device:
                    feeds = {"input": torch.from_numpy(audio_np).to(pipe.device),
                             "emotion": torch.from_numpy(emotion_np).to(pipe.device)}  # fmt: skip
                    result = network.run_device([feeds[name] for name in names])[0]
                else:
                    result = torch.from_numpy(self._infer(audio_np, emotion_np))
            pipe.step(result.reshape(len(live_np), n, -1), live, start)
            done += int(np.minimum(lengths[live_np] - start, n).sum())
            if progress is not None:
                progress(Progress(done / total, "Audio2Face-3D inference"))
        for run, out in zip(runs, pipe.finish(), strict=True):
            frames = run.frames
            frames.skin_w, frames.tongue_w = [out["skin"]], [out["tongue"]]
            frames.jaw, frames.eye = [out["jaw"]], [out["eyes"]]
            if geometry:
                frames.skin_geo = [out["skin_geometry"]]
                frames.tongue_geo = [out["tongue_geometry"]]

    def _host_rows(
        self, runs: Sequence[_TrackRun], start: int, frames: int, strength: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs of frames ``start ..`` of ``runs`` built on the host (zero rows past
        a track's end), ``frames`` rows per track."""
        info = self.package.network_info
        audio_rows = np.zeros((len(runs) * frames, 1, info.buffer_len), dtype=np.float32)
        emotion_rows = np.zeros((len(runs) * frames, 1, info.emotion_size), dtype=np.float32)
        for k, run in enumerate(runs):
            sl = slice(start, min(start + frames, len(run.targets)))
            n = sl.stop - sl.start
            audio_rows[k * frames : k * frames + n, 0] = audio_windows(
                run.audio.samples, run.targets[sl], info.buffer_len, info.buffer_ofs, strength
            )
            emotion_rows[k * frames : k * frames + n, 0] = run.emotion_in[sl]
        return audio_rows, emotion_rows

    def _infer(self, audio_rows: np.ndarray, emotion_rows: np.ndarray) -> np.ndarray:
        limit = self.engine.max_batch or len(audio_rows)
        parts = []
        for start in range(0, len(audio_rows), limit):
            feeds = {
                "input": audio_rows[start : start + limit],
                "emotion": emotion_rows[start : start + limit],
            }
            parts.append(self.engine.run(feeds)["result"])
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _result(
        self, run: _TrackRun, options: InferenceOptions, fps: Fraction, effective: dict[str, Any]
    ) -> AnimationResult:
        return run.frames.result(
            run.audio, options, fps, model=self.name, version=self.version,
            parameters=effective, skin_columns=self._skin_columns,
            tongue_columns=self._tongue_columns, emotions=run.explicit,
            emotion_names=self.emotion_names,
        )  # fmt: skip


@dataclass
class _TrackRun:
    """One track's inputs, per-track stage state, and collected outputs."""

    audio: Audio
    targets: np.ndarray
    emotion_in: np.ndarray
    explicit: np.ndarray
    frames: TrackFrames  # post-network stages and outputs
