"""The preview video: a procedural face driven by the curves, the curves and the phones/words
scrolling below it, the clip's sound muxed in sync (H.264 + AAC in MP4, through PyAV).

Animators judge lip sync by watching it; this needs no DCC. Speed matters (a preview should
take seconds): frames are drawn straight into the encoder's YUV planes (:mod:`a2x_core.preview.raster`), the
static parts are drawn once, the eye region is cached per pose, and the curve strip ("tape")
is drawn by matplotlib a few seconds at a time and only scrolled per frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import AudioNotFoundError, OutputError, ParameterError
from ..export.plot import MAIN_CURVES
from ..export.writers import OutputSet
from ..result import AnimationResult
from .face2d import FaceDrawer
from .raster import YuvImage

#: Frame size and rate of the preview unless asked otherwise (720p30: small, smooth enough).
WIDTH, HEIGHT, FPS = 1280, 720, Fraction(30)
#: Colours (RGB) of the frame around the face and of the tape.
BACKGROUND = (52, 58, 72)
TAPE_BACKGROUND = (30, 33, 40)
CURSOR = (250, 250, 250)
#: Seconds of curves shown at once on the tape, the cursor (now) in its middle.
TAPE_SECONDS = 4.0
#: Seconds of tape drawn by matplotlib at a time (cached while the cursor crosses them).
TAPE_CHUNK_SECONDS = 8.0
#: Share of the frame's height given to the tape(s) below the face(s).
TAPE_SHARE = 0.36
#: Width of the tape's legend column, left of the scrolling curves.
LEGEND_WIDTH = 150
#: Sample rate of the muxed AAC track.
AUDIO_RATE = 48000
#: x264 settings: encoding is the preview's largest cost, so the fastest preset, and a constant
#: quantiser rather than a rate factor: crf makes x264 analyse a half-size copy of every frame
#: to rate it, ~40 % of ultrafast's time on these pictures; qp 26 gives files of the size
#: crf 23 gave (flat colours and text stay clean).
X264_OPTIONS = {"preset": "ultrafast", "qp": "26"}


def _import_av():
    try:
        import av
    except ImportError:
        raise ParameterError("PyAV is needed for preview videos",
                             hint="pip install 'a2x[preview]'") from None  # fmt: skip
    return av


@dataclass
class _Panel:
    """One result's place in the frame: its face and its tape."""

    result: AnimationResult
    face: FaceDrawer
    tape: _Tape
    tape_x: int
    tape_y: int


