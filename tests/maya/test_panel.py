"""The PySide panel, offscreen (PySide6 here; the shim picks PySide2 in older Mayas)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("QT_QPA_PLATFORM"):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
qt = pytest.importorskip("a2x_maya.qt", reason="PySide6 is not installed")

from a2x_maya.panel import NEW_PLAYER, Panel, mel_command  # noqa: E402

from .fake_scene import FakeScene  # noqa: E402


@pytest.fixture(scope="module")
def app():  # noqa: ANN201
    return qt.QtWidgets.QApplication.instance() or qt.QtWidgets.QApplication([])


def test_mel_command_quotes_paths() -> None:
    line = mel_command("a2xCreatePlayer", {"model": "C:\\m\\model.json", "force": True, "audio": ""},
                       ["bs1"])  # fmt: skip
    assert line == 'a2xCreatePlayer -model "C:/m/model.json" -force bs1'


def test_panel_previews_matches_creates_and_bakes(app, wav: Path) -> None:  # noqa: ANN001
    scene = FakeScene()
    scene.add_blendshape("faceBS", {0: "jawOpen", 1: "Basis"}, mesh="head")
    scene.add_blendshape("otherBS", {0: "eyeBlink_L"})
    calls = []

    def invoke(name, flags, objects):  # noqa: ANN001, ANN202
        calls.append((name, flags, objects))
        if name == "a2xCreatePlayer":
            scene.nodes["a2xInferencePlayer1"] = {"type": "a2xInferencePlayer", "attrs": {},
                                                  "aliases": {}, "user": None}  # fmt: skip
            return "a2xInferencePlayer1"
        return None

    panel = Panel(scene, invoke=invoke)
    assert [panel.target_list.item(i).text() for i in range(panel.target_list.count())] == ["faceBS", "otherBS"]
    assert panel.model_combo.itemText(0) == "default"
    scene.selected = ["head"]
    panel.targets_from_selection()
    assert panel.targets() == ["faceBS"]
    assert "1 weight(s) match" in panel.preview.toPlainText()
    assert "Unmatched (left unconnected): faceBS.Basis" in panel.preview.toPlainText()
    assert panel.bake() is None and "choose a player" in panel.status.text()
    panel.audio_edit.setText(str(wav))
    assert panel.create_or_connect() == "a2xInferencePlayer1"
    assert calls[0] == ("a2xCreatePlayer", {"model": "default", "audio": str(wav), "force": True,
                                            "emotionModel": "", "emotionMix": "", "identity": "",
                                            "language": "", "transcript": ""},
                        ["faceBS"])  # fmt: skip
    assert panel.player() == "a2xInferencePlayer1"
    assert panel.reading_note.text() == ""  # no transcript: nothing is read
    codes = panel.language_edit.completer().model()
    assert "de" in [codes.index(i, 0).data() for i in range(codes.rowCount())]
    panel.language_edit.setText("de")
    panel.transcript_edit.setText("Der Lappen liegt auf dem Eisschrank.")
    assert panel.reading_note.text() == "Transcript read by de pronunciation rules"
    panel.language_edit.setText("")  # auto: the transcript decides, no note
    assert panel.reading_note.text() == ""
    panel.delete_after_bake.setChecked(True)
    panel.bake()
    assert calls[-1] == ("a2xBake", {"deletePlayer": True}, ["a2xInferencePlayer1"])
    panel.key_emotions.setChecked(True)
    panel.emotion_node_edit.setText(" head ")
    panel.bake()
    assert calls[-1] == ("a2xBake", {"deletePlayer": True, "keyEmotions": True,
                                     "emotionNode": "head"}, ["a2xInferencePlayer1"])  # fmt: skip
    panel.player_combo.setCurrentText("a2xInferencePlayer1")
    panel.create_or_connect()
    assert calls[-1][0] == "a2xConnectPlayer" and calls[-1][2] == ["a2xInferencePlayer1", "faceBS"]
    panel.player_combo.setCurrentText(NEW_PLAYER)
    panel.poll()
    assert not panel.cancel_button.isEnabled()
    panel.close()


def test_panel_shows_command_errors(app) -> None:  # noqa: ANN001
    scene = FakeScene()

    def invoke(name, flags, objects):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")

    panel = Panel(scene, invoke=invoke)
    panel.create_or_connect()
    assert panel.status.text() == "a2xCreatePlayer failed: boom"
    assert "No target selected" in panel.preview.toPlainText()
    panel.close()


def test_panel_sends_emotion_model_mix_and_identity(app, wav: Path) -> None:  # noqa: ANN001
    scene = FakeScene()
    scene.add_blendshape("faceBS", {0: "jawOpen"})
    calls = []
    panel = Panel(scene, invoke=lambda n, f, o: calls.append((n, f, o)))
    assert [panel.emotion_mix_combo.itemText(i) for i in range(2)] == ["blend", "override"]
    panel.audio_edit.setText(str(wav))
    panel.emotion_model_edit.setText("/m/a2e/model.json ")
    panel.emotion_mix_combo.setCurrentText("override")
    panel.identity_edit.setText("Claire")
    panel.create_or_connect()
    name, flags, _ = calls[-1]
    assert name == "a2xCreatePlayer"
    assert (flags["emotionModel"], flags["emotionMix"], flags["identity"]) == (
        "/m/a2e/model.json", "override", "Claire")  # fmt: skip
    line = mel_command(name, flags, ["faceBS"])
    assert '-emotionModel "/m/a2e/model.json" -emotionMix "override" -identity "Claire"' in line
    panel.close()
