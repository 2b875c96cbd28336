"""The Python API that scripts and the DCC adapters use: load a model once, animate many clips."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .audio import Audio, decode_audio
from .errors import ParameterError
from .jobs import CancelToken, Job, Progress, ProgressCallback, ProgressScale
from .models import AnimationModel, load_model
from .options import InferenceOptions
from .result import AnimationResult
from .shaping import shape_weights

AudioSource = str | os.PathLike[str] | Audio

log = logging.getLogger("a2x_core")


def unused_option_warnings(model: AnimationModel, options: InferenceOptions) -> list[str]:
    """Say which options this model ignores; an emotion input it cannot take is an error."""
    if options.emotions and not model.emotion_names:
        raise ParameterError(
            f"the {model.name} model takes no emotion input",
            hint="drop --emotion/--emotion-file, or use an Audio2Face-3D model",
        )
    if model.kind == "default":
        return []
    ignored = [flag for flag, used in (("--transcript", options.transcript is not None),
                                       ("--fast", options.fast)) if used]  # fmt: skip
    if not ignored:
        return []
    return [f"{' and '.join(ignored)} only apply to the default model; the {model.kind} model "
            "animates from the audio alone"]  # fmt: skip


class Animator:
    """A loaded model plus default options.

    Example::

        animator = Animator("default", InferenceOptions(fps=30))
        for clip in clips:
            result = animator.animate(clip)
            print(result.curve("jawOpen").max())
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | AnimationModel = "default",
        options: InferenceOptions | None = None,
    ) -> None:
        self.options = options or InferenceOptions()
        if isinstance(model, str | os.PathLike):
            model = load_model(
                model, backend=self.options.backend, threads=self.options.threads,
                device=self.options.device, precision=self.options.precision,
            )  # fmt: skip
        self.model: AnimationModel = model

    def _decode(self, source: AudioSource, options: InferenceOptions) -> Audio:
        if isinstance(source, Audio):
            return source
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
        opts = (options or self.options).with_changes(**changes) if changes else (options or self.options)
        notes = unused_option_warnings(self.model, opts)
        for note in notes:
            log.warning("%s", note)
        ProgressScale(progress, 0.0, 0.02)(Progress(0.0, "reading audio"))
        tracks = []
        for source in sources:
            if cancel is not None:
                cancel.check()
            tracks.append(self._decode(source, opts))
        results = self.model.animate(tracks, opts, ProgressScale(progress, 0.02, 0.99), cancel)
        for track, result in zip(tracks, results, strict=True):
            result.weights = shape_weights(result.weights, result.fps, opts.strength, opts.smoothing_s)
            for warning in [*track.warnings, *notes]:
                if warning not in result.warnings:
                    result.warnings.insert(0, warning)
        if progress is not None:
            progress(Progress(1.0, "done"))
        return results

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

    def start(self, sources: Sequence[AudioSource], options: InferenceOptions | None = None) -> Job[list[AnimationResult]]:
        """Run :meth:`animate_many` on a worker thread; poll the returned job from a UI."""
        return Job(lambda progress, cancel: self.animate_many(sources, options, progress, cancel)).start()


def animate(
    source: AudioSource, model: str | os.PathLike[str] = "default", **option_fields: Any
) -> AnimationResult:
    """One-call convenience: ``animate("line.wav", fps=30, transcript="hello")``."""
    options = InferenceOptions(**option_fields)
    return Animator(model, options).animate(source)