class _Tape:
    """The scrolling strip of one result: its main curves and, for the default model, its
    phones and words, drawn by matplotlib one chunk at a time into YUV images."""

    def __init__(self, result: AnimationResult, width: int, height: int, label: str) -> None:
        self.result = result
        self.width, self.height = width, height
        self.pixels_per_s = width / TAPE_SECONDS
        self.chunk_width = int(round(TAPE_CHUNK_SECONDS * self.pixels_per_s)) & ~1
        self.label = label
        self.curves = [name for name in MAIN_CURVES if name in result.names]
        self._chunks: dict[int, YuvImage] = {}
        arrays = result.arrays
        self.phones = None
        if "phone_labels" in arrays and "phone_start_s" in arrays:
            self.phones = (arrays["phone_labels"], arrays["phone_words"],
                           arrays["phone_start_s"], arrays["phone_end_s"])  # fmt: skip

    def legend(self) -> np.ndarray:
        """``[height, LEGEND_WIDTH, 3]`` RGB: the label and the curves' colours."""
        import matplotlib.pyplot as plt

        figure = _figure(LEGEND_WIDTH, self.height)
        try:
            axis = figure.add_axes((0, 0, 1, 1))
            axis.set_axis_off()
            axis.set_xlim(0, 1)
            axis.set_ylim(0, 1)
            axis.text(0.06, 0.93, self.label, color="white", fontsize=9, va="top", weight="bold")
            for i, name in enumerate(self.curves):
                y = 0.78 - i * 0.6 / max(1, len(self.curves))
                axis.plot([0.06, 0.2], [y, y], color=f"C{i}", linewidth=2)
                axis.text(0.25, y, name, color="0.85", fontsize=8, va="center")
            if self.phones is not None:
                axis.text(0.06, 0.1, "phones / words", color="0.6", fontsize=7.5, va="center")
            return _pixels(figure)
        finally:
            plt.close(figure)

    def window(self, t: float) -> tuple[YuvImage, int, YuvImage | None]:
        """The chunk(s) and column where the window centred on time ``t`` starts."""
        column = int(round((t - self.result.start_s) * self.pixels_per_s)) & ~1
        index, offset = divmod(column, self.chunk_width)
        first = self._chunk(index)
        second = self._chunk(index + 1) if offset + self.width > self.chunk_width else None
        return first, offset, second

    def _chunk(self, index: int) -> YuvImage:
        if index not in self._chunks:
            for old in [k for k in self._chunks if k < index - 1]:
                del self._chunks[old]
            self._chunks[index] = YuvImage.from_rgb(self._draw(index))
        return self._chunks[index]

    def _draw(self, index: int) -> np.ndarray:
        """Column 0 of chunk ``index`` shows time ``start + index * chunk - TAPE_SECONDS / 2``."""
        import matplotlib.pyplot as plt

        result = self.result
        t0 = result.start_s + index * self.chunk_width / self.pixels_per_s - TAPE_SECONDS / 2
        t1 = t0 + self.chunk_width / self.pixels_per_s
        figure = _figure(self.chunk_width, self.height)
        try:
            has_text = self.phones is not None
            curve_axis = figure.add_axes((0, 0.3 if has_text else 0.04, 1, 0.66 if has_text else 0.92))
            curve_axis.set_facecolor(np.array(TAPE_BACKGROUND) / 255)
            times = result.times_s
            inside = np.nonzero((times >= t0 - 0.1) & (times <= t1 + 0.1))[0]
            for i, name in enumerate(self.curves):
                curve_axis.plot(times[inside], result.curve(name)[inside], color=f"C{i}", linewidth=1.6)
            for second in np.arange(np.ceil(t0), t1):
                curve_axis.axvline(second, color="0.3", linewidth=0.8)
                curve_axis.text(second + 0.02, 1.0, f"{second:g}s", color="0.5", fontsize=7, va="top")
            curve_axis.set_xlim(t0, t1)
            curve_axis.set_ylim(-0.04, 1.06)
            curve_axis.set_axis_off()
            if has_text:
                self._draw_phones(figure.add_axes((0, 0, 1, 0.3)), t0, t1)
            return _pixels(figure)
        finally:
            plt.close(figure)

    def _draw_phones(self, axis, t0: float, t1: float) -> None:
        labels, words, starts, ends = self.phones  # type: ignore[misc]
        axis.set_xlim(t0, t1)
        axis.set_ylim(0, 1)
        axis.set_axis_off()
        previous_word = ""
        for label, word, start, end in zip(labels, words, starts, ends, strict=True):
            if end < t0 or start > t1 or str(label) in ("SIL", "sil", ""):
                previous_word = ""
                continue
            axis.axvline(start, ymin=0.5, ymax=1.0, color="0.35", linewidth=0.6)
            axis.text((start + end) / 2, 0.75, str(label), color="0.9", fontsize=8,
                      ha="center", va="center")  # fmt: skip
            if str(word) and str(word) != previous_word:
                axis.text(start, 0.25, str(word), color="#f0c060", fontsize=9, va="center")
            previous_word = str(word)


