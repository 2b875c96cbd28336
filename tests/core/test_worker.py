"""The external runtime protocol (``python -m a2x_core.worker``) and its client, WorkerJob."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

from a2x_core import AnimationResult, InferenceOptions
from a2x_core.errors import CancelledError, EngineError, ParameterError
from a2x_core.worker import (
    PROTOCOL,
    WorkerJob,
    model_summary,
    options_from_json,
    result_from_json,
    result_to_json,
    start_worker,
    worker_model_info,
)
from tests.conftest import REPO, SAMPLE


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _has_default_model() -> bool:
    try:
        import a2x_core.lipsync.model  # noqa: F401
    except ImportError:
        return False
    return True


needs_default = pytest.mark.skipif(not _has_default_model(), reason="default model not built yet")


def test_options_round_trip() -> None:
    options = InferenceOptions(
        fps=Fraction(30000, 1001), transcript="hello there", strength=1.5, smoothing_s=0.05,
        emotions=((0.0, {"joy": 0.5}), (1.5, {"anger": 0.2})), parameters={"input_strength": 1.2},
        start_s=0.5, end_s=2.0, backend="onnxruntime", threads=2, identity="Claire",
        emotion_window=32000, emotion_skip=2, emotion_mix="override",
        emotion_parameters={"emotion_strength": 0.9},
    )  # fmt: skip
    wire = json.loads(json.dumps(options.to_json()))
    back = options_from_json(wire)
    assert back == options
    assert (back.identity, back.emotion_window, back.emotion_skip, back.emotion_mix) == (
        "Claire", 32000, 2, "override")
    assert back.emotion_parameters == {"emotion_strength": 0.9}


def test_unknown_option_names_the_fix() -> None:
    with pytest.raises(ParameterError, match="frobnicate"):
        options_from_json({"frobnicate": 1})


def test_result_round_trip() -> None:
    rng = np.random.default_rng(1)
    result = AnimationResult(
        weights=rng.random((7, 52), dtype=np.float32), fps=Fraction(24000, 1001),
        audio_path="a.wav", start_s=0.25, duration_s=0.3, model="default", warnings=["quiet"],
        tongue_weights=rng.random((7, 16), dtype=np.float32), tongue_names=tuple("abcdefghijklmnop"),
        emotions=rng.random((7, 10), dtype=np.float32),
        detected_emotions=rng.random((7, 10), dtype=np.float32), emotion_names=tuple("ABCDEFGHIJ"),
    )  # fmt: skip
    back = result_from_json(json.loads(json.dumps(result_to_json(result))), InferenceOptions())
    assert np.array_equal(back.weights, result.weights) and back.fps == result.fps
    assert np.array_equal(back.tongue_weights, result.tongue_weights)
    assert np.array_equal(back.emotions, result.emotions)
    assert np.array_equal(back.detected_emotions, result.detected_emotions)
    assert back.emotion_names == result.emotion_names
    plain = AnimationResult(weights=result.weights, fps=result.fps)  # no optional arrays
    bare = result_from_json(json.loads(json.dumps(result_to_json(plain))), InferenceOptions())
    assert bare.emotions is None and bare.detected_emotions is None
    assert (back.start_s, back.warnings, back.tongue_names) == (
        0.25,
        ["quiet"],
        result.tongue_names,
    )


def test_model_summary_lists_identities_of_diffusion_models() -> None:
    class Diffusion:
        name, kind, version = "claire", "diffusion", "3.0"
        emotion_names = ("joy", "anger")
        identities = ("Claire", "James", "Mark")

    class Regression:  # no identities attribute at all
        name, kind, version, emotion_names = "mark", "regression", "2.3", ("joy",)

    assert model_summary(Diffusion()) == {"name": "claire", "kind": "diffusion", "version": "3.0",
                                          "emotion_names": ["joy", "anger"],
                                          "identities": ["Claire", "James", "Mark"]}  # fmt: skip
    assert model_summary(Regression())["identities"] == []


def _serve_raw(request: str) -> tuple[list[dict], int]:
    proc = subprocess.run(
        [sys.executable, "-m", "a2x_core.worker"], input=request, capture_output=True,
        text=True, timeout=60, env=_env(),
    )  # fmt: skip
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.returncode


def test_bad_request_is_an_error_event_and_exit_code_2() -> None:
    events, code = _serve_raw("not json\n")
    assert events[0]["event"] == "hello" and events[0]["protocol"] == PROTOCOL == 2
    assert events[-1]["event"] == "error" and events[-1]["type"] == "ParameterError"
    assert code == 2


def test_unknown_protocol_version_names_the_fix() -> None:
    events, code = _serve_raw(json.dumps({"protocol": 99, "command": "info"}) + "\n")
    assert events[-1]["event"] == "error" and "protocol 99" in events[-1]["message"]
    assert "same a2x version" in events[-1]["message"] and code == 2


def test_missing_interpreter_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="does not exist"):
        WorkerJob("/no/such/python", {"command": "info"}).start()


def test_worker_error_is_reraised_with_its_type(tmp_path) -> None:
    job = start_worker(sys.executable, "default", [tmp_path / "missing.wav"], InferenceOptions())
    with pytest.raises(Exception) as caught:
        job.result(timeout=120)
    assert type(caught.value).__name__ in {"AudioNotFoundError", "ModelError"}
    assert "missing.wav" in str(caught.value) or "model" in str(caught.value)


@needs_default
def test_worker_matches_in_process_animation() -> None:
    from a2x_core import Animator

    options = InferenceOptions(fps=30, transcript="and so my fellow americans")
    job = start_worker(sys.executable, "default", [SAMPLE], options)
    stages = []
    while (progress := job.poll()) is not None:
        stages.append(progress.stage)
        time.sleep(0.05)
    (remote,) = job.result()
    local = Animator("default", options).animate(SAMPLE)
    assert remote.num_frames == local.num_frames == 330
    assert np.allclose(remote.weights, local.weights, atol=1e-6)
    assert stages


@needs_default
def test_worker_info_and_cancel() -> None:
    info = worker_model_info(sys.executable, "default")
    assert info["emotion_names"] == [] and info["kind"] == "default" and info["identities"] == []
    events, code = _serve_raw(json.dumps({"protocol": 1, "command": "info", "model": "default"})
                              + "\n")  # an older add-on's request is still served  # fmt: skip
    assert code == 0 and events[-2]["event"] == "info" and events[-1]["event"] == "done"
    job = start_worker(sys.executable, "default", [SAMPLE], InferenceOptions(fps=60))
    job.cancel()
    with pytest.raises(CancelledError):
        job.result(timeout=60)


@pytest.fixture(scope="module")
def emotion_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(Audio2Face model.json, Audio2Emotion model.json, a 1.2 s clip), generated."""
    pytest.importorskip("onnx", reason="the test model folders are written with onnx")
    import soundfile

    from tests.a2e_folders import make_emotion_folder
    from tests.a2f_folders import make_regression_folder

    root = tmp_path_factory.mktemp("worker-models")
    a2f = make_regression_folder(root / "mark")
    a2e = make_emotion_folder(root / "a2e")
    clip = root / "clip.wav"
    rng = np.random.default_rng(3)
    soundfile.write(clip, (0.3 * rng.standard_normal(19200)).astype(np.float32), 16000)
    return str(a2f.model_json), str(a2e.model_json), str(clip)


