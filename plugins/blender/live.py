"""Live preview: a microphone (or a file at real-time pace) drives the target faces' shape keys
as the model streams, and Record bakes what was shown as a normal a2x Action.

The model runs on the core's :class:`a2x_core.live.session.LiveSession` thread; :func:`tick`
(a ``bpy.app.timers`` function on the main thread) only reads the newest frame and sets the
shape-key values through the panel's current mapping, so the UI never waits. The values the
shapes had when Live started are put back when it stops; a recorded take goes through the
bake's own code (:meth:`session.BakeSession.apply`), with its ownership rules and undo step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy

from . import bake, preferences
from .session import (
    BakeRequest,
    BakeSession,
    _animator,
    _error,
    emotions_and_identity,
    model_spec,
    rows_for_key,
    table_rows,
    target_objects,
)

#: How often :func:`tick` runs, in seconds (a 60 Hz display).
TICK_S = 1 / 60

_ACTIVE: LivePreview | None = None
#: How to get a microphone when Blender's own Python has no sounddevice/PortAudio.
MICROPHONE_HINT = ("set an external runtime in the add-on preferences (a Python with "
                   "pip install 'a2x[live]'; on Linux also libportaudio2), or use a Live file")  # fmt: skip


@dataclass
class LivePreview:
    """One running Live: its session, the shape keys it drives and their values before."""

    session: Any  # LiveSession
    scene_name: str
    model: str
    key_names: list[str]
    object_names: list[list[str]]
    saved: dict[str, dict[str, float]]  # Key name → shape → value when Live started
    audio_path: str = ""
    warnings: list[str] = field(default_factory=list)
    _table: list = field(default_factory=list)
    _rows: list = field(default_factory=list)
    _shown: Any = None

    def keys(self) -> list[bpy.types.Key]:
        found = []
        for name in self.key_names:
            key = bpy.data.shape_keys.get(name)
            if key is None:
                raise _error(f"shape keys {name!r} were removed while Live ran", "start Live again")
            found.append(key)
        return found

    def rows(self, settings: Any) -> list[list]:
        """The mapping rows per Key for the panel's table as it is now (recomputed only when
        the table changed), the same rows a bake takes."""
        table = table_rows(settings)
        if table != self._table or not self._rows:
            self._rows = [rows_for_key(key, table, []) for key in self.keys()]
            self._table = table
        return self._rows

    def show_latest(self, settings: Any) -> bool:
        """Set the shape keys to the newest frame (True when there was a new one)."""
        from a2x_core.retarget import frame_values

        frame = self.session.latest()
        if frame is None or frame is self._shown:
            return False
        for key, rows in zip(self.keys(), self.rows(settings), strict=True):
            blocks = key.key_blocks
            for target, value in frame_values(frame, rows).items():
                block = blocks.get(target)
                if block is not None and block.value != value:
                    block.value = value
        self._shown = frame
        return True

    def restore(self) -> None:
        """Put back the values the shapes had when Live started (shapes still there)."""
        for key_name, values in self.saved.items():
            key = bpy.data.shape_keys.get(key_name)
            if key is None:
                continue
            for name, value in values.items():
                block = key.key_blocks.get(name)
                if block is not None:
                    block.value = value


def active() -> LivePreview | None:
    return _ACTIVE


def _live_options(context: bpy.types.Context, model: str, warnings: list[str]) -> Any:
    """The panel's model options for a stream: the scene rate, language, emotion sliders,
    identity and engine (strength, smoothing and a transcript shape a whole clip; a stream has
    none)."""
    from a2x_core import InferenceOptions
    from a2x_core.retarget import scene_fps

    scene, settings = context.scene, context.scene.a2x
    emotions, identity = emotions_and_identity(settings, model, "", warnings)
    prefs = preferences.get(context)
    return InferenceOptions(
        fps=scene_fps(scene.render.fps, scene.render.fps_base),
        language=settings.language.strip() or "auto",
        emotions=emotions,
        identity=identity,
        backend=prefs.backend if prefs else "auto",
        threads=(prefs.threads or None) if prefs else None,
    )


def _source(settings: Any, real_time: bool) -> dict[str, Any]:
    """The panel's live source in the worker's wire form (``{"file": path, "real_time": b}``
    or ``{"device": name or None}``); a missing file fails here, before anything starts."""
    from a2x_core.audio.decode import check_audio_path

    if settings.live_source == "FILE":
        chosen = settings.live_file or settings.audio_path
        if not chosen:
            raise _error("no audio file for Live", "pick a Live file (or the panel's audio file)")
        path = bpy.path.abspath(chosen)
        check_audio_path(path)
        return {"file": path, "real_time": real_time}
    return {"device": settings.live_device.strip() or None}


def _session(context: bpy.types.Context, model: str, options: Any, source: dict[str, Any],
             record: bool) -> Any:  # fmt: skip
    """A live session where the bake would run: inside Blender, or in the external runtime
    when the preferences name one (the model and the microphone are then that Python's)."""
    from a2x_core.errors import ParameterError
    from a2x_core.live.runner import open_source
    from a2x_core.live.session import LiveSession, WorkerLiveSession

    audio_path = source.get("file") or ""
    prefs = preferences.get(context)
    if prefs is not None and prefs.external_python:
        python = bpy.path.abspath(prefs.external_python)
        return WorkerLiveSession(python, model, options, source, record=record,
                                 audio_path=audio_path)  # fmt: skip
    try:
        blocks = open_source(source.get("file"), device=source.get("device"),
                             real_time=source.get("real_time", True))  # fmt: skip
    except ParameterError:
        if "file" in source:
            raise
        raise _error("the microphone needs the sounddevice package and the PortAudio library, "
                     "which Blender's Python lacks", MICROPHONE_HINT) from None  # fmt: skip

    def load() -> Any:
        return _animator(model, options).model

    return LiveSession(load, options, blocks, record=record, audio_path=audio_path)


def start(context: bpy.types.Context, real_time: bool = True) -> LivePreview:
    """Start Live with the panel's targets, mapping, model and live source.

    Raises:
        A2XError: with the fix: no target, no matching shape, no audio source, an Action of
            the artist's in the way of Record (as for a bake).
    """
    global _ACTIVE
    if _ACTIVE is not None:
        raise _error("Live is already running", "press Stop first")
    settings = context.scene.a2x
    objects = target_objects(context)
    keys = bake.shape_key_blocks(objects)
    warnings: list[str] = []
    table = table_rows(settings)
    rows = [rows_for_key(key, table, warnings) for key in keys]
    if settings.live_record and not settings.use_nla:
        for key in keys:
            _refuse_artist_action(key)
    model = model_spec(context)
    if model != "default":
        model = bpy.path.abspath(model)
    options = _live_options(context, model, warnings)
    if model != "default" and settings.emotion_model_path.strip():
        warnings.append("Live uses the emotion sliders; the Emotion Model (Audio2Emotion) "
                        "applies to bakes only")  # fmt: skip
    source = _source(settings, real_time)
    session = _session(context, model, options, source, settings.live_record)
    audio_path = source.get("file") or ""
    preview = LivePreview(
        session=session, scene_name=context.scene.name, model=model,
        key_names=[k.name for k in keys],
        object_names=[[o.name for o in objects if o.data.shape_keys == k] for k in keys],
        saved={k.name: {b.name: b.value for b in k.key_blocks} for k in keys},
        audio_path=audio_path, warnings=warnings, _table=table, _rows=rows,
    )  # fmt: skip
    session.start()
    _ACTIVE = preview
    state = context.window_manager.a2x_live
    state.running, state.state, state.message = True, "loading model", ""
    state.frames = state.recorded = 0
    state.latency_ms = 0.0
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.0)
    return preview


