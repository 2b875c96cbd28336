"""Audio2Face-3D v2.x regression models (Mark, Claire, James) on the CPU, as the SDK runs them.

Per frame and track (SDK spec §4): audio window x ``input_strength`` and the 26-value emotion
(implicit DB row + 10 explicit) -> network -> skin/tongue PCA decode -> skin post-process ->
tongue offsets -> jaw Kabsch -> eyes + saccades -> blendshape solves (skin 52, tongue 16).

The SDK runs one inference per frame with all tracks in the batch (spec §6). Here each network
call holds a fixed number of consecutive frames of every track (padded with silent rows), so the
rows a track gets do not depend on which other tracks share the batch; every stage after the
network runs per track, in frame order, with its own state (filters, saccade clock, solver).

When the network runs on a CUDA device (the torch engine there, or TensorRT), the stages after it
run there too, batched over tracks (:mod:`a2x_core.postprocess.gpu`): PCA decode, skin/tongue
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
from typing import Any

import numpy as np

from ..audio.accumulator import AudioAccumulator, StreamFrame, stream_frames
from ..audio.decode import Audio
from ..audio.windows import audio_windows
from ..backends import EngineSettings, InferenceEngine, regression_io
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
from ..executor.loop import (
    ChainStep,
    Executor,
    Span,
    Track,
    block_frames,
    drain,
    offline_progress,
    row_index,
)
from ..executor.stream import Stream, face_stream_executor
from ..jobs import CancelToken, ProgressCallback
from ..names import ARKIT_52, TONGUE_16
from ..options import EmotionKey, InferenceOptions
from ..postprocess.chain import DeviceChain, FrameBlock, HostChain, PostChain, RowSplit
from ..postprocess.cpu import EyesAnimator, FoldedProjection, SkinAnimator, frame_dt
from ..postprocess.track_frames import TrackFrames
from ..result import AnimationResult
from ..timing import frame_targets_of, num_frames_for
from .emotion_input import EmotionCurve, explicit_emotion_curve, track_emotion_keys
from .regression_folder import (
    ANIMATOR_RANGES,
    BlendshapeConfig,
    RegressionPackage,
    load_regression_package,
    range_text,
    validate_animator_config,
)

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
#: (:mod:`a2x_core.blendshapes.settings`).


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
        self._folds: dict[Any, FoldedProjection] = {}  # see _folded
        #: Consecutive frames of each track per network call; 1 = the SDK's one inference per
        #: frame. Results differ from 1 only by float32 rounding inside the engine's kernels.
        self.frames_per_call = FRAMES_PER_CALL
        #: The same on the device path (None: from :data:`DEVICE_ROWS_PER_CALL`).
        self.device_frames_per_call: int | None = None
        #: Where the stages after the network run: "auto", "numpy" or a torch device string.
        self.postprocess = "auto"
        #: Device path with the torch engine on CUDA: run the network through ``torch.compile``
        #: (:class:`a2x_core.postprocess.gpu.CompiledNetwork`; seconds to compile at the first run).
        self.compile_network = False
        #: Rows of one compiled network pass (every call runs as such passes, the last padded:
        #: a row's result never depends on its batch). 256 suits offline runs; a stream bank of
        #: ~1000 streams ticks ~1000 rows, which one 1024-row pass runs ~9 % faster on an H200
        #: than four 256-row passes (docs/benchmarks.md, "Streaming"). Set before the first run.
        self.compile_rows = 256
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

    def _folded(
        self,
        params: Mapping[str, Any],
        skin_animator: SkinAnimator,
        skin_solver: BlendshapeSolver,
        tongue_solver: BlendshapeSolver,
        geometry: bool,
    ) -> FoldedProjection:
        """The solves' projections folded from the coefficients, cached per parameters, frame
        rate (the filters) and active poses (a fold reads the masked basis once: ~50 ms for
        Mark); with or without ``geometry`` (the full or the masked ``skin_animator``) the
        matrices are the same."""
        key = (repr(sorted(params.items())), float(skin_animator.upper_alpha),
               float(skin_animator.lower_alpha), skin_solver.active.tobytes(),
               tongue_solver.active.tobytes())  # fmt: skip
        if key not in self._folds:
            if len(self._folds) >= 8:
                self._folds.pop(next(iter(self._folds)))
            self._folds[key] = FoldedProjection(
                skin_animator, self._mask_columns if geometry else None,
                self._skin_basis_for(self._mask_columns), skin_solver, self._tongue_basis,
                self.package.model_data.shapes_mean_tongue, params, tongue_solver,
            )  # fmt: skip
        return self._folds[key]

    def _track_stages(
        self,
        settings: Settings,
        dt: np.float32,
        skin_solver: BlendshapeSolver,
        tongue_solver: BlendshapeSolver,
        geometry: bool,
    ) -> TrackFrames:
        """The post-network stages of one track (fresh state): the solves read projections
        folded from the PCA coefficients, decoded only for ``geometry``; shared by the offline
        run and the streams (:mod:`a2x_core.executor.stream`) so that both compute the same
        frames."""
        data = self.package.model_data
        params = settings.animator
        columns = None if geometry else self._mask_columns
        skin_animator = SkinAnimator(
            params, data.shapes_mean_skin, data.eye_close_pose_delta, data.lip_open_pose_delta,
            dt, columns,
        )  # fmt: skip
        folded = self._folded(params, skin_animator, skin_solver, tongue_solver, geometry)
        return TrackFrames(
            params, skin_animator, EyesAnimator(params, data.saccade_rot_matrix, dt), skin_solver,
            tongue_solver, data.shapes_mean_tongue, data.neutral_jaw, masked=columns is not None,
            keep_geometry=geometry, folded=folded,
            bases=(self._skin_basis, self._tongue_basis),
        )  # fmt: skip

    def _infer_on(self, device: Any, audio: Any, emotion: Any, on_device: bool) -> Any:
        """The network's output rows as a torch tensor on ``device``: fed as tensors there
        when the engine takes device tensors on it (``on_device``; the compiled network where
        asked), else through the engine's host call. ``audio``/``emotion``: host arrays or
        tensors."""
        from ..backends.torch_engine import import_torch

        torch = import_torch()
        if on_device:
            names = self.engine.capabilities.device_inputs
            feeds = {"input": torch.as_tensor(audio, device=device),
                     "emotion": torch.as_tensor(emotion, device=device)}  # fmt: skip
            return self._device_network(device).run_device([feeds[n] for n in names])[0]
        host = [x if isinstance(x, np.ndarray) else x.cpu().numpy() for x in (audio, emotion)]
        return torch.from_numpy(self._infer(*host)).to(device)

    def _emotion_input(self, settings: Settings, explicit: np.ndarray) -> np.ndarray:
        """The network's ``[n, 26]`` emotion rows: the implicit DB row, then the explicit values."""
        info = self.package.network_info
        implicit = np.broadcast_to(
            settings.implicit_emotion, (len(explicit), info.implicit_emotion_len)
        )
        return np.concatenate([implicit, explicit], axis=1).astype(np.float32)

    def quantize_int8(self, speech: Audio, options: InferenceOptions | None = None,
                      windows: int = 32) -> None:  # fmt: skip
        """Explicit reduced precision, ONNX Runtime only (never a default): from now on run an
        int8 copy of the network, its activation ranges calibrated on up to ``windows``
        windows of ``speech`` (real speech like the audio to come) with ``options``' emotion
        row (:func:`.backends.onnxruntime.quantize_int8`). About half the CPU per frame of
        fp32 on an AVX-512 VNNI CPU; the results change (measured on the benchmark network:
        outputs ~1 % of their range; docs/benchmarks.md): check them on your model first.

        Raises:
            ParameterError: the engine is not ONNX Runtime, or ``speech`` is shorter than one
                window.
        """
        from ..backends.onnxruntime import OnnxRuntimeEngine

        engine = self.engine
        if not isinstance(engine, OnnxRuntimeEngine):
            raise ParameterError("int8 runs on the ONNX Runtime engine only",
                                 hint="load the model with backend='onnxruntime'")  # fmt: skip
        info = self.package.network_info
        length = int(info.buffer_len)
        samples = np.asarray(speech.samples, np.float32)
        if len(samples) < length:
            raise ParameterError(f"int8 calibration speech is shorter than one window "
                                 f"({length / 16000:.2f} s)", hint="give a few seconds of speech")  # fmt: skip
        settings = self.settings((options or InferenceOptions()).parameters)
        strength = np.float32(settings.animator["input_strength"])
        emotion = self._emotion_input(settings, info.default_emotion[None].astype(np.float32))
        starts = np.linspace(0, len(samples) - length, max(1, int(windows))).astype(int)
        feeds = [{"input": (strength * samples[a : a + length])[None, None],
                  "emotion": emotion[None]} for a in np.unique(starts)]  # fmt: skip
        self.engine = OnnxRuntimeEngine(engine.path, engine.inputs, engine.outputs,
                                        threads=engine.threads, int8_calibration=feeds)  # fmt: skip

    def _prepare(self, options: InferenceOptions) -> _Run:
        """The settings, solvers and prepared post-network stages of one run of ``options``."""
        settings = self.settings(options.parameters)
        fps = Fraction(options.fps)
        dt = frame_dt(fps.numerator, fps.denominator)
        skin_solver = BlendshapeSolver(self.package.skin.data, settings.skin)
        tongue_solver = BlendshapeSolver(self.package.tongue.data, settings.tongue)
        stages = self._track_stages(settings, dt, skin_solver, tongue_solver, options.geometry)
        return _Run(options, settings, fps, dt, stages)

    def _open_track(
        self, executor: Executor, audio: AudioAccumulator, run: _Run, chain: PostChain,
        start_s: float, emotions: Sequence[EmotionKey],
    ) -> Track:  # fmt: skip
        """A track of ``run`` in ``executor`` with the explicit emotions of ``emotions`` (keys
        in seconds of the source file); its frames go to ``chain``."""
        info = self.package.network_info
        curve = explicit_emotion_curve(emotions, self.emotion_names, info.default_emotion,
                                       start_s=start_s)  # fmt: skip
        state = _TrackState(run, curve, len(executor.tracks), len(self.emotion_names))
        return executor.add(Track(audio, state, chain, chain.open_slot(run.stages)))

    def open_stream(
        self, options: InferenceOptions, executor: Executor | None = None
    ) -> Stream[StreamFrame]:
        """A stream of pushed audio on this model: frames come out as soon as the network's
        look-ahead allows and equal :meth:`animate`'s frames of the whole clip
        (``docs/streaming.md``). Streams opened on one ``executor`` (:meth:`stream_executor`)
        share its network calls.

        Raises:
            ParameterError: bad ``options.parameters``/emotions, or an option a stream cannot
                honour (``geometry``).
        """
        executor = face_stream_executor(self, options, executor, RegressionStep)
        step = executor.step
        # streams of the same settings and rate share one run and one chain (its solver; on a
        # device, its batched state); emotion keys stay per stream
        key = ("regression", Fraction(options.fps), repr(sorted((options.parameters or {}).items())))
        if key not in executor.shared:
            run = self._prepare(options)
            executor.shared[key] = (run, self._stream_chain(run, step.device))
        run, chain = executor.shared[key]
        info = self.package.network_info
        track = self._open_track(executor, AudioAccumulator(), run, chain, 0.0, options.emotions)
        self._reserve_batch(max(1, int(self.frames_per_call)))  # TensorRT: one call's rows
        return Stream(executor, track, self._stream_frames, info.buffer_len - info.buffer_ofs)

    def stream_audio_for_emotions(self, last_key: int) -> int:
        """How many samples a stream may hold when its emotion keys reach sample ``last_key``:
        a frame is computed once its look-ahead has arrived, so no frame past the keys runs
        (:class:`a2x_core.executor.emotion_stream.EmotionDrivenStream` holds the rest back)."""
        info = self.package.network_info
        return last_key + info.buffer_len - info.buffer_ofs

    def stream_executor(self) -> Executor:
        """An executor for streams of this model; streams opened on the same executor share
        network calls (one call per :meth:`a2x_core.executor.loop.Executor.run_ready` round across every
        stream with ready frames). The stages after the network run where :attr:`postprocess`
        says (:meth:`postprocess_device`): NumPy per stream, or batched on a torch device."""
        step = RegressionStep(self, None, int(self.frames_per_call), pad=False)
        step.device = self.postprocess_device()
        if step.device is not None:
            step.prepare_stream_device()
        return Executor(step)

    def _stream_chain(self, run: _Run, device: str | None) -> PostChain:
        """The chain the streams of ``run`` share: NumPy stages per stream, or one growable
        :class:`a2x_core.postprocess.gpu.DevicePipeline` batched over them."""
        if device is None:
            return HostChain(self._split_for())
        return DeviceChain(self._device_pipeline(run, device), streaming=True)

    def _device_pipeline(self, run: _Run, device: str, lengths: Any = None) -> Any:
        """The stages after the network of ``run`` on ``device``, batched over tracks: for the
        clips of an offline run (their frame counts ``lengths``), or growable for streams."""
        from ..postprocess.gpu import DevicePipeline

        stages = run.stages
        return DevicePipeline(
            device, run.settings.animator, self.package.model_data, self._skin_basis,
            self._tongue_basis, stages.skin_solver, stages.tongue_solver, run.dt, lengths,
            geometry=run.options.geometry, cache=self._device_cache,
        )  # fmt: skip

    def stream_bank(self, options: InferenceOptions, *, max_push: int = 16000) -> Any:
        """Many streams with the same ``options``, pushed together as arrays and run as one
        batch on the torch device of :attr:`postprocess` (:mod:`a2x_core.executor.stream_bank`: a server's
        tick loop for hundreds of streams).

        Raises:
            ParameterError: the stages run with NumPy (no torch device), or bad options.
        """
        from ..executor.stream_bank import RegressionStreamBank

        return RegressionStreamBank(self, options, max_push=max_push)

    def _stream_frames(self, track: Track, block: FrameBlock, first: int) -> list[StreamFrame]:
        state: _TrackState = track.state
        explicit = state.take_explicit(block_frames(block))
        return stream_frames(block, first, state.run.fps, self._skin_columns,
                             self._tongue_columns, explicit)  # fmt: skip

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

        ``track_emotions``: each track's own emotion keys (seconds of the source file), in place
        of ``options.emotions`` (an emotion model's detected emotions per clip); None = the
        options' keys for every track.

        Raises:
            ParameterError: bad options, or ``track_emotions`` not one key sequence per track.
        """
        emotions = track_emotion_keys(track_emotions, options.emotions, len(tracks))
        run = self._prepare(options)
        device = self.postprocess_device()
        if device is None:
            step = RegressionStep(self, None, int(self.frames_per_call))
            chain: PostChain = HostChain(self._split_for())
            self._reserve_batch(len(tracks) * step.units_per_call)
        else:
            step, chain = self._device_step(device, run, tracks)
        executor = Executor(step)
        opened = [self._open_track(executor, AudioAccumulator.whole(audio.samples), run, chain,
                                   audio.start_s, keys)
                  for audio, keys in zip(tracks, emotions, strict=True)]  # fmt: skip
        if device is not None:
            step.prepare_device_inputs(executor.tracks)
        total = sum(step.ready_units(t) for t in opened)
        executor.run_ready(cancel, offline_progress(progress, total, "Audio2Face-3D inference"))
        effective = run.settings.to_dict(
            {
                "skin": self.package.skin.data.pose_names,
                "tongue": self.package.tongue.data.pose_names,
            }
        )
        effective["engine"] = self.engine.name  # which backend ran ("auto" resolves here)
        # where the stages after the network ran, and which solver (BVLS on the CPU, ADMM there)
        effective["postprocess"] = device or "numpy"
        return [
            run.stages.result(
                drain(track), audio, options, run.fps, model=self.name, version=self.version,
                parameters=effective, skin_columns=self._skin_columns,
                tongue_columns=self._tongue_columns, emotions=track.state.take_explicit(),
                emotion_names=self.emotion_names,
            )  # fmt: skip
            for track, audio in zip(opened, tracks, strict=True)
        ]

    def _split_for(self) -> RowSplit:
        """Network rows ``[n, result_size]`` (skin PCA | tongue PCA | 15 jaw | 4 eyes) -> what
        the NumPy stages take: the coefficients themselves (their solves read folded
        projections, :class:`~a2x_core.postprocess.cpu.FoldedProjection`)."""
        info = self.package.network_info
        s_count = info.num_shapes_skin
        jaw_at = s_count + info.num_shapes_tongue

        def split(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            return (
                out[:, :s_count],
                out[:, s_count:jaw_at],
                out[:, jaw_at : jaw_at + 15],
                out[:, jaw_at + 15 : jaw_at + 19],
            )

        return split

    # ------------------------------------------------------------------------- device path

    def postprocess_device(self) -> str | None:
        """The torch device the stages after the network run on, or None for the NumPy stages.

        Raises:
            ParameterError: ``postprocess`` is not one of :data:`a2x_core.postprocess.gpu.POSTPROCESS_CHOICES`.
        """
        from ..postprocess.gpu import postprocess_choice

        caps = self.engine.capabilities
        auto = None
        if caps.on_cuda:
            # a host-array engine on the GPU (TensorRT) needs torch to see CUDA for the stages
            from ..backends.torch_engine import cuda_available

            if caps.device_tensors or cuda_available():
                auto = caps.device
        return postprocess_choice(self.postprocess, auto)

    def _reserve_batch(self, rows: int) -> None:
        """Let an engine with a build-time batch limit (TensorRT's profile) hold ``rows`` rows
        (capped at :data:`TRT_MAX_BATCH`) in one call, as the SDK sizes its engine for the
        number of tracks."""
        if rows > 0:
            self.engine.ensure_max_batch(min(TRT_MAX_BATCH, 1 << (int(rows) - 1).bit_length()))

    def _device_step(
        self, device: str, run: _Run, tracks: Sequence[Audio]
    ) -> tuple[RegressionStep, PostChain]:
        """The network step and the device chain of an offline run of ``tracks`` on ``device``
        (:mod:`a2x_core.postprocess.gpu`: every track at once, batched)."""
        lengths = np.array([num_frames_for(len(a.samples), run.fps) for a in tracks], np.int64)
        per_call = self.device_frames_per_call or min(
            DEVICE_MAX_FRAMES, max(FRAMES_PER_CALL, DEVICE_ROWS_PER_CALL // max(1, len(tracks)))
        )
        pipe = self._device_pipeline(run, device, lengths)
        return RegressionStep(self, pipe, max(1, int(per_call))), DeviceChain(pipe)

    def _device_network(self, device: Any) -> Any:
        """What runs the network on ``device`` with device tensors: the engine, or with
        :attr:`compile_network` on CUDA its ``torch.compile`` d replay (one per engine)."""
        if not (self.compile_network and device.type == "cuda"):
            return self.engine
        from ..postprocess.gpu import CompiledNetwork

        key = ("compiled", id(self.engine), int(self.compile_rows))
        if key not in self._device_cache:
            self._device_cache[key] = CompiledNetwork(self.engine, rows=int(self.compile_rows))
        return self._device_cache[key]

    def _emotion_input(self, settings: Settings, explicit: np.ndarray) -> np.ndarray:
        """The network's ``[n, 26]`` emotion rows: the implicit DB row, then the explicit values."""
        info = self.package.network_info
        implicit = np.broadcast_to(
            settings.implicit_emotion, (len(explicit), info.implicit_emotion_len)
        )
        return np.concatenate([implicit, explicit], axis=1).astype(np.float32)

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


@dataclass
class _Run:
    """What every track of one options set shares: validated settings and prepared stages."""

    options: InferenceOptions
    settings: Settings
    fps: Fraction
    dt: np.float32
    stages: TrackFrames  # prepared (never run): fresh() per track


class _TrackState:
    """One track's feeds: its run, emotion curve, and the explicit emotion rows it was fed
    (the result's ``emotions``), kept until handed out."""

    def __init__(self, run: _Run, curve: EmotionCurve, index: int, width: int) -> None:
        self.run = run
        self.curve = curve
        self.width = width  # explicit emotions per row
        self.index = index  # position among an offline run's tracks (device inputs)
        self._explicit: list[np.ndarray] = []

    def targets(self, first: int, count: int) -> np.ndarray:
        """Target samples of frames ``first .. first + count`` (:func:`.timing.frame_targets`)."""
        return frame_targets_of(np.arange(first, first + count), self.run.fps)

    def explicit(self, targets: np.ndarray) -> np.ndarray:
        rows = self.curve.sample(targets)
        self._explicit.append(rows)
        return rows

    def take_explicit(self, count: int | None = None) -> np.ndarray:
        """The explicit emotion rows of the next ``count`` frames handed out (all: None)."""
        rows = (np.concatenate(self._explicit) if self._explicit
                else np.zeros((0, self.width), np.float32))  # fmt: skip
        count = len(rows) if count is None else count
        rest = rows[count:]
        self._explicit = [rest] if len(rest) else []
        return rows[:count]


class RegressionStep:
    """The regression network as an executor step (:class:`a2x_core.executor.loop.ModelStep`): a unit is one
    output frame; its window ``[t - buffer_ofs, t - buffer_ofs + buffer_len)`` around the frame's
    target sample ``t`` must have arrived (or the clip ended: zeros past the end, as offline).
    Offline, each call holds ``units_per_call`` rows per track (a short span padded with zero
    rows); a stream executor sends only the ready rows (``pad=False``): a frame's values then
    differ from offline only by the float rounding of the batch it rode in (~1e-8).

    ``pipeline`` None: host rows, the NumPy stages. Else the device run of an offline batch: its
    :class:`a2x_core.postprocess.gpu.DevicePipeline`, the rows built on the device where they fit
    (:meth:`prepare_device_inputs`), the network's outputs never leaving the device.
    """

    def __init__(
        self, model: RegressionModel, pipeline: Any, units_per_call: int, *, pad: bool = True
    ) -> None:
        self.model = model
        self.pipeline = pipeline
        self.units_per_call = max(1, int(units_per_call))
        #: pad a short span to ``units_per_call`` zero rows (offline: every call's rows as
        #: before); streams send only real rows, so compute follows the frames
        self.pad = pad
        info = model.package.network_info
        self.buffer_len, self.buffer_ofs = int(info.buffer_len), int(info.buffer_ofs)
        #: samples after a frame's target that its window needs (may be <= 0 for odd networks)
        self.lookahead = self.buffer_len - self.buffer_ofs
        #: torch device of the stages after the network on a stream executor (None: NumPy)
        self.device: str | None = None
        self._feeder: Any = None
        self._on_device = False
        self._torch: Any = None

    # ------------------------------------------------------------------------- ModelStep

    def ready_units(self, track: Track) -> int:
        fps = track.state.run.fps
        received = track.audio.received
        existing = num_frames_for(received, fps)
        if track.audio.ended:
            return existing
        # window complete <=> t_k + lookahead <= received <=> t_k < received - lookahead + 1
        return min(existing, num_frames_for(received - self.lookahead + 1, fps))

    def keep_from(self, track: Track) -> int:
        return max(0, int(track.state.targets(track.next_unit, 1)[0]) - self.buffer_ofs)

    def run(self, spans: Sequence[Span]) -> list[ChainStep]:
        if self.pipeline is not None:
            return [self._run_device(spans)]
        if self.device is not None:
            return self._run_stream_device(spans)
        width = self.units_per_call if self.pad else None
        audio_rows, emotion_rows = self._host_rows(spans, width)
        self.model._reserve_batch(len(audio_rows))
        result = self.model._infer(audio_rows, emotion_rows).reshape(len(audio_rows), -1)
        return _by_count(spans, result, [width or s.count for s in spans])

    # ------------------------------------------------------------------------- feeds

    def _host_rows(
        self, spans: Sequence[Span], per_track: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs of ``spans`` built on the host: ``per_track`` rows per span (zero rows
        past a span's count), or None: each span's own count of rows, back to back."""
        info = self.model.package.network_info
        widths = [per_track or s.count for s in spans]
        rows = sum(widths)
        audio_rows = np.zeros((rows, 1, self.buffer_len), dtype=np.float32)
        emotion_rows = np.zeros((rows, 1, info.emotion_size), dtype=np.float32)
        at = 0
        for span, width in zip(spans, widths, strict=True):
            state: _TrackState = span.track.state
            targets = state.targets(span.first, span.count)
            held, first_held = span.track.audio.view()
            audio_rows[at : at + span.count, 0] = audio_windows(
                held, targets - first_held, self.buffer_len, self.buffer_ofs,
                state.run.settings.animator["input_strength"],
            )  # fmt: skip
            emotion_rows[at : at + span.count, 0] = self.model._emotion_input(
                state.run.settings, state.explicit(targets)
            )
            at += width
        return audio_rows, emotion_rows

    def prepare_device_inputs(self, tracks: Sequence[Track]) -> None:
        """Offline device run: upload every clip once and window it on the device
        (:class:`a2x_core.postprocess.gpu.DeviceInputs`) when the engine takes device tensors there and
        the padded clips fit in :data:`DEVICE_AUDIO_BYTES`; compile the network if asked."""
        from ..postprocess.gpu import DeviceInputs, same_device

        model, pipe = self.model, self.pipeline
        caps = model.engine.capabilities
        self._on_device = caps.device_tensors and same_device(pipe.torch, caps.device, pipe.device)
        samples = [t.audio.view()[0] for t in tracks]
        if self._on_device and DeviceInputs.nbytes(samples, self.buffer_len, self.buffer_ofs) <= (
            DEVICE_AUDIO_BYTES
        ):
            longest = max((self.ready_units(t) for t in tracks), default=0)
            emotions, strength = [], 1.0
            for t in tracks:
                state: _TrackState = t.state
                explicit = state.explicit(state.targets(0, self.ready_units(t)))
                emotions.append(model._emotion_input(state.run.settings, explicit))
                strength = state.run.settings.animator["input_strength"]
            self._feeder = DeviceInputs(
                str(pipe.device), samples, [t.state.targets(0, self.ready_units(t)) for t in tracks],
                emotions, self.buffer_len, self.buffer_ofs, strength, longest,
            )  # fmt: skip
        else:
            model._reserve_batch(len(tracks) * self.units_per_call)

    def prepare_stream_device(self) -> None:
        """Streams with the stages on :attr:`device`: the network's outputs stay there when the
        engine takes device tensors on it."""
        from ..backends.torch_engine import import_torch
        from ..postprocess.gpu import same_device

        torch = self._torch = import_torch()
        caps = self.model.engine.capabilities
        self._on_device = caps.device_tensors and same_device(
            torch, caps.device, torch.device(self.device)
        )

    def _run_stream_device(self, spans: Sequence[Span]) -> list[ChainStep]:
        """One call for streams at their own frames: host windows (only the ready rows), the
        network (on the device where it can), rows grouped by count for the device chain."""
        audio_np, emotion_np = self._host_rows(spans, None)
        self.model._reserve_batch(len(audio_np))
        result = self.model._infer_on(self._torch.device(self.device), audio_np, emotion_np,
                                      self._on_device)  # fmt: skip
        return _by_count(spans, result.reshape(len(audio_np), -1), [s.count for s in spans])

    def _run_device(self, spans: Sequence[Span]) -> ChainStep:
        """One call of an offline device run: every live track at the same frame (they advance
        together), ``n`` rows each (a track past its end gets padding the pipeline drops)."""
        torch = self.pipeline.torch
        device = self.pipeline.device
        start = spans[0].first
        n = max(s.count for s in spans)
        ids = [s.track.state.index for s in spans]
        everyone = len(ids) == self.pipeline.tracks
        # issue 15.5: slots and real rows uploaded without waiting for the device, and only the
        # real rows through the network (a track ending inside the call pads the rest)
        from ..postprocess.gpu import padded_rows, real_rows, upload

        live = None if everyone else upload(torch, np.asarray(ids, np.int64), device)
        if self._feeder is not None:
            audio, emotion = self._feeder.rows(live, start, n)
        else:
            audio, emotion = self._host_rows(
                [Span(s.track, s.first, min(n, self.ready_units(s.track) - s.first)) for s in spans],
                n,
            )
        rows = real_rows([s.count for s in spans], n)
        if rows is not None:
            at = rows if isinstance(audio, np.ndarray) else upload(torch, rows, audio.device)
            audio, emotion = audio[at], emotion[at]
        result = self.model._infer_on(device, audio, emotion, self._on_device)
        if rows is not None:
            result = padded_rows(torch, result, at, len(spans) * n)
        tracks = [s.track for s in spans]
        return ChainStep(result.reshape(len(spans), n, -1), tracks, [start] * len(spans))


def _by_count(spans: Sequence[Span], result: Any, widths: Sequence[int]) -> list[ChainStep]:
    """Network rows ``result`` (back to back: ``widths[g]`` rows from span ``g``, its first
    ``count`` real) as one :class:`a2x_core.executor.loop.ChainStep` per count of frames, ``[G, count, R]``
    (host arrays or device tensors alike)."""
    at = np.cumsum([0, *widths])
    groups: dict[int, list[int]] = {}
    for g, span in enumerate(spans):
        groups.setdefault(span.count, []).append(g)
    steps = []
    for count, members in groups.items():
        index = at[members][:, None] + np.arange(count)[None, :]
        steps.append(ChainStep(result[row_index(result, index)], [spans[g].track for g in members],
                               [spans[g].first for g in members]))  # fmt: skip
    return steps
