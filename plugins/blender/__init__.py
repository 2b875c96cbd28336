"""a2x for Blender: speech audio → ARKit-52 shape-key animation, baked as editable keys.

A thin adapter over ``a2x_core`` (carried as wheels inside the extension): the panel's
settings become one ``InferenceOptions``, inference runs off the main thread (or in the
external runtime's subprocess), and ``bake.py`` writes the keys into add-on-owned Actions.
"""

from __future__ import annotations

import sys

if "bake" in locals():  # "Reload Scripts": pick up edited modules
    import importlib

    for _module in (bake, session, live, properties, preferences, operators, panels):  # noqa: F821
        importlib.reload(_module)

import bpy
from bpy.app.handlers import persistent

from . import bake, live, operators, panels, preferences, properties, session  # noqa: F401 - reloaded above

classes = properties.classes + preferences.classes + operators.classes + panels.classes


@persistent
def _on_load(_dummy: object) -> None:
    """A freshly loaded file has no running bake or Live; refresh the model list."""
    live.end(cancel=True, restore=False)  # its shape keys went with the file that was closed
    wm = bpy.context.window_manager
    if wm is not None and hasattr(wm, "a2x_job"):
        wm.a2x_job.running = False
        wm.a2x_job.cancel_requested = False
        try:
            operators.rescan_models(bpy.context)
        except Exception:  # noqa: BLE001 - a bad folder must not break file loading
            pass


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.register()
    bpy.app.handlers.load_post.append(_on_load)


def unregister() -> None:
    live.end(cancel=True)  # no thread or timer outlives the add-on
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
    properties.unregister()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
    # The default model's decoder processes would otherwise live until Blender quits.
    decoders = sys.modules.get("a2x_core.lipsync.parallel")
    if decoders is not None:
        decoders.shutdown()
