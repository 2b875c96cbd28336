"""The a2x panel: pick audio, model and target blendShapes, create/connect a player, bake.

It runs the plug-in's commands (so every action is one undo step) and shows, before
anything is wired, which targets match an a2x pose and which do not.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import Any

from a2x_core.errors import A2XError

from . import NODE_TYPE
from .attributes import EMOTION_MIX_CHOICES
from .commands import find_blendshapes, preview_connections
from .qt import QtCore, QtWidgets, wrap_instance

NEW_PLAYER = "<new player>"
Invoke = Callable[[str, dict[str, Any], list[str]], Any]


def mel_command(name: str, flags: dict[str, Any], objects: Sequence[str]) -> str:
    """A MEL line for one of the plug-in's commands (strings quoted, bool flags bare)."""
    parts = [name]
    for flag, value in flags.items():
        if value is True:
            parts.append(f"-{flag}")
        elif value not in (False, None, ""):
            text = str(value).replace("\\", "/").replace('"', '\\"')
            parts.append(f'-{flag} "{text}"')
    parts += [shlex.quote(o) for o in objects]
    return " ".join(parts)


def model_choices() -> list[str]:
    """``default`` plus every model found in ``A2X_MODEL_PATH``."""
    from a2x_core.models.registry import list_models

    return [entry.spec for entry in list_models() if entry.kind != "invalid"]


def _with_browse_button(field: Any, browse: Callable[[], None]) -> Any:
    """A row of ``field`` and a "..." button that calls ``browse``."""
    button = QtWidgets.QPushButton("...")
    button.clicked.connect(browse)
    row = QtWidgets.QHBoxLayout()
    row.addWidget(field)
    row.addWidget(button)
    return row


