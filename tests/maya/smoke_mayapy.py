"""Smoke test inside real Maya: ``mayapy tests/maya/smoke_mayapy.py [audio.wav]``.

Not collected by pytest (no ``test_`` prefix) and not run in CI: it needs a Maya install
with a2x pip-installed into mayapy and ``plugins/maya`` on ``MAYA_MODULE_PATH`` (or the
paths below). It loads the plug-in, builds a scene with a blendShape, a player and audio,
checks the emotion attributes, bakes, checks the keys and undo, and exits 1 on any failure.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve()
MODULE = HERE.parents[2] / "plugins" / "maya"


def _write_test_audio() -> str:
    import numpy as np
    import soundfile

    path = os.path.join(tempfile.mkdtemp(), "a2x_smoke.wav")
    t = np.arange(32000) / 16000.0
    soundfile.write(path, (0.2 * np.sin(2 * np.pi * 180 * t) * (t % 0.5 < 0.3)).astype("float32"), 16000)
    return path


def main() -> int:
    import maya.standalone

    maya.standalone.initialize(name="python")
    try:
        from maya import cmds

        sys.path.insert(0, str(MODULE / "scripts"))
        os.environ["MAYA_PLUG_IN_PATH"] = f"{MODULE / 'plug-ins'}{os.pathsep}" + os.environ.get("MAYA_PLUG_IN_PATH", "")
        cmds.loadPlugin(str(MODULE / "plug-ins" / "a2x_maya_plugin.py"))
        cmds.currentUnit(time="ntsc")  # 30 fps
        base = cmds.polyCube(name="head")[0]
        jaw = cmds.polyCube(name="jawOpen")[0]
        blink = cmds.polyCube(name="eyeBlink_L")[0]
        other = cmds.polyCube(name="Basis")[0]
        bs = cmds.blendShape(jaw, blink, other, base, name="faceBS")[0]
        audio = sys.argv[1] if len(sys.argv) > 1 else _write_test_audio()
        player = cmds.a2xCreatePlayer(base, audio=audio)
        player = player[0] if isinstance(player, list) else player
        assert cmds.nodeType(player) == "a2xInferencePlayer", player
        assert cmds.listConnections(f"{bs}.weight[0]", plugs=True) == [f"{player}.out_jawOpen"]
        assert not cmds.listConnections(f"{bs}.weight[2]"), "Basis must stay unconnected"
        assert cmds.getAttr(f"{player}.emotionMix") == 0  # enum: blend
        assert cmds.getAttr(f"{player}.emotionWindow") == 60000
        assert cmds.getAttr(f"{player}.identity") in ("", None)
        cmds.currentTime(15)
        value = cmds.getAttr(f"{bs}.weight[0]")  # batch mode: compute waits for the track
        assert 0.0 <= value <= 1.0, value
        cmds.a2xBake(player, keyEmotions=True)  # the default model has no emotions: a warning
        assert not cmds.attributeQuery("a2x_emotion_joy", node=bs, exists=True)
        keys = cmds.keyframe(f"{bs}.weight[0]", query=True, timeChange=True)
        assert keys and keys[0] == 0 and len(keys) >= 59, keys
        assert all(float(k).is_integer() for k in keys), "keys must sit on whole frames"
        assert cmds.keyframe(f"{bs}.weight[1]", query=True, keyframeCount=True) == len(keys)
        cmds.undo()
        assert not cmds.keyframe(f"{bs}.weight[0]", query=True, keyframeCount=True)
        assert cmds.listConnections(f"{bs}.weight[0]", plugs=True) == [f"{player}.out_jawOpen"]
        cmds.redo()
        assert cmds.keyframe(f"{bs}.weight[0]", query=True, keyframeCount=True) == len(keys)
        print(f"a2x smoke test passed: {len(keys)} keys on {bs}.weight[0]")
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        maya.standalone.uninitialize()


if __name__ == "__main__":
    sys.exit(main())
