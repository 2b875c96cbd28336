"""a2x Maya plug-in entry file (Python API 2.0): registers the player node and commands.

Everything else lives in the ``a2x_maya`` package (``scripts/`` of this module); a failed
load says what to install or set, then re-raises so that Maya reports the failure too.
"""

from __future__ import annotations

import importlib
import sys

import maya.api.OpenMaya as om

_FIXES = {
    "a2x_maya": (
        "the a2x module's scripts folder is not on PYTHONPATH; add the folder holding a2x.mod "
        "to MAYA_MODULE_PATH (see docs/maya.md)"
    ),
    "a2x_core": (
        "a2x is not installed in Maya's Python; run: mayapy -m pip install <a2x checkout>"
    ),
    "numpy": "numpy is missing from Maya's Python; run: mayapy -m pip install <a2x checkout>",
    "scipy": "scipy is missing from Maya's Python; run: mayapy -m pip install <a2x checkout>",
}


def maya_useNewAPI() -> None:  # noqa: N802 - Maya looks for this exact name
    """Tells Maya that this plug-in uses the Python API 2.0."""


def _fix_for(error: BaseException) -> str:
    if isinstance(error, ImportError):
        root = (error.name or "").split(".")[0]
        if root in _FIXES:
            return _FIXES[root]
        return f"a Python package is missing ({error.name}); run: mayapy -m pip install <a2x checkout>"
    return "see the Script Editor for the traceback and docs/maya.md (Troubleshooting)"


def _report(action: str, error: BaseException) -> None:
    message = f"a2x: could not {action} the plug-in: {error}. Fix: {_fix_for(error)}"
    om.MGlobal.displayError(message)
    if om.MGlobal.mayaState() == om.MGlobal.kInteractive:
        from maya import cmds

        cmds.confirmDialog(title="a2x", message=message, button=["OK"])


def _fresh_package() -> object:
    """Import ``a2x_maya.plugin`` afresh, so that loading the plug-in again picks up edits."""
    for name in [n for n in sys.modules if n == "a2x_maya" or n.startswith("a2x_maya.")]:
        del sys.modules[name]
    return importlib.import_module("a2x_maya.plugin")


def initializePlugin(mobject: om.MObject) -> None:  # noqa: N802
    """Maya calls this on ``loadPlugin``."""
    try:
        _fresh_package().initialize(mobject)  # type: ignore[attr-defined]
    except Exception as error:
        _report("load", error)
        raise


def uninitializePlugin(mobject: om.MObject) -> None:  # noqa: N802
    """Maya calls this on ``unloadPlugin``."""
    try:
        importlib.import_module("a2x_maya.plugin").uninitialize(mobject)
    except Exception as error:
        _report("unload", error)
        raise
