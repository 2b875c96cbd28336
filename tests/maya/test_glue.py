"""The Maya glue (engine, node compute, poller, commands, plug-in) against the fake facade."""

from __future__ import annotations

import ast
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from a2x_maya import NODE_TYPE, plugin
from a2x_maya.attributes import EMOTIONS
from a2x_maya.engine import PlayerEngine
from a2x_maya.parameters import PlayerInputs

from a2x_core.errors import A2XError, ModelError

from .conftest import SCRIPTS, FakeRunner
from .fake_scene import FakeScene


def _wait_idle(engine: PlayerEngine) -> None:
    deadline = time.monotonic() + 5
    while engine.busy and time.monotonic() < deadline:
        engine.poll()
        time.sleep(0.01)


def test_fake_implements_every_facade_method() -> None:
    tree = ast.parse((SCRIPTS / "a2x_maya" / "maya_api.py").read_text(encoding="utf-8"))
    scene_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MayaScene")
    methods = {n.name for n in scene_class.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    missing = sorted(m for m in methods if not callable(getattr(FakeScene, m, None)))
    assert not missing, f"FakeScene lacks {missing}"


def test_engine_computes_once_then_only_looks_up(wav: Path) -> None:
    runner = FakeRunner()
    engine = PlayerEngine(runner)
    inputs = PlayerInputs.from_values({"audioFile": str(wav)}, Fraction(24))
    assert engine.request(inputs).state == "computing"
    assert engine.sample(0.1).weights[0] == 0.0  # rest values until the track lands
    _wait_idle(engine)
    assert engine.status.state == "ready" and engine.track is not None
    assert engine.sample(3 / 30).weights[1] == pytest.approx(0.04)
    for _ in range(5):  # playback: same inputs, no new inference
        engine.request(inputs)
    moved = PlayerInputs.from_values({"audioFile": str(wav), "audioOffset": 1.0}, Fraction(24))
    engine.request(moved)  # the offset is not part of the key
    assert len(runner.calls) == 1 and engine.sample(1.0).weights[0] == 0.0
    changed = PlayerInputs.from_values({"audioFile": str(wav), "skinStrength": 0.5}, Fraction(24))
    assert engine.request(changed).state == "computing"
    _wait_idle(engine)
    assert len(runner.calls) == 2


def test_engine_reports_bad_inputs_and_worker_errors(wav: Path) -> None:
    engine = PlayerEngine(FakeRunner())
    status = engine.request(PlayerInputs.from_values({}, Fraction(24)))
    assert status.state == "error" and "no audio file" in status.message
    failing = PlayerEngine(FakeRunner(error=ModelError("no model.json here", path="/m")))
    inputs = PlayerInputs.from_values({"audioFile": str(wav)}, Fraction(24))
    failing.request(inputs)
    _wait_idle(failing)
    assert failing.status.state == "error" and "/m: no model.json here" in failing.status.message
    assert failing.request(inputs).state == "error"  # not retried until an input changes
    with pytest.raises(A2XError, match="no model.json"):
        PlayerEngine(FakeRunner(error=ModelError("no model.json here"))).wait(inputs)


def test_engine_wait_and_cancel(wav: Path) -> None:
    inputs = PlayerInputs.from_values({"audioFile": str(wav)}, Fraction(24))
    track = PlayerEngine(FakeRunner()).wait(inputs, lambda p: True)
    assert track.num_frames == 30
    from a2x_core.errors import CancelledError
    from a2x_core.jobs import Progress

    def slow(inputs, progress, cancel):  # noqa: ANN001, ANN202
        while True:
            cancel.check()
            progress(Progress(0.1, "slow"))
            time.sleep(0.01)

    with pytest.raises(CancelledError):
        PlayerEngine(slow).wait(inputs, lambda p: False)


@pytest.fixture
def loaded(runner: FakeRunner) -> tuple[FakeScene, plugin.Runtime]:
    scene = FakeScene(fps=Fraction(24))
    runtime = plugin.initialize("mobject", scene=scene)
    yield scene, runtime
    plugin.uninitialize("mobject", scene=scene)


def _run(scene: FakeScene, name: str, flags: dict | None = None, objects: list | None = None):  # noqa: ANN202
    command = scene.command_classes[name]()
    command.doIt((flags or {}, objects or []))
    return command


def test_plugin_registers_node_commands_menu_and_poller(loaded) -> None:  # noqa: ANN001
    scene, runtime = loaded
    assert NODE_TYPE in scene.node_creators
    assert sorted(scene.command_classes) == ["a2xBake", "a2xConnectPlayer", "a2xCreatePlayer",
                                             "a2xLoadModelDefaults"]  # fmt: skip
    assert scene.menu is not None and scene.menu[0] == ("Create Player on Selection", "a2xCreatePlayer")
    assert scene.timers == [runtime.poller.tick]


def test_create_player_on_a_mesh_wires_by_name(loaded, wav: Path) -> None:  # noqa: ANN001
    scene, _ = loaded
    scene.add_blendshape("faceBS", {0: "AK_17_JawOpen", 1: "Basis", 2: "EyeBlink_L"}, mesh="head")
    scene.add_sound("audio1", str(wav), offset_frame=12)
    scene.slider_sound = "audio1"
    scene.selected = ["head"]
    command = _run(scene, "a2xCreatePlayer")
    player = command.result
    assert player == "a2xInferencePlayer1" and scene.node_type(player) == NODE_TYPE
    assert scene.connections[f"{player}.time"] == "time1.outTime"
    assert scene.connections[f"{player}.audioFile"] == "audio1.filename"
    assert scene.connections["faceBS.weight[0]"] == f"{player}.outputWeights[17]"
    assert scene.connections["faceBS.weight[2]"] == f"{player}.outputWeights[0]"
    assert "faceBS.weight[1]" not in scene.connections  # Basis: listed, never wired by index
    assert any("faceBS.Basis" in m for kind, m in scene.messages if kind == "warning")
    assert scene.nodes[player]["aliases"]["out_jawOpen"] == "outputWeights[17]"
    command.undoIt()
    assert player not in scene.nodes and not scene.connections
    command.redoIt()
    assert scene.connections["faceBS.weight[0]"] == f"{player}.outputWeights[17]"


def test_node_compute_plays_the_cached_track(loaded, wav: Path, runner: FakeRunner) -> None:  # noqa: ANN001
    scene, runtime = loaded
    scene.add_blendshape("bs", {0: "jawOpen"})
    player = _run(scene, "a2xCreatePlayer", {"audio": str(wav)}, ["bs"]).result
    first = scene.evaluate(player, 0.5)
    assert first["frame"].weights[17] == 0.0 and first["progress"] < 1.0  # computing
    engine = runtime.engine_of(player)
    deadline = time.monotonic() + 5
    while f"{player}.outputWeights" not in scene.dirtied and time.monotonic() < deadline:
        runtime.poller.tick()  # the main-thread timer
        time.sleep(0.01)
    assert engine.status.state == "ready"
    assert scene.progress.count(("begin", "a2x: computing animation")) == scene.progress.count(("end", None))
    out = scene.evaluate(player, 0.5)  # 0.5 s = track frame 15 at 30 fps
    assert out["frame"].weights[17] == pytest.approx((15 + 17) / 100) and out["progress"] == 1.0
    assert f"{player}.outputDetectedEmotions" in scene.dirtied and f"{player}.jawTransform" in scene.dirtied
    scene.nodes[player]["attrs"]["faceMultipliers[17]"] = 2.0  # keyable, no new inference
    assert scene.evaluate(player, 0.5)["frame"].weights[17] == pytest.approx(0.64)
    assert len(runner.calls) == 1


def test_batch_compute_waits_for_the_track(runner: FakeRunner, wav: Path) -> None:
    scene = FakeScene(fps=Fraction(24), interactive=False)
    plugin.initialize("mobject", scene=scene)
    try:
        assert scene.menu is None and scene.timers == []
        player = _run(scene, "a2xCreatePlayer", {"audio": str(wav)}).result
        assert scene.evaluate(player, 0.5)["frame"].weights[0] == pytest.approx(0.15)
    finally:
        plugin.uninitialize("mobject", scene=scene)


def test_bake_keys_weights_in_one_undoable_step(loaded, wav: Path) -> None:  # noqa: ANN001
    scene, _ = loaded
    scene.add_blendshape("bs", {0: "jawOpen", 1: "mouthSmile_L", 2: "Basis"})
    player = _run(scene, "a2xCreatePlayer", {"audio": str(wav)}, ["bs"]).result
    scene.nodes[player]["attrs"]["faceOffsets[17]"] = 0.25
    bake = _run(scene, "a2xBake", {"deletePlayer": True}, [player])
    assert sorted(bake.result) == ["bs.weight[0]", "bs.weight[1]"]
    frames, values = scene.curves["bs.weight[0]"]
    assert frames[0] == 0 and frames[-1] == pytest.approx(23)  # 30 frames at 30 fps -> 24 at 24
    assert np.allclose(frames, np.arange(24))
    assert values[12] == pytest.approx(15 / 100 + 17 / 100 + 0.25)  # frame 12 = 0.5 s
    assert player not in scene.nodes and "bs.weight[0]" not in scene.connections
    bake.undoIt()
    assert player in scene.nodes and not scene.curves
    assert scene.connections["bs.weight[0]"] == f"{player}.outputWeights[17]"
    bake.redoIt()
    assert "bs.weight[1]" in scene.curves and player not in scene.nodes


def test_commands_fail_with_the_fix(loaded) -> None:  # noqa: ANN001
    scene, _ = loaded
    with pytest.raises(A2XError, match="select the player first"):
        _run(scene, "a2xBake", {}, [])
    player = _run(scene, "a2xCreatePlayer").result
    assert any("no audio" in m for _, m in scene.messages)
    with pytest.raises(A2XError, match="connect it first"):
        _run(scene, "a2xBake", {}, [player])
    assert scene.messages[-1][0] == "error"
    with pytest.raises(A2XError, match="does not exist"):
        _run(scene, "a2xConnectPlayer", {}, [player, "ghost"])


def test_connect_and_load_model_defaults(loaded, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    scene, _ = loaded
    scene.add_blendshape("bs", {0: "jawOpen"})
    player = _run(scene, "a2xCreatePlayer").result
    connect = _run(scene, "a2xConnectPlayer", {"force": True}, [player, "bs"])
    assert connect.result == ["bs.weight[0]"]

    class Model:
        def info(self) -> dict:
            return {"parameters": {"skin_strength": 1.1, "tongue_strength": 1.2}}

    class Loaded:
        model = Model()

    monkeypatch.setattr(plugin.MODELS, "get", lambda spec: Loaded())
    defaults = _run(scene, "a2xLoadModelDefaults", {}, [player])
    assert defaults.result == ["skinStrength", "tongueStrength"]
    assert scene.nodes[player]["attrs"]["skinStrength"] == 1.1
    defaults.undoIt()
    assert "skinStrength" not in scene.nodes[player]["attrs"]


def test_real_default_model_through_the_engine(wav: Path) -> None:
    pytest.importorskip("a2x_core.lipsync.model", reason="the default model is not built yet")
    inputs = PlayerInputs.from_values({"audioFile": str(wav), "lowerFaceStrength": 1.0}, Fraction(24))
    track = PlayerEngine().wait(inputs)  # the default runner: load_model("default"), animate
    assert track.num_frames == 24 and track.fps == 24
    frame = track.sample(0.5)
    assert len(frame.weights) == 68 and all(0.0 <= w <= 1.0 for w in frame.weights)


def test_create_player_with_emotion_model_mix_and_identity(loaded, wav: Path, tmp_path: Path,
                                                           runner: FakeRunner) -> None:  # noqa: ANN001  # fmt: skip
    scene, runtime = loaded
    a2e = tmp_path / "a2e.json"
    a2e.write_text("{}")
    scene.add_blendshape("bs", {0: "jawOpen"})
    flags = {"audio": str(wav), "emotionModel": str(a2e), "emotionMix": "override",
             "identity": "Claire"}  # fmt: skip
    command = _run(scene, "a2xCreatePlayer", flags, ["bs"])
    player = command.result
    attrs = scene.nodes[player]["attrs"]
    assert (attrs["emotionModelPath"], attrs["emotionMix"], attrs["identity"]) == (
        str(a2e), 1.0, "Claire")  # fmt: skip
    scene.evaluate(player, 0.0)  # the node's compute reads them into the engine's inputs
    _wait_idle(runtime.engine_of(player))
    inputs = runner.calls[-1]
    assert (inputs.emotion_model, inputs.emotion_mix, inputs.identity) == (
        str(a2e), "override", "Claire")  # fmt: skip
    command.undoIt()
    assert player not in scene.nodes
    german = _run(scene, "a2xCreatePlayer", {"audio": str(wav), "language": "DE",
                                             "transcript": " Der Lappen liegt. "}, ["bs"])  # fmt: skip
    assert scene.nodes[german.result]["attrs"]["language"] == "de"
    assert scene.nodes[german.result]["attrs"]["transcript"] == "Der Lappen liegt."
    scene.evaluate(german.result, 0.0)  # the node's compute hands both to the engine
    _wait_idle(runtime.engine_of(german.result))
    assert (runner.calls[-1].language, runner.calls[-1].transcript) == ("de", "Der Lappen liegt.")
    with pytest.raises(A2XError, match="klingon"):
        _run(scene, "a2xCreatePlayer", {"language": "klingon"}, ["bs"])
    assert scene.nodes_of_type(NODE_TYPE) == [german.result], "a refused command creates nothing"
    german.undoIt()
    with pytest.raises(A2XError, match="use blend or override"):
        _run(scene, "a2xCreatePlayer", {"emotionMix": "loud"}, ["bs"])
    assert not scene.nodes_of_type(NODE_TYPE), "a refused command creates nothing"


def test_node_outputs_detected_emotions(loaded, wav: Path, runner: FakeRunner) -> None:  # noqa: ANN001
    scene, runtime = loaded
    runner.emotions = True
    player = _run(scene, "a2xCreatePlayer", {"audio": str(wav)}).result
    scene.evaluate(player, 0.0)
    _wait_idle(runtime.engine_of(player))
    frame = scene.evaluate(player, 0.5)["frame"]  # track frame 15
    joy = 6
    assert frame.emotions[joy] == pytest.approx((15 + joy) / 1000)
    assert frame.detected[joy] == pytest.approx((15 + joy) / 2000)


def test_bake_keys_emotion_curves_on_the_blendshape(loaded, wav: Path, runner: FakeRunner) -> None:  # noqa: ANN001
    scene, _ = loaded
    runner.emotions = True
    scene.add_blendshape("bs", {0: "jawOpen", 1: "mouthSmile_L"}, mesh="head")
    player = _run(scene, "a2xCreatePlayer", {"audio": str(wav)}, ["bs"]).result
    bake = _run(scene, "a2xBake", {"keyEmotions": True, "deletePlayer": True}, [player])
    extra = scene.nodes["bs"]["extra_attrs"]
    assert sorted(extra) == sorted([f"a2x_emotion_{e}" for e in EMOTIONS]
                                   + [f"a2x_emotion_detected_{e}" for e in EMOTIONS])  # fmt: skip
    assert extra["a2x_emotion_joy"] == (0.0, 1.0)
    assert "bs.a2x_emotion_joy" in bake.result and "bs.weight[0]" in bake.result
    frames, values = scene.curves["bs.a2x_emotion_joy"]
    weight_frames, _ = scene.curves["bs.weight[0]"]
    assert np.array_equal(frames, weight_frames) and np.allclose(frames, np.arange(24))
    assert values[12] == pytest.approx((15 + 6) / 1000)  # frame 12 at 24 fps = track frame 15
    _, detected = scene.curves["bs.a2x_emotion_detected_joy"]
    assert detected[12] == pytest.approx((15 + 6) / 2000)
    assert any("20 emotion curve(s) as a2x_emotion_* on bs" in m for _, m in scene.messages)
    bake.undoIt()
    assert not scene.curves and "a2x_emotion_joy" not in scene.nodes["bs"].get("extra_attrs", {})
    bake.redoIt()
    assert "bs.a2x_emotion_joy" in scene.curves and player not in scene.nodes


def test_bake_emotion_node_choices_and_errors(loaded, wav: Path, runner: FakeRunner) -> None:  # noqa: ANN001
    scene, _ = loaded
    scene.add_blendshape("bs", {0: "jawOpen"}, mesh="head")
    player = _run(scene, "a2xCreatePlayer", {"audio": str(wav)}, ["bs"]).result
    with pytest.raises(A2XError, match="would be deleted with -deletePlayer"):
        _run(scene, "a2xBake", {"keyEmotions": True, "emotionNode": player, "deletePlayer": True},
             [player])  # fmt: skip
    with pytest.raises(A2XError, match="'ghost' does not exist"):
        _run(scene, "a2xBake", {"keyEmotions": True, "emotionNode": "ghost"}, [player])
    assert not scene.curves, "refused before anything is keyed"
    plain = _run(scene, "a2xBake", {"keyEmotions": True}, [player])  # a model without emotions
    assert plain.result == ["bs.weight[0]"]
    assert any("gives no emotion curves" in m for kind, m in scene.messages if kind == "warning")
    plain.undoIt()
    runner.emotions = True
    scene.nodes[player]["attrs"]["skinStrength"] = 0.9  # a new track, now with emotions
    first = _run(scene, "a2xBake", {"keyEmotions": True, "emotionNode": "head"}, [player])
    assert "head.a2x_emotion_joy" in scene.curves and "bs.a2x_emotion_joy" not in scene.curves
    first.undoIt()
    assert "head.a2x_emotion_joy" not in scene.curves


def test_bake_keys_the_head_motion_as_degree_attributes(loaded, wav: Path, runner: FakeRunner) -> None:  # noqa: ANN001
    scene, _ = loaded
    scene.add_blendshape("bs", {0: "jawOpen"}, mesh="head")
    player = _run(scene, "a2xCreatePlayer", {"audio": str(wav)}, ["bs"]).result
    plain = _run(scene, "a2xBake", {"keyHead": True}, [player])  # a model without a head
    assert any("gives no head motion" in m for kind, m in scene.messages if kind == "warning")
    plain.undoIt()
    runner.head = True
    scene.nodes[player]["attrs"]["skinStrength"] = 0.9  # a new track, now with a head
    bake = _run(scene, "a2xBake", {"keyHead": True, "emotionNode": "head"}, [player])
    extra = scene.nodes["head"]["extra_attrs"]
    assert extra["a2x_head_yaw"] == (-45.0, 45.0) and "head.a2x_head_pitch" in bake.result
    frames, yaw = scene.curves["head.a2x_head_yaw"]
    weight_frames, _ = scene.curves["bs.weight[0]"]
    assert np.array_equal(frames, weight_frames)
    assert yaw[12] == pytest.approx(np.degrees(2 * 15 / 1000), abs=1e-4)  # track frame 15
    assert not any(k.startswith("a2x_emotion") for k in extra), "only what was asked"
    bake.undoIt()
    assert "head.a2x_head_yaw" not in scene.curves


def test_real_models_with_an_emotion_model_through_the_engine(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the test model folders are written with onnx")
    import soundfile

    from tests.a2e_folders import make_emotion_folder
    from tests.a2f_folders import make_regression_folder

    a2f = make_regression_folder(tmp_path / "mark").model_json
    a2e = make_emotion_folder(tmp_path / "a2e").model_json
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, (0.3 * np.random.default_rng(2).standard_normal(16000)).astype(np.float32),
                    16000)  # fmt: skip
    values = {"audioFile": str(clip), "modelPath": str(a2f), "emotionModelPath": str(a2e),
              "emotionWindow": 16000, "emotionSkip": 1, "emotionMix": 1,
              "preferredEmotions": {6: 1.0}}  # fmt: skip
    track = PlayerEngine().wait(PlayerInputs.from_values(values, Fraction(24)))
    result = track.result
    assert result.detected_emotions is not None and track.num_frames == 24
    assert (result.options.emotion_window, result.options.emotion_skip) == (16000, 1)
    assert result.options.emotion_mix == "override"
    joy = list(result.emotion_names).index("joy")
    assert np.allclose(result.emotions[:, joy], 0.6 * 0.5, atol=1e-6)  # override: the preferred
    frame = track.sample(0.5)
    assert any(frame.detected) and frame.emotions[6] == pytest.approx(0.3, abs=1e-6)
    from a2x_maya.bake import plan_emotion_keys

    keys = plan_emotion_keys(result, Fraction(24), 0.0)
    assert len(keys) == 20 and keys[0].frames.size == 24


@pytest.fixture(scope="module")
def diffusion_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A generated Audio2Face-3D v3.0 diffusion folder (Claire, James, Mark) and a 1 s clip."""
    pytest.importorskip("onnx", reason="the test model folders are written with onnx")
    import soundfile

    from tests.diffusion_folders import make_diffusion_folder

    root = tmp_path_factory.mktemp("diffusion")
    clip = root / "clip.wav"
    soundfile.write(clip, (0.3 * np.random.default_rng(3).standard_normal(16000)).astype(np.float32),
                    16000)  # fmt: skip
    return make_diffusion_folder(root / "claire").model_json, clip


def test_real_diffusion_model_identity_through_the_player(diffusion_folder) -> None:  # noqa: ANN001
    """A player on a generated diffusion folder with identity "Mark": Load Model Defaults
    takes Mark's values, and the track (and the bake) equals the core's run for Mark, not
    Claire's; the face controls reach the diffusion model."""
    from a2x_core import Animator, InferenceOptions

    model_json, clip = diffusion_folder
    scene = FakeScene(fps=Fraction(24), interactive=False)  # batch: compute waits for the track
    runtime = plugin.initialize("mobject", scene=scene)
    try:
        scene.add_blendshape("bs", {0: "jawOpen", 1: "eyeBlinkLeft"})
        flags = {"audio": str(clip), "model": str(model_json), "identity": "mark"}
        player = _run(scene, "a2xCreatePlayer", flags, ["bs"]).result
        defaults = _run(scene, "a2xLoadModelDefaults", {}, [player])
        attrs = scene.nodes[player]["attrs"]
        assert "lowerFaceStrength" in defaults.result and "tongueStrength" in defaults.result
        # the generated identities differ in these (Mark: 1.4 and 1.1; Claire: 1.0 and 1.0)
        assert (attrs["lowerFaceStrength"], attrs["skinStrength"]) == (
            pytest.approx(1.4), pytest.approx(1.1))  # fmt: skip

        core = Animator(str(model_json))
        mark = core.animate(str(clip), InferenceOptions(fps=Fraction(24), identity="Mark"))
        claire = core.animate(str(clip), InferenceOptions(fps=Fraction(24), identity="Claire"))
        assert not np.allclose(mark.weights, claire.weights, atol=1e-3)

        out = scene.evaluate(player, 0.5)["frame"]  # 0.5 s = frame 12 at 24 fps
        result = runtime.engine_of(player).track.result
        assert result.parameters["identity"] == "Mark" and result.options.identity == "mark"
        assert result.weights.shape == mark.weights.shape == (24, 52)
        np.testing.assert_allclose(result.weights, mark.weights, atol=1e-6)
        assert out.weights[17] == pytest.approx(float(mark.curve("jawOpen")[12]), abs=1e-6)

        bake = _run(scene, "a2xBake", {}, [player])
        assert sorted(bake.result) == ["bs.weight[0]", "bs.weight[1]"]
        frames, values = scene.curves["bs.weight[0]"]
        assert np.allclose(frames, np.arange(24))
        np.testing.assert_allclose(values, mark.curve("jawOpen"), atol=1e-6)
        assert not np.allclose(values, claire.curve("jawOpen"), atol=1e-3)
        bake.undoIt()

        # a face control is a parameter of the diffusion model too (a new track)
        attrs["skinStrength"] = 0.5
        scene.evaluate(player, 0.0)
        weaker = runtime.engine_of(player).track.result
        want = core.animate(str(clip), InferenceOptions(fps=Fraction(24), identity="Mark",
                                                        parameters={"skin_strength": 0.5}))  # fmt: skip
        assert weaker.parameters["skin_strength"] == 0.5
        np.testing.assert_allclose(weaker.weights, want.weights, atol=1e-6)
        assert not np.allclose(weaker.weights, mark.weights, atol=1e-3)

        attrs["identity"] = "Nobody"  # an identity the model lacks: the error lists them
        with pytest.raises(A2XError, match="Claire, James, Mark"):
            _run(scene, "a2xLoadModelDefaults", {}, [player])
    finally:
        plugin.uninitialize("mobject", scene=scene)