def _figure(width: int, height: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    figure.patch.set_facecolor(np.array(TAPE_BACKGROUND) / 255)
    return figure


def _pixels(figure) -> np.ndarray:
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def layout(results: Sequence[AnimationResult], labels: Sequence[str], width: int,
            height: int) -> list[_Panel]:  # fmt: skip
    """Faces side by side on top, one tape per result stacked below."""
    tape_total = int(height * TAPE_SHARE) & ~3
    face_height = height - tape_total
    tape_height = (tape_total // len(results)) & ~1
    panels = []
    for i, (result, label) in enumerate(zip(results, labels, strict=True)):
        column_width = width / len(results)
        scale = min(face_height / 2.9, column_width / 2.6)
        face = FaceDrawer(column_width * (i + 0.5), 1.35 * scale + 0.02 * face_height, scale,
                          (width, face_height))  # fmt: skip
        tape = _Tape(result, width - LEGEND_WIDTH, tape_height, label)
        panels.append(_Panel(result, face, tape, LEGEND_WIDTH, face_height + i * tape_height))
    return panels


def _frame_weights(result: AnimationResult, times: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The result's weights (and tongue weights) at the video's frame times, interpolated."""
    source = result.times_s
    position = np.interp(times, source, np.arange(len(source), dtype=np.float64))
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(source) - 1)
    share = (position - low)[:, None]

    def at(values: np.ndarray) -> np.ndarray:
        return values[low] * (1 - share) + values[high] * share

    from ..export.writers import arkit_weights_from

    weights = arkit_weights_from(list(result.names), result.weights)
    tongue = at(result.tongue_weights) if result.tongue_weights is not None else None
    return at(weights), tongue


def read_track_audio(path: str | os.PathLike[str], start_s: float, duration_s: float) -> np.ndarray:
    """``[samples, channels]`` float32 at :data:`AUDIO_RATE` of the part of ``path`` the result
    animated (the file's own channels, at most two)."""
    import soundfile
    import soxr

    file = Path(path)
    if not file.is_file():
        raise AudioNotFoundError("the result's audio file is not there", path=file,
                                 hint="pass the clip with --audio FILE")  # fmt: skip
    try:
        with soundfile.SoundFile(file) as handle:
            rate = handle.samplerate
            handle.seek(min(handle.frames, int(round(start_s * rate))))
            samples = handle.read(int(round(duration_s * rate)), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioNotFoundError(f"cannot be read ({error})", path=file,
                                 hint="pass the clip with --audio FILE") from None  # fmt: skip
    if samples.shape[1] > 2:
        samples = samples.mean(axis=1, keepdims=True)
    if rate != AUDIO_RATE:
        samples = soxr.resample(samples, rate, AUDIO_RATE).astype(np.float32)
    return np.ascontiguousarray(samples)


def write_preview(
    path: str | os.PathLike[str],
    results: Sequence[AnimationResult],
    *,
    audio: str | os.PathLike[str] | None = None,
    labels: Sequence[str] | None = None,
    fps: Fraction | int = FPS,
    size: tuple[int, int] = (WIDTH, HEIGHT),
    overwrite: bool = True,
    progress: Callable[[float], None] | None = None,
) -> Path:
    """Render ``results`` (one, or two side by side) to an MP4 at ``path``, atomically."""
    target = Path(path)
    check_preview_path(target, overwrite=overwrite)
    with OutputSet(overwrite=overwrite) as outputs:
        stage_preview(outputs, target, results, audio=audio, labels=labels, fps=fps, size=size,
                      progress=progress)  # fmt: skip
        outputs.commit()
    return target


def stage_preview(
    outputs: OutputSet,
    path: str | os.PathLike[str],
    results: Sequence[AnimationResult],
    *,
    audio: str | os.PathLike[str] | None = None,
    labels: Sequence[str] | None = None,
    fps: Fraction | int = FPS,
    size: tuple[int, int] = (WIDTH, HEIGHT),
    progress: Callable[[float], None] | None = None,
) -> None:
    """Render into a temporary file of ``outputs``; the MP4 appears under ``path`` on commit.
    The sound is the first result's clip (or ``audio``), over the first result's time range."""
    av = _import_av()
    target = Path(path)
    _check_suffix(target)
    if not 1 <= len(results) <= 2:
        raise ParameterError("a preview shows one result, or two side by side (--compare)")
    width, height = size
    if width % 2 or height % 4 or width < 320 or height < 240:
        raise ParameterError(f"preview size {width}x{height}: needs at least 320x240, an even "
                             "width and a height divisible by 4")  # fmt: skip
    fps = Fraction(fps)
    first = results[0]
    sound = read_track_audio(audio or first.audio_path, first.start_s, first.duration_s) \
        if (audio or first.audio_path) else None  # fmt: skip
    if sound is None:
        raise AudioNotFoundError("the result names no audio file (in-memory audio)",
                                 hint="pass the clip with --audio FILE")  # fmt: skip
    labels = list(labels) if labels else [_label(r) for r in results]
    outputs.stage(target, lambda temp: _encode(av, temp, results, labels, sound, fps, width,
                                               height, progress))  # fmt: skip


VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputError(f"a preview is an MP4 video, not {path.suffix or '(no extension)'}",
                          path=path, hint="name it .mp4")  # fmt: skip


def check_preview_path(path: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Refuse, before any work runs, a video path this run could not or must not write."""
    from ..export.writers import check_new_file

    _check_suffix(Path(path))
    check_new_file(Path(path), overwrite=overwrite)
    _import_av()


#: Extensions ``a2x preview`` reads as results; anything else is taken for an audio clip.
RESULT_SUFFIXES = (".json", ".npz")


def load_for_preview(item: str | os.PathLike[str], *, model: str = "default") -> AnimationResult:
    """A result to preview: read from an a2x ``.json``/``.npz`` export, or animated now from an
    audio clip with ``model``. A result's relative audio path is tried from the working folder,
    then from the result's own folder."""
    path = Path(item)
    if path.suffix.lower() not in RESULT_SUFFIXES:
        from ..api import Animator

        return Animator(model).animate(str(path))
    from dataclasses import replace

    from ..export.writers import read_result

    if not path.is_file():
        raise AudioNotFoundError("the result file is not there", path=path, hint="check the path")
    result = read_result(path)
    audio = Path(result.audio_path)
    if result.audio_path and not audio.is_absolute() and not audio.is_file():
        beside = path.parent / audio
        if beside.is_file():
            result = replace(result, audio_path=str(beside))
    return result


def _label(result: AnimationResult) -> str:
    name = Path(result.audio_path).name or "audio"
    return f"{result.model}: {name}"


def _encode(av, temp: Path, results: Sequence[AnimationResult], labels: Sequence[str],
            sound: np.ndarray, fps: Fraction, width: int, height: int,
            progress: Callable[[float], None] | None) -> None:  # fmt: skip
    """Draw every frame and mux it with the sound."""
    first = results[0]
    frames = max(1, int(round(first.duration_s * fps)))
    times = first.start_s + np.arange(frames) / float(fps)
    panels = layout(results, labels, width, height)
    background = YuvImage(width, height, BACKGROUND)
    for panel in panels:
        panel.face.draw_static(background)
        background.paste(YuvImage.from_rgb(panel.tape.legend()), 0, panel.tape_y)
    canvas = YuvImage(width, height)
    canvas.data[:] = background.data
    tracks = [_frame_weights(panel.result, times) for panel in panels]
    container = av.open(str(temp), mode="w", format="mp4")
    try:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = dict(X264_OPTIONS)
        video.thread_type = "AUTO"
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "stereo" if sound.shape[1] == 2 else "mono"
        moving = [box for panel in panels for box in (
            panel.face.eye_box, panel.face.base_box,
            (panel.tape_x, panel.tape_y, panel.tape_x + panel.tape.width,
             panel.tape_y + panel.tape.height))]  # fmt: skip
        pool = _FramePool(av, width, height, _Encoder.QUEUE + 2, canvas, moving)
        sound_feed = _AudioFeed(av, container, audio, sound)
        with _Encoder(container, video, sound_feed, fps) as encoder:
            for i, t in enumerate(times):
                for panel, (weights, tongue) in zip(panels, tracks, strict=True):
                    panel.face.draw(canvas, background, weights[i],
                                    None if tongue is None else tongue[i])  # fmt: skip
                    _draw_tape(canvas, panel, t)
                frame = pool.next_frame(canvas)
                frame.pts = i
                encoder.put(frame)
                if progress is not None and i % 30 == 0:
                    progress(i / frames)
    finally:
        container.close()


class _FramePool:
    """PyAV frames reused in turn: a new 720p frame per picture costs more (allocation and
    page faults) than copying the canvas into one already there. ``size`` must exceed the
    frames the encoder may still hold (its queue and the one it encodes): x264 copies a
    frame's pixels during ``encode``, so a frame is free again once encoded.

    Each frame gets the whole of ``canvas`` (the static background) once; after that only the
    ``moving`` boxes (x0, y0, x1, y1, even corners: faces and tapes) are copied per picture,
    less than half of a 720p frame. None: the whole canvas every time."""

    def __init__(self, av, width: int, height: int, size: int, canvas: YuvImage | None = None,
                 moving: list[tuple[int, int, int, int]] | None = None) -> None:  # fmt: skip
        self.moving = moving
        self.frames = [av.VideoFrame(width, height, "yuv420p") for _ in range(size)]
        self.views = []
        for frame in self.frames:
            planes = []
            for plane, rows, columns in zip(frame.planes, (height, height // 2, height // 2),
                                            (width, width // 2, width // 2), strict=True):  # fmt: skip
                flat = np.frombuffer(plane, dtype=np.uint8)
                planes.append(flat[:rows * plane.line_size].reshape(rows, plane.line_size)[:, :columns])
            self.views.append(planes)
            if canvas is not None:
                for view, plane in zip(planes, (canvas.y, canvas.u, canvas.v), strict=True):
                    np.copyto(view, plane)
        self.turn = 0

    def next_frame(self, canvas: YuvImage):
        index = self.turn % len(self.frames)
        self.turn += 1
        planes = zip(self.views[index], (canvas.y, canvas.u, canvas.v), (1, 2, 2), strict=True)
        if self.moving is None:
            for view, plane, _ in planes:
                np.copyto(view, plane)
            return self.frames[index]
        for view, plane, k in planes:
            for x0, y0, x1, y1 in self.moving:
                view[y0 // k:y1 // k, x0 // k:x1 // k] = plane[y0 // k:y1 // k, x0 // k:x1 // k]
        return self.frames[index]


class _Encoder:
    """Encodes and muxes frames on a second thread (PyAV lets go of the GIL inside FFmpeg), so
    that drawing the next frame and encoding this one share the two cores. The sound is
    encoded there too, a frame's worth after each frame (``sound``): off the drawing thread,
    and interleaved in the file as a player reads it."""

    #: Frames waiting for the encoder at most (the drawing thread then waits).
    QUEUE = 8

    def __init__(self, container, stream, sound: _AudioFeed | None = None,
                 fps: Fraction = FPS) -> None:  # fmt: skip
        import queue
        import threading

        self.container, self.stream, self.sound, self.fps = container, stream, sound, fps
        self.frames: queue.Queue = queue.Queue(maxsize=self.QUEUE)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="a2x-preview-encoder", daemon=True)

    def __enter__(self) -> _Encoder:
        self.thread.start()
        return self

    def put(self, frame) -> None:
        if self.error is not None:
            raise self.error
        self.frames.put(frame)

    def _run(self) -> None:
        try:
            while (frame := self.frames.get()) is not None:
                shown_until = float((frame.pts + 1) / self.fps)  # before the pool reuses it
                for packet in self.stream.encode(frame):
                    self.container.mux(packet)
                if self.sound is not None:
                    self.sound.until(shown_until)
            for packet in self.stream.encode():
                self.container.mux(packet)
            if self.sound is not None:
                self.sound.finish()
        except BaseException as error:  # handed to the drawing thread
            self.error = error
            while self.frames.get() is not None:  # unblock a waiting put
                pass

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        self.frames.put(None)
        self.thread.join()
        if self.error is not None and kind is None:
            raise self.error


def _draw_tape(canvas: YuvImage, panel: _Panel, t: float) -> None:
    tape = panel.tape
    chunk, offset, following = tape.window(t)
    visible = min(tape.width, chunk.width - offset)
    canvas.paste(chunk, panel.tape_x, panel.tape_y, offset, visible)
    if following is not None:
        canvas.paste(following, panel.tape_x + visible, panel.tape_y, 0, tape.width - visible)
    middle = (panel.tape_x + tape.width // 2) & ~1
    canvas.fill_rect(middle, panel.tape_y, middle + 2, panel.tape_y + tape.height, CURSOR)


class _AudioFeed:
    """The sound track, encoded (AAC) and muxed a piece at a time: :meth:`until` a time, then
    :meth:`finish` the rest and flush."""

    BLOCK = 1024  # samples per AAC frame

    def __init__(self, av, container, stream, sound: np.ndarray) -> None:
        self.av, self.container, self.stream, self.sound = av, container, stream, sound
        self.layout = "stereo" if sound.shape[1] == 2 else "mono"
        self.done = 0  # samples fed so far

    def until(self, seconds: float) -> None:
        end = min(len(self.sound), int(seconds * AUDIO_RATE))
        while self.done < end:
            piece = np.ascontiguousarray(self.sound[self.done:self.done + self.BLOCK].T)
            frame = self.av.AudioFrame.from_ndarray(piece, format="fltp", layout=self.layout)
            frame.sample_rate = AUDIO_RATE
            frame.pts = self.done
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.done += piece.shape[1]

    def finish(self) -> None:
        self.until(len(self.sound) / AUDIO_RATE + 1.0)
        for packet in self.stream.encode():
            self.container.mux(packet)
