"""Operators: bake (modal from the UI, synchronous from scripts), cancel, sound strip, clear,
mapping table, targets and model helpers.

Every operator turns the core's ``A2XError`` into ``self.report({'ERROR'}, ...)``; a
greyed-out button says why through ``poll_message_set``. Heavy imports happen inside
``execute()``/``invoke()`` so that enabling the add-on stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import Operator

from . import bake, live, preferences
from .session import (
    VALUE_ARGUMENTS,
    BakeSession,
    PrintedProgress,
    _animator,
    gather_request,
    model_spec,
    shape_names,
    target_objects,
)

_log = logging.getLogger("a2x_core.blender")


def _failure(error: BaseException) -> str:
    """One line for the user: the core's message, or the type of an unexpected error (whose
    traceback goes to the system console through the ``a2x`` logger)."""
    from a2x_core.errors import A2XError

    if isinstance(error, A2XError):
        return str(error)
    _log.error("a2x: unexpected error", exc_info=error)
    return f"a2x: unexpected {type(error).__name__}: {error} (details in the system console)"


def _report(op: Operator, lines: list[tuple[str, str]]) -> str:
    for level, text in lines:
        op.report({level}, text)
    return lines[-1][1] if lines else ""


def _redraw(context: bpy.types.Context) -> None:
    screen = getattr(context, "screen", None)
    for area in getattr(screen, "areas", ()):
        if area.type in {"VIEW_3D", "SEQUENCE_EDITOR", "DOPESHEET_EDITOR", "GRAPH_EDITOR"}:
            area.tag_redraw()


@contextlib.contextmanager
def undo_step(name: str, *, from_ui: bool) -> Iterator[None]:
    """Make the change in the block one undo step of its own, named ``a2x <name>``.

    The operators push their own steps (they have no ``UNDO`` flag): Blender pushes none for
    an operator a script calls, and a script's own changes are not on the undo stack, so
    from a script the state before the change is pushed first (``bpy.ops.ed.undo()`` right
    after a scripted bake brings back exactly that state). From the UI the stack already
    ends at the current state: only the step after is pushed, as Blender would.
    """
    if not from_ui:
        bpy.ops.ed.undo_push(message=f"Before a2x {name}")
    yield
    bpy.ops.ed.undo_push(message=f"a2x {name}")


def take_panel_values(op: Operator, settings: Any) -> None:
    """Fill the operator's non-string arguments the caller did not set from the panel, so the
    panel's Bake button (and F3) bake what the panel shows, and the Info log says so."""
    for name in VALUE_ARGUMENTS:
        if not op.properties.is_property_set(name):
            setattr(op, name, getattr(settings, name))


def _panel_reason(context: bpy.types.Context) -> str:
    """Why the panel's Bake button cannot run with the panel's settings ("" = it can)."""
    settings = context.scene.a2x
    if settings.audio_source == "STRIP":
        if not any(s.name == settings.sound_strip for s in bake.sound_strips(context.scene)):
            return "Pick one of the scene's sound strips"
    elif not settings.audio_path:
        return "Choose an audio file"
    elif not os.path.isfile(bpy.path.abspath(settings.audio_path)):
        return "The audio file does not exist"
    if settings.model == "FILE" and not settings.model_path:
        return "Choose a model.json, or use the default model"
    if settings.model == "FOLDER" and not settings.model_entry:
        return "Pick a model from the model folders"
    emotion_model = settings.emotion_model_path.strip()
    if settings.model != "DEFAULT" and emotion_model:
        if not os.path.exists(bpy.path.abspath(emotion_model)):
            return "The emotion model does not exist (Emotions: Emotion Model)"
    try:
        target_objects(context)
    except Exception as error:  # noqa: BLE001 - any reason becomes the tooltip
        return str(error)[0].upper() + str(error)[1:]
    return ""


# --------------------------------------------------------------------------- bake / cancel