def _refuse_artist_action(key: bpy.types.Key) -> None:
    action = bake.artist_action(key)
    if action is not None:
        raise _error(
            f"the shape keys of {bake.owner_name(key)!r} play your Action {action.name!r}, "
            "which a2x never modifies or replaces, so Record could not bake there",
            "tick 'Bake to NLA Strip' to record beside it, untick Record, or unassign it",
        )


def _redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in getattr(window.screen, "areas", ()):
            if area.type == "VIEW_3D":
                area.tag_redraw()


def tick() -> float | None:
    """The timer: show the newest frame and the numbers; never waits on the model. A failed
    session ends Live here (values restored, the error in the panel); a file that ended
    keeps its last frame until Stop. Returns when to run again (None: done)."""
    live = _ACTIVE
    if live is None:
        return None
    scene = bpy.data.scenes.get(live.scene_name)
    state = bpy.context.window_manager.a2x_live
    try:
        if scene is None:
            raise _error(f"scene {live.scene_name!r} is gone", "start Live again")
        live.session.recording = scene.a2x.live_record
        live.show_latest(scene.a2x)
    except Exception as error:  # noqa: BLE001 - the timer must never be left half done
        end(cancel=True)
        state.message = _message(error)
        print(f"a2x: Live stopped: {state.message}")
        _redraw()
        return None
    session = live.session
    if session.state == "failed":
        end(cancel=True)
        state.message = f"Live stopped: {_message(session.error)}"
        print(f"a2x: {state.message}")
        _redraw()
        return None
    stats = session.stats
    state.state = {"loading": "loading model", "running": "live",
                   "ended": "audio ended: press Stop"}.get(session.state, session.state)  # fmt: skip
    state.frames, state.recorded = stats.frames, session.recorded_frames
    if stats.latencies_s:
        state.latency_ms = stats.latencies_s[-1] * 1000
    _redraw()
    return TICK_S