class Panel(QtWidgets.QWidget):
    """The window. ``scene`` is the facade; ``invoke`` runs a command (default: MEL)."""

    def __init__(self, scene: Any, invoke: Invoke | None = None,
                 engine_of: Callable[[str], Any] | None = None, parent: Any = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.scene = scene
        self.invoke: Invoke = invoke or (lambda n, f, o: scene.execute(mel_command(n, f, o)))
        self.engine_of = engine_of
        self.setWindowTitle("a2x")
        self.setObjectName("a2xPanel")
        layout = QtWidgets.QVBoxLayout(self)
        form = QtWidgets.QFormLayout()
        layout.addLayout(form)

        self.audio_edit = QtWidgets.QLineEdit()
        self.audio_edit.setPlaceholderText("audio file (empty = the time slider's sound)")
        form.addRow("Audio", _with_browse_button(self.audio_edit, self.browse_audio))

        self.model_combo = QtWidgets.QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.addItems(model_choices())
        form.addRow("Model", _with_browse_button(self.model_combo, self.browse_model))

        self.emotion_model_edit = QtWidgets.QLineEdit()
        self.emotion_model_edit.setPlaceholderText(
            "Audio2Emotion model.json (empty = preferred emotions only)"
        )
        form.addRow("Emotion model",
                    _with_browse_button(self.emotion_model_edit, self.browse_emotion_model))  # fmt: skip
        self.emotion_mix_combo = QtWidgets.QComboBox()
        self.emotion_mix_combo.addItems(list(EMOTION_MIX_CHOICES))
        self.emotion_mix_combo.setToolTip(
            "How the preferred emotions meet the detected ones: blend (the SDK's preferred "
            "emotion) or override (each preferred emotion replaces its detected curve)"
        )
        form.addRow("Emotion mix", self.emotion_mix_combo)
        self.identity_edit = QtWidgets.QLineEdit()
        self.identity_edit.setPlaceholderText("diffusion models: Claire, James... (empty = first)")
        form.addRow("Identity", self.identity_edit)
        self.language_edit = QtWidgets.QLineEdit()
        self.language_edit.setPlaceholderText("default model: de, ru, zh... (empty = auto)")
        from a2x_core.lipsync.language import language_suggestions

        completer = QtWidgets.QCompleter([code for code, _name in language_suggestions()])
        completer.setCaseSensitivity(QtCore.Qt.CaseInsensitive)
        self.language_edit.setCompleter(completer)
        form.addRow("Language", self.language_edit)
        self.transcript_edit = QtWidgets.QLineEdit()
        self.transcript_edit.setPlaceholderText("default model: the exact words (empty = recognised)")
        form.addRow("Transcript", self.transcript_edit)
        self.reading_note = QtWidgets.QLabel("")
        form.addRow("", self.reading_note)
        self.language_edit.textChanged.connect(lambda _text: self.update_reading_note())
        self.transcript_edit.textChanged.connect(lambda _text: self.update_reading_note())

        self.player_combo = QtWidgets.QComboBox()
        form.addRow("Player", self.player_combo)

        self.target_list = QtWidgets.QListWidget()
        self.target_list.itemChanged.connect(lambda _item: self.update_preview())
        layout.addWidget(QtWidgets.QLabel("Target blendShape nodes"))
        layout.addWidget(self.target_list)
        row = QtWidgets.QHBoxLayout()
        from_selection = QtWidgets.QPushButton("From Selection")
        from_selection.clicked.connect(self.targets_from_selection)
        refresh = QtWidgets.QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        row.addWidget(from_selection)
        row.addWidget(refresh)
        layout.addLayout(row)

        self.preview = QtWidgets.QPlainTextEdit()
        self.preview.setReadOnly(True)
        self.preview.setMaximumHeight(90)
        layout.addWidget(self.preview)

        self.connect_button = QtWidgets.QPushButton("Create / Connect Player")
        self.connect_button.clicked.connect(self.create_or_connect)
        self.delete_after_bake = QtWidgets.QCheckBox("Delete player after baking")
        self.key_emotions = QtWidgets.QCheckBox("Key emotion curves")
        self.key_emotions.setToolTip(
            "Also key the emotion curves as a2x_emotion_* attributes (0..1) on the emotion node"
        )
        self.emotion_node_edit = QtWidgets.QLineEdit()
        self.emotion_node_edit.setPlaceholderText("emotion node (empty = first blendShape)")
        self.bake_button = QtWidgets.QPushButton("Bake")
        self.bake_button.clicked.connect(self.bake)
        layout.addWidget(self.connect_button)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.key_emotions)
        row.addWidget(self.emotion_node_edit)
        layout.addLayout(row)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.delete_after_bake)
        row.addWidget(self.bake_button)
        layout.addLayout(row)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 100)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QtWidgets.QLabel("")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.status)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self.refresh()

    # -- state -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload players and blendShape nodes from the scene."""
        current = self.player_combo.currentText()
        self.player_combo.clear()
        self.player_combo.addItems([NEW_PLAYER, *self.scene.nodes_of_type(NODE_TYPE)])
        if current:
            self.player_combo.setCurrentText(current)
        checked = set(self.targets())
        self.target_list.blockSignals(True)
        self.target_list.clear()
        for name in self.scene.nodes_of_type("blendShape"):
            item = QtWidgets.QListWidgetItem(name)
            item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(QtCore.Qt.CheckState.Checked if name in checked
                               else QtCore.Qt.CheckState.Unchecked)  # fmt: skip
            self.target_list.addItem(item)
        self.target_list.blockSignals(False)
        self.update_preview()

    def targets(self) -> list[str]:
        """The checked blendShape nodes."""
        out = []
        for row in range(self.target_list.count()):
            item = self.target_list.item(row)
            if item.checkState() == QtCore.Qt.CheckState.Checked:
                out.append(item.text())
        return out

    def targets_from_selection(self) -> None:
        """Check the blendShapes of the selected nodes."""
        try:
            wanted = set(find_blendshapes(self.scene, self.scene.selection()))
        except A2XError as error:
            self.show_status(str(error))
            return
        self.target_list.blockSignals(True)
        for row in range(self.target_list.count()):
            item = self.target_list.item(row)
            item.setCheckState(QtCore.Qt.CheckState.Checked if item.text() in wanted
                               else QtCore.Qt.CheckState.Unchecked)  # fmt: skip
        self.target_list.blockSignals(False)
        self.update_preview()

    def update_preview(self) -> None:
        """Show which targets match a pose (and which do not) before wiring anything."""
        targets = self.targets()
        if not targets:
            self.preview.setPlainText("No target selected: a player is created unconnected.")
            self.bake_button.setToolTip("")
            return
        plan = preview_connections(self.scene, targets, force=True)
        lines = [f"{len(plan.links)} weight(s) match an a2x pose."]
        if plan.unmatched:
            lines.append(f"Unmatched (left unconnected): {', '.join(plan.unmatched)}")
        self.preview.setPlainText("\n".join(lines))

    def player(self) -> str:
        text = self.player_combo.currentText()
        return "" if text in ("", NEW_PLAYER) else text

    def show_status(self, text: str) -> None:
        self.status.setText(text)

    # -- actions -----------------------------------------------------------------------
    def browse_audio(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Audio", "", "Audio (*.wav *.flac *.mp3 *.ogg *.aiff);;All files (*)"
        )
        if path:
            self.audio_edit.setText(path)

    def browse_emotion_model(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Audio2Emotion model", "", "model.json (*.json)"
        )
        if path:
            self.emotion_model_edit.setText(path)

    def browse_model(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Model", "", "model.json (*.json)")
        if path:
            self.model_combo.addItem(path)
            self.model_combo.setCurrentText(path)

    def _emotion_mix(self) -> str:
        """The mix flag: "" for the node's default (blend), so MEL lines stay short."""
        mix = self.emotion_mix_combo.currentText()
        return "" if mix == EMOTION_MIX_CHOICES[0] else mix

    def _run(self, name: str, flags: dict[str, Any], objects: list[str]) -> Any:
        try:
            result = self.invoke(name, flags, objects)
        except Exception as error:  # shown in the panel; the command already reported it
            self.show_status(f"{name} failed: {error}")
            return None
        self.show_status(f"{name}: done")
        self.refresh()
        return result

    def update_reading_note(self) -> str:
        """Under the transcript: what reads it in the language typed (the core decides)."""
        from a2x_core.lipsync.language import transcript_note

        note = transcript_note(self.language_edit.text(), bool(self.transcript_edit.text().strip()))
        self.reading_note.setText(note or "")
        return note or ""

    def create_or_connect(self) -> Any:
        """Create a player on the checked targets (with the audio, model, emotion model, mix
        and identity fields), or connect the chosen one to them (the fields then stay: set
        them on the player's attributes)."""
        player = self.player()
        if not player:
            flags = {"model": self.model_combo.currentText(), "audio": self.audio_edit.text(),
                     "force": True, "emotionModel": self.emotion_model_edit.text().strip(),
                     "emotionMix": self._emotion_mix(),
                     "identity": self.identity_edit.text().strip(),
                     "language": self.language_edit.text().strip(),
                     "transcript": self.transcript_edit.text().strip()}  # fmt: skip
            result = self._run("a2xCreatePlayer", flags, self.targets())
            if isinstance(result, str):
                self.player_combo.setCurrentText(result)
            return result
        return self._run("a2xConnectPlayer", {"force": True}, [player, *self.targets()])

    def bake(self) -> Any:
        """Bake the chosen player (optionally deleting it)."""
        player = self.player()
        if not player:
            self.show_status("Bake: choose a player first (or create one)")
            return None
        flags: dict[str, Any] = {"deletePlayer": self.delete_after_bake.isChecked()}
        if self.key_emotions.isChecked():
            flags["keyEmotions"] = True
            flags["emotionNode"] = self.emotion_node_edit.text().strip()
        return self._run("a2xBake", flags, [player])

    def poll(self) -> None:
        """Show the chosen player's background job progress."""
        player = self.player()
        if not player or self.engine_of is None or not self.scene.exists(player):
            self.progress.setValue(0)
            self.cancel_button.setEnabled(False)
            return
        status = self.engine_of(player).status
        self.progress.setValue(int(status.fraction * 100))
        self.cancel_button.setEnabled(status.state == "computing")
        if status.message:
            self.show_status(f"{player}: {status.state} - {status.message}")

    def cancel(self) -> None:
        player = self.player()
        if player and self.engine_of is not None:
            self.engine_of(player).cancel()


_WINDOW: Panel | None = None


def show(scene: Any = None) -> Panel:
    """Open (or raise) the panel as a tool window over Maya's main window."""
    global _WINDOW
    from .plugin import runtime

    loaded = runtime()
    if scene is None:
        if loaded is None:
            raise A2XError("the a2x plug-in is not loaded", hint="loadPlugin a2x_maya_plugin")
        scene = loaded.scene
    if _WINDOW is None:
        parent = wrap_instance(scene.main_window_pointer())
        _WINDOW = Panel(scene, engine_of=loaded.engine_of if loaded else None, parent=parent)
        _WINDOW.setWindowFlags(QtCore.Qt.WindowType.Tool)
    _WINDOW.show()
    _WINDOW.raise_()
    return _WINDOW
