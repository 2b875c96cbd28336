"""The "a2x" tab of the 3D view's sidebar: audio, model, bake buttons and progress, then
targets, the mapping table, timing and emotions as sub-panels."""

from __future__ import annotations

import bpy
from bpy.types import Panel, UIList

from . import bake


class _A2XPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "a2x"


def _first_key(context: bpy.types.Context) -> bpy.types.Key | None:
    settings = context.scene.a2x
    objects = [t.object for t in settings.targets if t.object is not None]
    if not objects and context.active_object is not None:
        objects = [context.active_object]
    keys = bake.shape_key_blocks(objects)
    return keys[0] if keys else None


class A2X_UL_targets(UIList):
    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_prop, _index):
        layout.prop(item, "object", text="", emboss=False, icon="OUTLINER_OB_MESH")


class A2X_UL_mapping(UIList):
    """One row per target shape: on/off, shape, source curve, multiplier, offset."""

    def draw_item(self, context, layout, _data, item, _icon, _active_data, _active_prop, _index):
        row = layout.row(align=True)
        row.prop(item, "enabled", text="")
        key = _first_key(context)
        sub = row.row(align=True)
        sub.active = item.enabled
        if key is not None:
            sub.prop_search(item, "target", key, "key_blocks", text="")
        else:
            sub.prop(item, "target", text="")
        sub.prop(item, "source", text="")
        sub.prop(item, "multiplier", text="")
        sub.prop(item, "offset", text="")

    def filter_items(self, _context, data, propname):
        rows = getattr(data, propname)
        flags = [self.bitflag_filter_item] * len(rows)
        if self.filter_name:
            text = self.filter_name.lower()
            flags = [
                self.bitflag_filter_item
                if text in r.target.lower() or text in r.source.lower()
                else 0
                for r in rows
            ]
        return flags, []


def _loaded_model_is_current(context: bpy.types.Context) -> bool:
    """True when the loaded model info belongs to the panel's model choice."""
    from .session import model_spec

    try:
        return context.scene.a2x.model_info_for == model_spec(context)
    except Exception:  # noqa: BLE001 - no model chosen yet
        return False


def _draw_identity(context: bpy.types.Context, layout: bpy.types.UILayout) -> None:
    """Diffusion models animate one of several identities: the enum, once the info is loaded."""
    settings = context.scene.a2x
    row = layout.row(align=True)
    if settings.model_kind == "diffusion" and len(settings.identities):
        if _loaded_model_is_current(context):
            row.prop(settings, "identity")
        else:
            row.label(text="Identities of another model", icon="ERROR")
    row.operator("a2x.model_info", text="" if len(settings.identities) else "Load Model Info",
                 icon="FILE_REFRESH")  # fmt: skip


