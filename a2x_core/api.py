"""The Python API that scripts and the DCC adapters use: load a model once, animate many clips.

With an Audio2Emotion model, every clip's emotions are detected from its audio (all clips in
shared network calls), mixed with any manual emotion keys (``options.emotion_mix``) and fed to
the Audio2Face-3D model as each clip's own emotion rows, all clips in one batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio.decode import Audio, check_audio_path, decode_audio, trim_audio
from .backends import EngineSettings, InferenceEngine
from .errors import ModelError, ParameterError
from .head.motion import add_head_motion
from .inputs import check_path_length, regular_file_status
from .jobs import CancelToken, Job, Progress, ProgressCallback, ProgressScale
from .models.registry import AnimationModel, load_model
from .options import DEFAULT_EMOTION_WINDOW, EmotionKey, InferenceOptions, check_field_names
from .postprocess.shaping import shape_weights
from .result import AnimationResult

if TYPE_CHECKING:
    from .models.audio2emotion import EmotionModel

AudioSource = str | os.PathLike[str] | Audio

log = logging.getLogger("a2x_core")


def _compiles(model: AnimationModel) -> bool:
    """Whether ``model`` runs its network through ``torch.compile`` (regression, torch, CUDA)."""
    engine = getattr(model, "engine", None)  # the default model has no network engine
    if not isinstance(engine, InferenceEngine):
        return False
    caps = engine.capabilities
    return bool(getattr(model, "compile_network", False)) and caps.device_tensors and caps.on_cuda


def unused_option_warnings(
    model: AnimationModel, options: InferenceOptions, emotion_model: Any = None,
    streaming: bool = False,
) -> list[str]:
    """Say which options this model ignores (``streaming``: of a stream, which has fewer
    settings); an emotion input it cannot take is an error."""
    if options.emotions and not model.emotion_names:
        raise ParameterError(
            f"the {model.name} model takes no emotion input",
            hint="drop --emotion/--emotion-file, or use an Audio2Face-3D model",
        )
    notes = []
    if emotion_model is None:
        unused = [flag for flag, used in (
            ("--emotion-window", options.emotion_window != DEFAULT_EMOTION_WINDOW),
            ("--emotion-cadence", options.emotion_cadence != "sdk"),
            ("--emotion-skip", options.emotion_skip is not None),
            ("--emotion-mix", options.emotion_mix != "blend"),
            ("--emotion-param", bool(options.emotion_parameters))) if used]  # fmt: skip
        if unused:
            verb = "apply" if len(unused) > 1 else "applies"
            notes.append(f"{', '.join(unused)} only {verb} with an emotion model (--emotion-model)")
    if options.identity is not None and model.kind != "diffusion":
        notes.append(
            f"--identity only applies to diffusion models; the {model.kind} model has one face"
        )
    if options.compile_network and not _compiles(model):
        notes.append("--compile only applies to regression models on the torch engine with CUDA; "
                     "this run uses the usual engine")  # fmt: skip
    if model.kind == "default":
        from .lipsync.model import default_model_notes

        return notes + default_model_notes(options, streaming)
    ignored = [flag for flag, used in (("--transcript", options.transcript is not None),
                                       ("--fast", options.fast),
                                       ("--language", options.language != "auto")) if used]  # fmt: skip
    if ignored:
        listed = ", ".join(ignored[:-1]) + " and " + ignored[-1] if len(ignored) > 1 else ignored[0]
        verb = "apply" if len(ignored) > 1 else "applies"
        notes.append(f"{listed} only {verb} to the default model; the {model.kind} "
                     "model animates from the audio alone")  # fmt: skip
    return notes


class Animator:
    """A loaded model plus default options.

    Example::

        animator = Animator("default", InferenceOptions(fps=30))
        for clip in clips:
            result = animator.animate(clip)
            print(result.curve("jawOpen").max())

        # detected emotions, blended with a manual one
        animator = Animator("mark/model.json", InferenceOptions(emotions=((0, {"joy": 0.8}),)),
                            emotion_model="a2e/model.json")

    Args:
        model: "default", a model.json path, or a loaded model.
        options: default options of every call.
        emotion_model: an Audio2Emotion model.json path or a loaded ``EmotionModel``: each
            clip's emotions are detected (``options.emotion_window``, ``emotion_cadence``,
            ``emotion_skip``, ``emotion_parameters``) and drive the model's emotion input,
            mixed with ``options.emotions`` as ``options.emotion_mix`` says. By default
            Audio2Emotion runs as in NVIDIA's sample and Maya-ACE (30 fps, skip 30) and the
            model reads its keys at its own frames (``emotion_cadence="per-frame"``: at the
            output fps, one inference per frame).

    Raises:
        ParameterError: an emotion model for a model without an emotion input.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | AnimationModel = "default",
        options: InferenceOptions | None = None,
        emotion_model: str | os.PathLike[str] | EmotionModel | None = None,
    ) -> None:
        if options is not None and not isinstance(options, InferenceOptions):
            raise ParameterError(f"options must be InferenceOptions or None, found {options!r}",
                                 hint="write Animator(model, InferenceOptions(fps=30))")  # fmt: skip
        self.options = options or InferenceOptions()
        model = _checked_model(model)
        if isinstance(model, str | os.PathLike):
            model = load_model(
                model, backend=self.options.backend, threads=self.options.threads,
                device=self.options.device, precision=self.options.precision,
                compile_network=self.options.compile_network,
            )  # fmt: skip
        self.model: AnimationModel = model
        self.emotion_model: EmotionModel | None = None
        if emotion_model is not None:
            if not model.emotion_names:
                raise ParameterError(
                    f"an emotion model needs a model with an emotion input; the {model.name} "
                    "model takes none",
                    hint="pass an Audio2Face-3D model (--model PATH/model.json)",
                )
            if isinstance(emotion_model, str | os.PathLike):
                from .models.audio2emotion import EmotionModel

                path = check_path_length(emotion_model, ModelError, "emotion model")
                if path.exists() and not path.is_dir():  # a FIFO would block the JSON read
                    regular_file_status(path, missing=ModelError, unusable=ModelError,
                                        what="model.json")  # fmt: skip

                o = self.options
                emotion_model = EmotionModel.load(
                    emotion_model, EngineSettings.of(o), buffer_length=o.emotion_window
                )
            elif not callable(getattr(emotion_model, "detect", None)):
                raise ParameterError(
                    f"emotion_model must be an Audio2Emotion model.json path or a loaded "
                    f"EmotionModel, found {emotion_model!r}", hint="pass e.g. 'a2e/model.json'",
                )  # fmt: skip
            self.emotion_model = emotion_model
            self._check_emotion_options(self.options)

    def _decode(self, source: AudioSource, options: InferenceOptions) -> Audio:
        """Decode a path, or apply the options' time range to decoded audio (a range the audio
        already covers, as the CLI decodes it, changes nothing)."""
        if isinstance(source, Audio):
            return trim_audio(source, options.start_s, options.end_s)
        return decode_audio(Path(source), start_s=options.start_s, end_s=options.end_s)

    def animate_many(
        self,
        sources: Sequence[AudioSource],
        options: InferenceOptions | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **changes: Any,
    ) -> list[AnimationResult]:
        """Animate several clips as one batch (one result each, in order)."""
        if options is not None and not isinstance(options, InferenceOptions):
            raise ParameterError(f"options must be InferenceOptions or None, found {options!r}")
        opts = (options or self.options).with_changes(**changes) if changes else (options or self.options)
        sources = _checked_sources(sources)
        notes = unused_option_warnings(self.model, opts, self.emotion_model)
        if self.emotion_model is not None:
            self._check_emotion_options(opts)
        for note in notes:
            log.warning("%s", note)
        ProgressScale(progress, 0.0, 0.02)(Progress(0.0, "reading audio"))
        tracks = []
        for source in sources:
            if cancel is not None:
                cancel.check()
            tracks.append(self._decode(source, opts))
        try:
            if self.emotion_model is None:
                results = self.model.animate(tracks, opts, ProgressScale(progress, 0.02, 0.99), cancel)
            else:
                results = self._animate_with_emotions(tracks, opts, progress, cancel)
        except np.linalg.LinAlgError as error:  # NaN/overflow from a model folder's values
            raise ModelError(
                f"the {self.model.name} model's arithmetic broke down ({error}): its values "
                "overflow or are NaN for this audio",
                hint="check the model folder's config values (a2x info lists them)",
            ) from None
        for track, result in zip(tracks, results, strict=True):
            result.weights = shape_weights(result.weights, result.fps, opts.strength, opts.smoothing_s)
            if result.head_rotations is None and opts.head_motion > 0:
                # Models that move no head (Audio2Face-3D) get the default model's, from the
                # voice (their own eye rotations are kept).
                add_head_motion(result, track.samples, opts.seed, opts.head_motion)
            bad = result.non_finite_arrays()
            if bad:  # never hand NaN to an exporter or a rig
                raise ModelError(
                    f"the {self.model.name} model produced NaN or infinite values "
                    f"({', '.join(bad)}) for this audio",
                    path=track.path or None,
                    hint="check the model folder's config values and the audio",
                )
            for warning in [*track.warnings, *notes]:
                if warning not in result.warnings:
                    result.warnings.insert(0, warning)
        if progress is not None:
            progress(Progress(1.0, "done"))
        return results

    def _check_emotion_options(self, options: InferenceOptions) -> None:
        """Emotion options the emotion model rejects fail before any audio is read."""
        from .models.audio2emotion import check_window

        assert self.emotion_model is not None
        fps, skip = options.emotion_schedule()
        check_window(options.emotion_window, skip, fps,
                     names=("emotion_window", "emotion_skip"))  # fmt: skip
        self.emotion_model.settings(options.emotion_parameters, label="emotion_parameters")

    def _animate_with_emotions(
        self,
        tracks: Sequence[Audio],
        opts: InferenceOptions,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> list[AnimationResult]:
        """Detect every clip's emotions in shared Audio2Emotion calls, mix each with the manual
        keys, then animate all clips in one batch with each clip's keys as its emotion rows
        (``track_emotions``): the batch keeps one ``options``.

        Audio2Emotion runs at its own frames (``options.emotion_schedule()``); each of its
        frames becomes an emotion key at the frame's target sample, and the face model
        interpolates the keys at its own frame targets: the SDK's ``EmotionBinder`` between
        an A2E executor and an A2F executor at different frame rates (spec §3, §5)."""
        from .models.audio2emotion import emotion_keys

        detector = self.emotion_model
        assert detector is not None
        emotion_fps, skip = opts.emotion_schedule()
        detected = detector.detect_many(
            tracks, emotion_fps, buffer_length=opts.emotion_window, inferences_to_skip=skip,
            parameters=opts.emotion_parameters, progress=ProgressScale(progress, 0.02, 0.3),
            cancel=cancel,
        )  # fmt: skip
        keys = [
            emotion_keys(detector.mix(d, opts.emotions, opts.emotion_mix, opts.emotion_parameters))
            for d in detected
        ]
        results = self._animate_with_keys(tracks, opts, keys, progress, cancel)
        config = detector.settings(opts.emotion_parameters)
        for result, found in zip(results, detected, strict=True):
            result.options = opts  # the caller's options (manual keys), not the per-frame keys
            result.detected_emotions = _in_order(
                found.at_frames(result.num_frames, result.fps), found.names, result.emotion_names
            )
            result.parameters = {**result.parameters, "audio2emotion": {
                "model": str(detector.package.model_json),
                "cadence": opts.emotion_cadence,
                "fps": f"{emotion_fps.numerator}/{emotion_fps.denominator}",
                "inferences_to_skip": skip,
                "window": opts.emotion_window,
                "post_processing_config": config.to_dict(detector.emotions),
            }}  # fmt: skip
        return results

    def _animate_with_keys(
        self,
        tracks: Sequence[Audio],
        opts: InferenceOptions,
        keys: Sequence[tuple[EmotionKey, ...]],
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> list[AnimationResult]:
        """One ``model.animate`` of every clip with its own emotion keys (``track_emotions``),
        so runs with an emotion model stay batched."""
        scale = ProgressScale(progress, 0.3, 0.99)
        return self.model.animate(tracks, opts, scale, cancel, track_emotions=keys)

    def animate(
        self,
        source: AudioSource,
        options: InferenceOptions | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **changes: Any,
    ) -> AnimationResult:
        """Animate one clip (a path or decoded :class:`Audio`)."""
        return self.animate_many([source], options, progress, cancel, **changes)[0]

    def open_stream(self, options: InferenceOptions | None = None, executor: Any = None) -> Any:
        """A stream of pushed audio on this animator's model (``docs/streaming.md``): with an
        emotion model, an :class:`a2x_core.executor.emotion_stream.EmotionDrivenStream` whose frames equal
        :meth:`animate`'s; ``executor`` shares network calls with other streams of the model
        (Audio2Face-3D models), whose frames gain the voice-driven head motion as offline
        (:mod:`a2x_core.head.stream`; ``head_motion=0`` turns it off).

        Raises:
            ParameterError: an option the stream cannot honour.
        """
        from .head.stream import with_head_motion

        options = self.options if options is None else options
        if self.emotion_model is not None:
            from .executor.emotion_stream import EmotionDrivenStream

            self._check_emotion_options(options)
            stream = EmotionDrivenStream(self.model, self.emotion_model, options, executor)
        elif executor is None:
            stream = self.model.open_stream(options)
        else:
            stream = self.model.open_stream(options, executor)
        return with_head_motion(stream, self.model, options)

    def start(self, sources: Sequence[AudioSource], options: InferenceOptions | None = None) -> Job[list[AnimationResult]]:
        """Run :meth:`animate_many` on a worker thread; poll the returned job from a UI."""
        return Job(lambda progress, cancel: self.animate_many(sources, options, progress, cancel)).start()


def _checked_model(model: Any) -> Any:
    """``model`` if it is a model spec or a loaded model, else a ParameterError now (not an
    AttributeError at the first animate)."""
    if isinstance(model, str | os.PathLike):
        if str(model) != "default":
            check_path_length(model, ModelError, "model")
        return model
    if all(hasattr(model, name) for name in ("emotion_names", "kind", "name")):
        return model
    raise ParameterError(
        f"model must be 'default', a model.json path or a loaded model, found {model!r}",
        hint="write Animator('default') or Animator('mark/model.json')",
    )


def _checked_sources(sources: Any) -> list[AudioSource]:
    """A list of audio paths/``Audio``, each path checked to be a regular file before any clip
    is decoded (a missing second clip fails at once, not after the first is decoded)."""
    if isinstance(sources, str | bytes | os.PathLike | Audio) or not isinstance(sources, Sequence):
        raise ParameterError(f"sources must be a list of audio paths, found {sources!r}",
                             hint="write animate_many(['a.wav', 'b.wav'])")  # fmt: skip
    for source in sources:
        if isinstance(source, Audio):
            continue
        if not isinstance(source, str | os.PathLike):
            raise ParameterError(f"audio {source!r} must be a path or decoded Audio",
                                 hint="pass a file path or decode_audio(path)")  # fmt: skip
        check_audio_path(source)
    return list(sources)


def _in_order(values: np.ndarray, names: Sequence[str], order: Sequence[str]) -> np.ndarray:
    """``values`` columns (``names``) rearranged to ``order`` (a model's emotion names)."""
    if tuple(order) == tuple(names) or set(order) != set(names):
        return values
    return np.ascontiguousarray(values[:, [list(names).index(n) for n in order]])


def animate(
    source: AudioSource,
    model: str | os.PathLike[str] = "default",
    emotion_model: str | os.PathLike[str] | EmotionModel | None = None,
    **option_fields: Any,
) -> AnimationResult:
    """One-call convenience: ``animate("line.wav", fps=30, transcript="hello")``, or
    ``animate("line.wav", "mark/model.json", emotion_model="a2e/model.json")``."""
    check_field_names(option_fields, "option")
    options = InferenceOptions(**option_fields)
    return Animator(model, options, emotion_model).animate(source)
