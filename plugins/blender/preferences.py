"""Add-on preferences: model folders, the external runtime, the inference backend."""

from __future__ import annotations

import bpy
from bpy.props import CollectionProperty, EnumProperty, IntProperty, StringProperty
from bpy.types import AddonPreferences, Operator, PropertyGroup


class A2XModelFolder(PropertyGroup):
    path: StringProperty(  # type: ignore[valid-type]
        name="Folder", subtype="DIR_PATH",
        description="Folder holding downloaded models (model.json up to two levels down)",
    )  # fmt: skip


class A2XPreferences(AddonPreferences):
    bl_idname = __package__

    model_folders: CollectionProperty(type=A2XModelFolder)  # type: ignore[valid-type]
    external_python: StringProperty(  # type: ignore[valid-type]
        name="External Runtime", subtype="FILE_PATH",
        description="A Python interpreter where a2x is installed (e.g. with GPU extras); "
        "inference then runs there as a subprocess. Empty = run inside Blender",
    )  # fmt: skip
    backend: EnumProperty(  # type: ignore[valid-type]
        name="Backend", default="auto",
        items=[("auto", "Auto", "TensorRT, then CUDA, then CPU, whichever is installed"),
               ("onnxruntime", "ONNX Runtime", "ONNX Runtime (CPU or CUDA)"),
               ("tensorrt", "TensorRT", "TensorRT engines (external runtime with GPU extras)"),
               ("torch", "PyTorch", "PyTorch (external runtime)")],
    )  # fmt: skip
    threads: IntProperty(  # type: ignore[valid-type]
        name="CPU Threads", default=0, min=0, max=256,
        description="Threads for CPU inference (0 = all cores)",
    )  # fmt: skip

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.label(text="Model folders (Audio2Face-3D downloads):")
        for index, folder in enumerate(self.model_folders):
            row = layout.row(align=True)
            row.prop(folder, "path", text="")
            row.operator("a2x.model_folder_remove", text="", icon="X").index = index
        row = layout.row(align=True)
        row.operator("a2x.model_folder_add", icon="ADD")
        row.operator("a2x.models_rescan", icon="FILE_REFRESH")
        layout.separator()
        layout.prop(self, "external_python")
        layout.prop(self, "backend")
        layout.prop(self, "threads")


def get(context: bpy.types.Context | None = None) -> A2XPreferences | None:
    """This add-on's preferences, or None when it runs unregistered (e.g. from source)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def model_folders(context: bpy.types.Context | None = None) -> list[str]:
    prefs = get(context)
    if prefs is None:
        return []
    return [bpy.path.abspath(f.path) for f in prefs.model_folders if f.path]


class A2X_OT_model_folder_add(Operator):
    bl_idname = "a2x.model_folder_add"
    bl_label = "Add Folder"
    bl_description = "Add a folder to search for models"
    bl_options = {"INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = get(context)
        if prefs is None:
            self.report({"ERROR"}, "a2x preferences are not available (add-on not enabled)")
            return {"CANCELLED"}
        prefs.model_folders.add()
        return {"FINISHED"}


class A2X_OT_model_folder_remove(Operator):
    bl_idname = "a2x.model_folder_remove"
    bl_label = "Remove Folder"
    bl_description = "Remove this folder from the model search"
    bl_options = {"INTERNAL"}

    index: IntProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = get(context)
        if prefs is None or not 0 <= self.index < len(prefs.model_folders):
            return {"CANCELLED"}
        prefs.model_folders.remove(self.index)
        return {"FINISHED"}


classes = (A2XModelFolder, A2XPreferences, A2X_OT_model_folder_add, A2X_OT_model_folder_remove)