class A2X_PT_main(_A2XPanel, Panel):
    bl_label = "a2x"
    bl_idname = "A2X_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.a2x
        state = context.window_manager.a2x_job

        col = layout.column()
        col.row().prop(settings, "audio_source", expand=True)
        if settings.audio_source == "FILE":
            col.prop(settings, "audio_path", text="")
        else:
            editor = context.scene.sequence_editor
            if editor is not None:
                collection = "strips_all" if hasattr(editor, "strips_all") else "sequences_all"
                col.prop_search(settings, "sound_strip", editor, collection, text="", icon="SOUND")
            else:
                col.label(text="This scene has no sound strips", icon="INFO")

        col = layout.column()
        col.prop(settings, "model")
        if settings.model == "FOLDER":
            row = col.row(align=True)
            row.prop_search(settings, "model_entry", context.window_manager, "a2x_models", text="")
            row.operator("a2x.models_rescan", text="", icon="FILE_REFRESH")
        elif settings.model == "FILE":
            col.prop(settings, "model_path", text="")
        if settings.model != "DEFAULT":
            _draw_identity(context, col)

        layout.separator()
        if state.running:
            progress = getattr(layout, "progress", None)
            text = f"{state.stage} {int(round(state.progress * 100))}%"
            if progress is not None:
                progress(factor=state.progress, type="BAR", text=text)
            else:
                layout.prop(state, "progress", text=state.stage, slider=True)
            layout.operator("a2x.cancel", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.4
            row.operator("a2x.bake", icon="SHAPEKEY_DATA")
            row = layout.row(align=True)
            row.prop(settings, "use_nla")
            row.prop(settings, "add_sound_strip", toggle=False)
            row = layout.row(align=True)
            row.operator("a2x.sound_strip", icon="SOUND")
            row.operator("a2x.clear", icon="TRASH", text="Clear")
            if state.message:
                layout.label(text=state.message, icon="INFO")


class A2X_PT_live(_A2XPanel, Panel):
    """Live preview: the source, Live/Stop, Record, and what the running Live shows."""

    bl_label = "Live"
    bl_parent_id = "A2X_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.a2x
        live = context.window_manager.a2x_live
        col = layout.column()
        col.enabled = not live.running
        col.row().prop(settings, "live_source", expand=True)
        if settings.live_source == "MICROPHONE":
            col.prop(settings, "live_device", text="Device")
        else:
            col.prop(settings, "live_file", text="")
        row = layout.row(align=True)
        row.scale_y = 1.4
        if live.running:
            row.operator("a2x.live_stop", icon="PAUSE")
        else:
            row.operator("a2x.live_start", icon="PLAY")
        row.prop(settings, "live_record", toggle=True, icon="REC")
        if live.running:
            layout.label(text=f"{live.state}: {live.frames} frames, latency "
                         f"{live.latency_ms:.0f} ms", icon="TIME")  # fmt: skip
            if settings.live_record:
                layout.label(text=f"Recording: {live.recorded} frames", icon="REC")
        elif live.message:
            layout.label(text=live.message, icon="INFO")


class A2X_PT_targets(_A2XPanel, Panel):
    bl_label = "Targets"
    bl_parent_id = "A2X_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.a2x
        row = layout.row()
        row.template_list(
            "A2X_UL_targets", "", settings, "targets", settings, "targets_index", rows=2
        )
        col = row.column(align=True)
        col.operator("a2x.target_add", text="", icon="ADD")
        col.operator("a2x.target_remove", text="", icon="REMOVE")
        if not len(settings.targets):
            obj = context.active_object
            name = obj.name if obj is not None else "none"
            layout.label(text=f"Empty list: the active object ({name})", icon="INFO")


class A2X_PT_mapping(_A2XPanel, Panel):
    bl_label = "Shape Mapping"
    bl_parent_id = "A2X_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.a2x
        layout.operator("a2x.mapping_auto", icon="SORTALPHA")
        if not len(settings.mapping):
            layout.label(text="Empty table: names are matched when baking", icon="INFO")
        row = layout.row()
        row.template_list(
            "A2X_UL_mapping", "", settings, "mapping", settings, "mapping_index", rows=6
        )
        col = row.column(align=True)
        col.operator("a2x.mapping_add", text="", icon="ADD")
        col.operator("a2x.mapping_remove", text="", icon="REMOVE")
        if len(settings.candidates):
            # shapes add up: a second shape for one curve would move the face twice as far
            header, body = layout.panel("a2x_candidates", default_closed=False)
            header.label(text=f"Other Matching Shapes ({len(settings.candidates)})", icon="INFO")
            if body is not None:
                body.label(text="Left out: their curve already drives a shape. + drives one too.")
                col = body.column(align=True)
                for item in settings.candidates:
                    row = col.row(align=True)
                    row.label(text=f"{item.name}  ←  {item.source}")
                    add = row.operator("a2x.mapping_add_candidate", text="", icon="ADD")
                    add.target = item.name
        for title, names in (
            ("Unmatched shapes", settings.unmatched_shapes),
            ("ARKit names without a shape", settings.unused_sources),
        ):
            if not len(names):
                continue
            header, body = layout.panel(f"a2x_{title}", default_closed=True)
            header.label(text=f"{title} ({len(names)})")
            if body is not None:
                flow = body.grid_flow(columns=2, align=True)
                for item in names:
                    flow.label(text=item.name)


class A2X_PT_timing(_A2XPanel, Panel):
    bl_label = "Timing and Shaping"
    bl_parent_id = "A2X_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        from a2x_core.retarget import format_fps, scene_fps

        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.a2x
        render = context.scene.render
        try:
            fps_text = format_fps(scene_fps(render.fps, render.fps_base))
        except Exception:  # noqa: BLE001 - a broken rate is reported by Bake
            fps_text = "invalid"
        layout.label(text=f"Scene rate: {fps_text} fps", icon="TIME")
        row = layout.row()
        row.enabled = settings.audio_source == "FILE"
        row.prop(settings, "start_frame")
        layout.prop(settings, "strength")
        layout.prop(settings, "smoothing_s", text="Smoothing (s)")
        layout.prop(settings, "interpolation")
        layout.prop(settings, "transcript")
        layout.prop(settings, "transcript_text", text="Transcript Text")
        layout.prop(settings, "language")
        from a2x_core.lipsync.language import transcript_note

        note = transcript_note(settings.language, bool(settings.transcript or settings.transcript_text))
        if note:
            layout.label(text=note, icon="INFO")
        layout.separator()
        layout.prop(settings, "key_head")
        col = layout.column()
        col.active = settings.key_head
        col.prop(settings, "head_object")
        head = settings.head_object
        if head is not None and head.type == "ARMATURE":
            col.prop_search(settings, "head_bone", head.data, "bones")
        col.prop(settings, "head_motion")


class A2X_PT_emotions(_A2XPanel, Panel):
    bl_label = "Emotions"
    bl_parent_id = "A2X_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene.a2x.model != "DEFAULT"

    def draw_header(self, context: bpy.types.Context) -> None:
        self.layout.prop(context.scene.a2x, "use_emotions", text="")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.a2x
        layout.operator("a2x.model_info", text="Load Emotions", icon="FILE_REFRESH")
        if not len(settings.emotions):
            layout.label(text="Load the model to list its emotions", icon="INFO")
        else:
            col = layout.column(align=True)
            col.active = settings.use_emotions
            for item in settings.emotions:
                col.prop(item, "value", text=item.name.title())

        layout.separator()
        layout.label(text="Detect from the Audio (Audio2Emotion)")
        layout.prop(settings, "emotion_model_path", text="")
        col = layout.column()
        col.use_property_split = True
        col.active = bool(settings.emotion_model_path.strip())
        col.row().prop(settings, "emotion_mix", expand=True)
        col.prop(settings, "emotion_window", text="Window (samples)")
        col.prop(settings, "emotion_skip", text="Skip Frames")
        layout.separator()
        layout.prop(settings, "key_emotions")


classes = (
    A2X_UL_targets,
    A2X_UL_mapping,
    A2X_PT_main,
    A2X_PT_live,
    A2X_PT_targets,
    A2X_PT_mapping,
    A2X_PT_timing,
    A2X_PT_emotions,
)
