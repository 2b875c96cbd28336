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
    WorkerJob,
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
        start_s=0.5, end_s=2.0, backend="onnxruntime", threads=2,
    )  # fmt: skip
    wire = json.loads(json.dumps(options.to_json()))
    assert options_from_json(wire) == options


def test_unknown_option_names_the_fix() -> None:
    with pytest.raises(ParameterError, match="frobnicate"):
        options_from_json({"frobnicate": 1})


def test_result_round_trip() -> None:
    rng = np.random.default_rng(1)
    result = AnimationResult(
        weights=rng.random((7, 52), dtype=np.float32), fps=Fraction(24000, 1001),
        audio_path="a.wav", start_s=0.25, duration_s=0.3, model="default", warnings=["quiet"],
        tongue_weights=rng.random((7, 16), dtype=np.float32), tongue_names=tuple("abcdefghijklmnop"),
    )  # fmt: skip
    back = result_from_json(json.loads(json.dumps(result_to_json(result))), InferenceOptions())
    assert np.array_equal(back.weights, result.weights) and back.fps == result.fps
    assert np.array_equal(back.tongue_weights, result.tongue_weights)
    assert (back.start_s, back.warnings, back.tongue_names) == (
        0.25,
        ["quiet"],
        result.tongue_names,
    )


def test_bad_request_is_an_error_event_and_exit_code_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "a2x_core.worker"], input="not json\n", capture_output=True,
        text=True, timeout=60, env=_env(),
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "hello" and events[0]["protocol"] == 1
    assert events[-1]["event"] == "error" and events[-1]["type"] == "ParameterError"
    assert proc.returncode == 2


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
    assert info["emotion_names"] == [] and info["kind"] == "default"
    job = start_worker(sys.executable, "default", [SAMPLE], InferenceOptions(fps=60))
    job.cancel()
    with pytest.raises(CancelledError):
        job.result(timeout=60)
