"""Qt shim: PySide6 (Maya 2025+) or PySide2 (Maya 2022-2024), same names for both.

Import Qt only from here: ``from a2x_maya.qt import QtCore, QtWidgets, wrap_instance``.
"""

from __future__ import annotations

from typing import Any

try:
    from PySide6 import QtCore, QtGui, QtWidgets
    from shiboken6 import wrapInstance

    QT_BINDING = "PySide6"
except ImportError:  # Maya 2022-2024
    try:
        from PySide2 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]
        from shiboken2 import wrapInstance  # type: ignore[no-redef]

        QT_BINDING = "PySide2"
    except ImportError as error:
        raise ImportError(
            "neither PySide6 nor PySide2 is available; the a2x panel needs Maya's Qt "
            "(or pip install PySide6-Essentials outside Maya)",
            name="PySide6",
        ) from error

__all__ = ["QT_BINDING", "QtCore", "QtGui", "QtWidgets", "wrap_instance"]


def wrap_instance(pointer: int | None, cls: Any = None) -> Any:
    """A Qt object from a raw pointer (Maya's main window), or None."""
    if pointer is None:
        return None
    return wrapInstance(int(pointer), cls or QtWidgets.QWidget)