class A2X_OT_bake(Operator):
    """Animate the shape keys from speech audio (runs in the background; Esc cancels)"""

    bl_idname = "a2x.bake"
    bl_label = "Bake"
    bl_options = {"REGISTER"}  # undo steps are pushed by undo_step(), from scripts too

    audio_path: StringProperty(  # type: ignore[valid-type]
        name="Audio", subtype="FILE_PATH", options={"SKIP_SAVE"},
        description='Audio file ("" = the panel\'s audio: its file or sound strip)',
    )  # fmt: skip
    object_name: StringProperty(  # type: ignore[valid-type]
        name="Objects", options={"SKIP_SAVE"},
        description='Target object name(s), comma-separated ("" = the panel\'s targets, else '
        "the active object)",
    )  # fmt: skip
    model: StringProperty(  # type: ignore[valid-type]
        name="Model", options={"SKIP_SAVE"},
        description='"default" or a model.json path ("" = the panel\'s model)',
    )  # fmt: skip
    start_frame: IntProperty(  # type: ignore[valid-type]
        name="Start Frame", default=1, options={"SKIP_SAVE"},
        description="Scene frame where the audio starts (audio from a sound strip starts "
        "where the strip sits)",
    )  # fmt: skip
    transcript: StringProperty(  # type: ignore[valid-type]
        name="Transcript", options={"SKIP_SAVE"},
        description='The words spoken ("" = the panel\'s transcript)',
    )  # fmt: skip
    language: StringProperty(  # type: ignore[valid-type]
        name="Language", options={"SKIP_SAVE"},
        description='Default model: the spoken language, e.g. "de" ("" = the panel\'s)',
    )  # fmt: skip
    use_nla: BoolProperty(  # type: ignore[valid-type]
        name="Bake to NLA Strip", default=False, options={"SKIP_SAVE"},
        description="Put the bake on an NLA strip and leave the active Action alone",
    )  # fmt: skip
    add_sound_strip: BoolProperty(  # type: ignore[valid-type]
        name="Sound Strip", default=True, options={"SKIP_SAVE"},
        description="Add (or move) the add-on's sound strip at the start frame",
    )  # fmt: skip
    emotion_model: StringProperty(  # type: ignore[valid-type]
        name="Emotion Model", subtype="FILE_PATH", options={"SKIP_SAVE"},
        description='Audio2Emotion model.json ("" = the panel\'s, "none" = none)',
    )  # fmt: skip
    identity: StringProperty(  # type: ignore[valid-type]
        name="Identity", options={"SKIP_SAVE"},
        description='Diffusion models: the identity to animate ("" = the panel\'s)',
    )  # fmt: skip
    key_emotions: BoolProperty(  # type: ignore[valid-type]
        name="Key Emotions", default=False, options={"SKIP_SAVE"},
        description="Also key the emotion curves as custom properties of the targets",
    )  # fmt: skip
    execution: EnumProperty(  # type: ignore[valid-type]
        name="Execution", default="AUTO", options={"SKIP_SAVE"},
        items=[("AUTO", "Auto", "In the background from the UI, synchronously from scripts"),
               ("SYNC", "Synchronous", "Return when the bake is done"),
               ("MODAL", "Background", "Run inference off the main thread")],
    )  # fmt: skip

    _session: BakeSession | None = None
    _timer: Any = None
    _cancelling: int = 0
    _from_ui: bool = False  # invoked from the panel or F3 (else a script)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        reason = ""
        if context.window_manager.a2x_job.running:
            reason = "A bake is running; Esc or Cancel stops it"
        elif live.active() is not None:
            reason = "Live is running; Stop it first"
        elif context.area is not None and context.area.type == "VIEW_3D":
            reason = _panel_reason(context)
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def _start(self, context: bpy.types.Context) -> BakeSession | None:
        try:
            return BakeSession(gather_request(context, self)).start()
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            self.report({"ERROR"}, _failure(error))
            return None

    def _finish(self, context: bpy.types.Context, session: BakeSession) -> set[str]:
        state = context.window_manager.a2x_job
        try:
            with undo_step("Bake", from_ui=self._from_ui):
                lines = session.apply()
        except Exception as error:  # noqa: BLE001
            state.message = _failure(error)
            self.report({"ERROR"}, state.message)
            return {"CANCELLED"}
        state.message = _report(self, lines)
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        from a2x_core.errors import CancelledError

        if self.execution == "MODAL" and not bpy.app.background:
            return self.invoke(context, None)
        session = self._start(context)
        if session is None:
            return {"CANCELLED"}
        printed = None if self._from_ui else PrintedProgress()
        try:
            session.wait(printed)
        except CancelledError:
            self.report({"WARNING"}, "a2x: bake cancelled")
            return {"CANCELLED"}
        except Exception as error:  # noqa: BLE001
            self.report({"ERROR"}, _failure(error))
            return {"CANCELLED"}
        if printed is not None:
            printed.finish()
        return self._finish(context, session)

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        if event is not None:  # the panel's button or F3, not a script's execution="MODAL"
            self._from_ui = True
            take_panel_values(self, context.scene.a2x)
        if bpy.app.background or self.execution == "SYNC" or context.window is None:
            return self.execute(context)
        session = self._start(context)
        if session is None:
            return {"CANCELLED"}
        if session.results is not None:  # cached: nothing to wait for
            return self._finish(context, session)
        self._session, self._cancelling = session, 0
        state = context.window_manager.a2x_job
        state.running, state.cancel_requested = True, False
        state.progress, state.stage, state.message = 0.0, "starting", ""
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end(self, context: bpy.types.Context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.a2x_job.running = False
        wm.a2x_job.cancel_requested = False
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        _redraw(context)

    def modal(self, context: bpy.types.Context, event: Any) -> set[str]:
        from a2x_core.errors import CancelledError

        state = context.window_manager.a2x_job
        session = self._session
        if (event.type == "ESC" and event.value == "PRESS") or state.cancel_requested:
            if not self._cancelling:
                self._cancelling = 1  # paint "Cancelling" first, stop on the next tick
                state.stage, state.cancel_requested = "Cancelling...", False
                _redraw(context)
            if event.type == "ESC":
                return {"RUNNING_MODAL"}
        if event.type != "TIMER" or event.timer is not self._timer:
            return {"PASS_THROUGH"}
        if self._cancelling == 1:
            self._cancelling = 2
            session.cancel()
        try:
            progress = session.poll()
        except CancelledError:
            self._end(context)
            state.message = "Bake cancelled"
            self.report({"WARNING"}, "a2x: bake cancelled")
            return {"CANCELLED"}
        except Exception as error:  # noqa: BLE001 - the timer must never be left running
            self._end(context)
            state.message = _failure(error)
            self.report({"ERROR"}, state.message)
            return {"CANCELLED"}
        if progress is not None:
            if not self._cancelling:
                state.progress, state.stage = progress.fraction, progress.stage
            pct = int(round(state.progress * 100))
            context.workspace.status_text_set(f"a2x: {state.stage} {pct}%   (Esc to cancel)")
            _redraw(context)
            return {"PASS_THROUGH"}
        state.progress, state.stage = 1.0, "baking keys"
        self._end(context)
        return self._finish(context, session)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the operator (file load, quit): stop the job and clean up."""
        if self._session is not None:
            self._session.cancel()
        self._end(context)


class A2X_OT_cancel(Operator):
    """Stop the running bake"""

    bl_idname = "a2x.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not context.window_manager.a2x_job.running:
            cls.poll_message_set("No bake is running")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.window_manager.a2x_job.cancel_requested = True
        return {"FINISHED"}


# --------------------------------------------------------------------------- live preview


class A2X_OT_live_start(Operator):
    """Drive the face's shape keys live from the microphone or a file at real-time pace"""

    bl_idname = "a2x.live_start"
    bl_label = "Live"
    bl_options = {"REGISTER"}

    real_time: BoolProperty(  # type: ignore[valid-type]
        name="Real Time", default=True, options={"SKIP_SAVE", "HIDDEN"},
        description="Play a Live file at real-time pace (off: as fast as the model runs)",
    )  # fmt: skip

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        reason = ""
        if live.active() is not None:
            reason = "Live is running; Stop ends it"
        elif context.window_manager.a2x_job.running:
            reason = "A bake is running"
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            preview = live.start(context, real_time=self.real_time)
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            context.window_manager.a2x_live.message = _failure(error)
            self.report({"ERROR"}, context.window_manager.a2x_live.message)
            return {"CANCELLED"}
        for warning in preview.warnings:
            self.report({"WARNING"}, warning)
        _redraw(context)
        return {"FINISHED"}


class A2X_OT_live_stop(Operator):
    """Stop Live: the shape keys get their values back; with Record on, the take is baked as
    an a2x Action (undoable)"""

    bl_idname = "a2x.live_stop"
    bl_label = "Stop"
    bl_options = {"REGISTER"}  # the bake's undo step is pushed by undo_step()

    _from_ui: bool = False

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if live.active() is None:
            cls.poll_message_set("Live is not running")
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        self._from_ui = True
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        state = context.window_manager.a2x_live
        try:
            preview, take = live.stop(context)
        except Exception as error:  # noqa: BLE001 - the source's or the model's error
            state.message = f"Live stopped: {_failure(error)}"
            self.report({"ERROR"}, state.message)
            _redraw(context)
            return {"CANCELLED"}
        if preview is None:
            return {"CANCELLED"}
        state.message = live.take_summary(preview, take)
        self.report({"INFO"}, state.message)
        if take is not None and take.num_frames:
            try:
                with undo_step("Live Take", from_ui=self._from_ui):
                    lines = live.bake_take(context, preview, take)
            except Exception as error:  # noqa: BLE001
                state.message = f"the take was not baked: {_failure(error)}"
                self.report({"ERROR"}, state.message)
                return {"CANCELLED"}
            state.message = _report(self, lines)
        _redraw(context)
        return {"FINISHED"}


# --------------------------------------------------------------------------- sound strip, clear


class A2X_OT_sound_strip(Operator):
    """Add the audio as a sound strip at the start frame, or move the add-on's strip there"""

    bl_idname = "a2x.sound_strip"
    bl_label = "Add/Sync Sound Strip"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = context.scene.a2x
        reason = ""
        if settings.audio_source == "STRIP":
            reason = "The audio already comes from a sound strip"
        elif not settings.audio_path:
            reason = "Choose an audio file first"
        elif not os.path.isfile(bpy.path.abspath(settings.audio_path)):
            reason = "The audio file does not exist"
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.a2x
        path = bpy.path.abspath(settings.audio_path)
        strip = bake.sync_sound_strip(context.scene, path, settings.start_frame)
        self.report({"INFO"}, f"a2x: sound strip {strip.name!r} at frame {int(strip.frame_start)}")
        return {"FINISHED"}


class A2X_OT_clear(Operator):
    """Remove the add-on's baked animation from the targets (your own Actions stay)"""

    bl_idname = "a2x.clear"
    bl_label = "Clear Baked Animation"
    bl_options = {"REGISTER"}  # undo steps are pushed by undo_step(), from scripts too

    object_name: StringProperty(  # type: ignore[valid-type]
        name="Objects", options={"SKIP_SAVE"}, description="Default: the panel's targets"
    )
    remove_sound_strip: BoolProperty(  # type: ignore[valid-type]
        name="Remove Sound Strip", default=False, description="Also remove the add-on's sound strip"
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.window_manager.a2x_job.running:
            cls.poll_message_set("A bake is running")
            return False
        if context.area is not None and context.area.type == "VIEW_3D":
            try:
                keys = bake.shape_key_blocks(target_objects(context))
            except Exception:  # noqa: BLE001 - no targets
                keys = []
            if not any(_has_bake(k) for k in keys):
                cls.poll_message_set("Nothing baked by a2x on the target objects")
                return False
        return True

    _from_ui: bool = False

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        self._from_ui = event is not None
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        from a2x_core.errors import A2XError

        try:
            keys = bake.shape_key_blocks(target_objects(context, self.object_name))
        except A2XError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        with undo_step("Clear", from_ui=self._from_ui):
            removed = sum(bake.clear_key(k) for k in keys)
            if self.remove_sound_strip:
                strip = bake.owned_sound_strip(context.scene)
                if strip is not None:
                    bake._top_strips(context.scene.sequence_editor).remove(strip)
        self.report({"INFO"}, f"a2x: removed {removed} baked Action(s)")
        return {"FINISHED"}


def _has_bake(key: bpy.types.Key) -> bool:
    ad = key.animation_data
    if ad is None:
        return False
    return bake.is_owned(ad.action) or any(
        bake.is_owned(s.action) for t in ad.nla_tracks for s in t.strips
    )


# --------------------------------------------------------------------------- targets, mapping


class A2X_OT_target_add(Operator):
    """Add the selected objects that have shape keys to the targets"""

    bl_idname = "a2x.target_add"
    bl_label = "Add Selected"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        objects = getattr(context, "selected_objects", None) or []
        if not any(getattr(getattr(o, "data", None), "shape_keys", None) for o in objects):
            cls.poll_message_set("Select objects with shape keys")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.a2x
        present = {t.object for t in settings.targets}
        for obj in context.selected_objects:
            if getattr(getattr(obj, "data", None), "shape_keys", None) and obj not in present:
                settings.targets.add().object = obj
        return {"FINISHED"}


class _RemoveHighlightedRow(Operator):
    """Shared body of the list "remove" buttons: drop the highlighted row, keep a valid index."""

    bl_options = {"REGISTER", "UNDO"}
    collection = ""
    index = ""
    empty_message = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not len(getattr(context.scene.a2x, cls.collection)):
            cls.poll_message_set(cls.empty_message)
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.a2x
        rows = getattr(settings, self.collection)
        rows.remove(getattr(settings, self.index))
        setattr(settings, self.index, max(0, min(getattr(settings, self.index), len(rows) - 1)))
        return {"FINISHED"}


class A2X_OT_target_remove(_RemoveHighlightedRow):
    """Remove the highlighted target"""

    bl_idname = "a2x.target_remove"
    bl_label = "Remove Target"
    collection, index, empty_message = "targets", "targets_index", "The target list is empty"


def fill_mapping(context: bpy.types.Context, keep_edits: bool = True) -> tuple[int, int, int]:
    """Fill the mapping table from the targets' shape names, one shape per source curve for
    each target's shape keys; returns (rows, unmatched, candidates)."""
    from a2x_core.names import ARKIT_52
    from a2x_core.retarget import auto_map

    settings = context.scene.a2x
    names: list[str] = []
    chosen: dict[str, str] = {}  # target → source, over every target's shape keys
    others: dict[str, str] = {}
    unmatched: list[str] = []
    for key in bake.shape_key_blocks(target_objects(context)):
        key_names = shape_names(key)
        names.extend(n for n in key_names if n not in names)
        found = auto_map(key_names)
        chosen.update((t.target, t.source) for t in found.targets if t.target not in chosen)
        others.update((c.target, c.source) for c in found.candidates)
        unmatched.extend(n for n in found.unmatched_targets if n not in unmatched)
    old = {r.target: (r.source, r.multiplier, r.offset, r.enabled) for r in settings.mapping}
    extra = [r for r in old if r not in chosen and r in names]
    settings.mapping.clear()
    for target, source in chosen.items():
        row = settings.mapping.add()
        row.target, row.source = target, source
        if keep_edits and target in old:
            row.source, row.multiplier, row.offset, row.enabled = old[target]
    if keep_edits:  # rows the artist added by hand (auto-matching missed or left them out)
        for name in extra:
            row = settings.mapping.add()
            row.target = name
            row.source, row.multiplier, row.offset, row.enabled = old[name]
    mapped = {r.target for r in settings.mapping}
    settings.unmatched_shapes.clear()
    for name in unmatched:
        if name not in mapped:
            settings.unmatched_shapes.add().name = name
    settings.candidates.clear()
    for target, source in others.items():
        if target not in mapped and target not in chosen:
            item = settings.candidates.add()
            item.name, item.source = target, source
    used = {r.source for r in settings.mapping if r.enabled} | set(chosen.values())
    settings.unused_sources.clear()
    for name in ARKIT_52:
        if name not in used:
            settings.unused_sources.add().name = name
    return len(settings.mapping), len(settings.unmatched_shapes), len(settings.candidates)


class A2X_OT_mapping_auto(Operator):
    """Fill the mapping table by matching the targets' shape names to ARKit names"""

    bl_idname = "a2x.mapping_auto"
    bl_label = "Match Names"
    bl_options = {"REGISTER", "UNDO"}

    keep_edits: BoolProperty(  # type: ignore[valid-type]
        name="Keep Edits", default=True,
        description="Keep sources, multipliers and offsets already set for a shape",
    )  # fmt: skip

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        try:
            target_objects(context)
        except Exception as error:  # noqa: BLE001
            cls.poll_message_set(str(error))
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        from a2x_core.errors import A2XError

        try:
            rows, unmatched, candidates = fill_mapping(context, self.keep_edits)
        except A2XError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        text = f"a2x: {rows} shapes mapped, {unmatched} unmatched"
        if candidates:
            text += (f", {candidates} more matching a curve that already drives a shape "
                     "(Shape Mapping: Other Matching Shapes)")  # fmt: skip
        self.report({"INFO"}, text)
        return {"FINISHED"}


class A2X_OT_mapping_add(Operator):
    """Add a row: drive one more shape from the highlighted row's source"""

    bl_idname = "a2x.mapping_add"
    bl_label = "Add Mapping Row"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.a2x
        source = None
        if 0 <= settings.mapping_index < len(settings.mapping):
            source = settings.mapping[settings.mapping_index].source
        row = settings.mapping.add()
        if source:
            row.source = source
        settings.mapping_index = len(settings.mapping) - 1
        return {"FINISHED"}


class A2X_OT_mapping_add_candidate(Operator):
    """Drive this shape too: add it to the table with the curve it matches (shapes add up,
    so two shapes of one curve move the face twice as far)"""

    bl_idname = "a2x.mapping_add_candidate"
    bl_label = "Add Matching Shape"
    bl_options = {"REGISTER", "UNDO"}

    target: StringProperty(  # type: ignore[valid-type]
        name="Shape", description="A shape listed under Other Matching Shapes"
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.a2x
        index = settings.candidates.find(self.target)
        if index < 0:
            self.report({"ERROR"}, f"a2x: {self.target!r} is not among the other matching shapes; "
                        "press Match Names")  # fmt: skip
            return {"CANCELLED"}
        source = settings.candidates[index].source
        row = settings.mapping.add()
        row.target, row.source = self.target, source
        settings.candidates.remove(index)
        settings.mapping_index = len(settings.mapping) - 1
        self.report({"INFO"}, f"a2x: {self.target} now follows {source} too")
        return {"FINISHED"}


class A2X_OT_mapping_remove(_RemoveHighlightedRow):
    """Remove the highlighted mapping row"""

    bl_idname = "a2x.mapping_remove"
    bl_label = "Remove Mapping Row"
    collection, index, empty_message = "mapping", "mapping_index", "The mapping table is empty"


# --------------------------------------------------------------------------- models


def rescan_models(context: bpy.types.Context) -> int:
    from a2x_core.models.registry import list_models

    entries = context.window_manager.a2x_models
    entries.clear()
    for found in list_models(preferences.model_folders(context)):
        if found.kind in {"default", "invalid", "emotion"}:  # emotion models are not faces
            continue
        entry = entries.add()
        entry.name = f"{found.description} ({found.kind})"
        entry.path = found.spec
    return len(entries)


class A2X_OT_models_rescan(Operator):
    """Look for models in the folders of the add-on preferences"""

    bl_idname = "a2x.models_rescan"
    bl_label = "Rescan Models"
    bl_options = {"INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        count = rescan_models(context)
        self.report({"INFO"}, f"a2x: {count} model(s) found")
        return {"FINISHED"}


def load_model_info(context: bpy.types.Context, summary: dict[str, Any], spec: str) -> None:
    """Fill the panel from a model summary (``a2x_core.worker.model_summary``): the emotion
    sliders (values kept by name), the identities (choice kept by name) and the kind."""
    settings = context.scene.a2x
    old = {e.name: e.value for e in settings.emotions}
    settings.emotions.clear()
    for name in summary.get("emotion_names", []):
        item = settings.emotions.add()
        item.name, item.value = name, old.get(name, 0.0)
    # the enum is read only while it lists identities (otherwise its stored index matches
    # no item: Blender warns and answers "")
    chosen = settings.identity if len(settings.identities) else ""
    settings.identities.clear()
    for name in summary.get("identities", []):
        settings.identities.add().name = name
    names = [i.name for i in settings.identities]
    if names:
        settings.identity = chosen if chosen in names else names[0]
    settings.model_kind = summary.get("kind", "")
    settings.model_info_for = spec
    if not settings.emotions:
        settings.use_emotions = False


class A2X_OT_model_info(Operator):
    """Load the model and list the emotions it accepts (and a diffusion model's identities)"""

    bl_idname = "a2x.model_info"
    bl_label = "Load Model Info"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.scene.a2x.model == "DEFAULT":
            cls.poll_message_set("The default model has no emotions or identities")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        from a2x_core import InferenceOptions
        from a2x_core.worker import model_summary, worker_model_info

        prefs = preferences.get(context)
        try:
            spec = model_spec(context)
            if prefs is not None and prefs.external_python:
                summary = worker_model_info(bpy.path.abspath(prefs.external_python), spec)
            else:
                backend = prefs.backend if prefs else "auto"
                summary = model_summary(_animator(spec, InferenceOptions(backend=backend)).model)
        except Exception as error:  # noqa: BLE001 - reported, never a traceback dialog
            self.report({"ERROR"}, _failure(error))
            return {"CANCELLED"}
        load_model_info(context, summary, spec)
        settings = context.scene.a2x
        parts = [f"{len(settings.emotions)} emotions" if len(settings.emotions) else "no emotions"]
        if len(settings.identities):
            parts.append(f"identities {', '.join(i.name for i in settings.identities)}")
        self.report({"INFO"}, f"a2x: model {summary.get('name') or spec}: {'; '.join(parts)}")
        return {"FINISHED"}


classes = (
    A2X_OT_bake,
    A2X_OT_cancel,
    A2X_OT_live_start,
    A2X_OT_live_stop,
    A2X_OT_sound_strip,
    A2X_OT_clear,
    A2X_OT_target_add,
    A2X_OT_target_remove,
    A2X_OT_mapping_auto,
    A2X_OT_mapping_add,
    A2X_OT_mapping_add_candidate,
    A2X_OT_mapping_remove,
    A2X_OT_models_rescan,
    A2X_OT_model_info,
)