def test_worker_detects_emotions_like_the_animator(emotion_models) -> None:  # noqa: ANN001
    from a2x_core import Animator

    a2f, a2e, clip = emotion_models
    options = InferenceOptions(fps=30, backend="onnxruntime", emotion_window=16000, emotion_skip=1,
                               emotion_mix="override", emotions=((0.0, {"joy": 0.7}),))  # fmt: skip
    (remote,) = start_worker(sys.executable, a2f, [clip], options, emotion_model=a2e).result(120)
    local = Animator(a2f, options, emotion_model=a2e).animate(clip)
    assert remote.detected_emotions is not None and remote.emotions is not None
    assert remote.detected_emotions.shape == (remote.num_frames, 10)
    assert np.allclose(remote.detected_emotions, local.detected_emotions, atol=1e-6)
    assert np.allclose(remote.emotions, local.emotions, atol=1e-6)
    assert np.allclose(remote.weights, local.weights, atol=1e-6)
    joy = list(remote.emotion_names).index("joy")
    assert np.allclose(remote.emotions[:, joy], 0.7, atol=1e-6)  # override: the manual value
    (plain,) = start_worker(sys.executable, a2f, [clip], options.with_changes(emotions=()),
                            emotion_model=None).result(120)  # fmt: skip
    assert plain.detected_emotions is None