def _message(error: BaseException | None) -> str:
    from a2x_core.errors import A2XError

    if isinstance(error, A2XError):
        return str(error)
    return f"unexpected {type(error).__name__}: {error}"


def end(cancel: bool = False, restore: bool = True) -> Any:
    """Stop the active Live: the session ends (its tail frames recorded), the shape keys get
    their values back (``restore``; not after a file load: those keys are gone) and the timer
    stops. Returns the take (None when cancelled or when nothing ran).

    Raises:
        A2XError: the source's or the model's error that ended the session.
    """
    global _ACTIVE
    live, _ACTIVE = _ACTIVE, None
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    state = getattr(bpy.context.window_manager, "a2x_live", None)
    if state is not None:
        state.running, state.state = False, ""
    if live is None:
        return None
    try:
        if cancel:
            live.session.cancel()
            return None
        return live.session.stop()
    finally:
        if restore:
            live.restore()
        stats = live.session.stats
        if state is not None:
            state.frames, state.recorded = stats.frames, live.session.recorded_frames
            if stats.latencies_s:
                state.latency_ms = stats.percentile_ms(50)


def stop(context: bpy.types.Context) -> tuple[LivePreview | None, Any]:
    """End Live for the Stop button: the preview and its take (None when nothing ran)."""
    live = _ACTIVE
    if live is None:
        return None, None
    scene = bpy.data.scenes.get(live.scene_name)
    if scene is not None:
        live.session.recording = scene.a2x.live_record
    return live, end()


def bake_take(context: bpy.types.Context, live: LivePreview, take: Any) -> list[tuple[str, str]]:
    """Bake a recorded take as a normal a2x Action at the panel's start frame, through the
    bake's own code (ownership checks, NLA option, interpolation), with the current mapping.
    The sound strip is placed only for a file recorded from its start."""
    scene = bpy.data.scenes.get(live.scene_name) or context.scene
    settings = scene.a2x
    warnings = list(live.warnings)
    table = table_rows(settings)
    keys = live.keys()
    rows = [rows_for_key(key, table, warnings) for key in keys]
    whole = bool(live.audio_path) and live.session.recorded_from == 0
    request = BakeRequest(
        scene_name=scene.name, audio_path=live.audio_path, model=live.model,
        key_names=live.key_names, rows=rows, fps=live.session.options.fps,
        start_frame=int(settings.start_frame), options=live.session.options,
        use_nla=settings.use_nla, add_sound_strip=settings.add_sound_strip and whole,
        interpolation=settings.interpolation, external_python="", warnings=warnings,
        object_names=live.object_names,
    )  # fmt: skip
    baking = BakeSession(request)
    baking.results = [take]
    return baking.apply()


def take_summary(live: LivePreview, take: Any) -> str:
    stats = live.session.stats
    return (f"a2x: Live: {stats.frames} frames from {stats.received_s:.1f} s of audio, latency "
            f"p50 {stats.percentile_ms(50):.0f} ms, p99 {stats.percentile_ms(99):.0f} ms; "
            f"recorded {take.num_frames if take is not None else 0}")  # fmt: skip
