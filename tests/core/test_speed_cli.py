"""Speed of the whole ``a2x animate`` command, as behaviour (no timing asserts): the default
model's path imports no engine it does not run, the command's forked workers decode exactly as
spawned ones and end on SIGTERM, and the fast JSON writer writes json's own text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import a2x_core
from a2x_core.export.writers import dumps_indent1, to_a2f_json, write_json
from a2x_core.options import InferenceOptions
from a2x_core.result import AnimationResult
from tests.conftest import REPO, SAMPLE

#: Modules the default model never needs; each costs start-up time (torch alone ~1-2 s).
HEAVY = ("torch", "onnxruntime", "scipy", "matplotlib", "av", "tensorrt", "cv2", "sklearn")
#: a2x's own machinery for streams and Audio2Face-3D models.
UNUSED = ("a2x_core.executor.stream", "a2x_core.executor.loop", "a2x_core.models.regression_folder",
          "a2x_core.models.regression", "a2x_core.models.diffusion", "a2x_core.models.audio2emotion")  # fmt: skip

IMPORTS = """
import json, sys
from a2x_core.cli import main
code = main(["animate", sys.argv[1], "--end", "2", "-q", "-o", sys.argv[2]])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r} or m in {unused!r})
print(json.dumps([code, heavy]))
"""


def test_default_model_command_imports_no_engine_it_does_not_run(tmp_path) -> None:
    """``a2x animate`` with the default model, in a fresh interpreter: the JSON is written and
    neither torch, onnxruntime, scipy, matplotlib... nor the stream and Audio2Face-3D modules
    were imported."""
    script = IMPORTS.format(heavy=HEAVY, unused=UNUSED)
    out = tmp_path / "a.json"
    proc = subprocess.run([sys.executable, "-c", script, str(SAMPLE), str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    code, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0 and out.exists()
    assert heavy == []


def test_public_names_resolve_on_first_use() -> None:
    """``a2x_core``'s public names are imported when used, each from its module."""
    for name in a2x_core.__all__:
        assert getattr(a2x_core, name) is not None, name
    from a2x_core import Animator, Stream

    assert Animator.__module__ == "a2x_core.api" and Stream.__module__ == "a2x_core.executor.stream"
    assert set(a2x_core.__all__) <= set(dir(a2x_core))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = a2x_core.nothing  # type: ignore[attr-defined]


FORK_VS_SPAWN = """
import json, os, signal, sys
from a2x_core.audio.decode import decode_audio
from a2x_core.lipsync import parallel

samples = decode_audio(sys.argv[1]).samples


def on_sigterm(signum, frame):  # as the CLI's handler does: SIGTERM raises
    raise RuntimeError("terminated")


signal.signal(signal.SIGTERM, on_sigterm)
runs = []
for fork in (True, False):
    parallel.allow_fork(fork)
    phones = parallel.Decoding(samples, fast=True, workers=2).result()
    method = parallel._POOL._mp_context.get_start_method()
    pid = parallel.worker_pids()[0]
    runs.append([method, [[p.label, p.start_s, p.end_s, p.word] for p in phones]])
    parallel.shutdown()
    if fork:  # a forked worker ends on SIGTERM (this process's handler is not inherited)
        parallel.allow_fork(True)
        parallel.Decoding(samples, fast=True, workers=2).result()
        process = next(iter(parallel._POOL._processes.values()))
        os.kill(process.pid, signal.SIGTERM)
        process.join(20)
        runs.append(process.exitcode)
        parallel.abort()
print(json.dumps(runs))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is used on Linux only")
def test_forked_workers_decode_exactly_as_spawned_ones() -> None:
    """The command's workers start by fork with the decoders already loaded; an 11 s clip,
    split across two of them, gives the very phones that spawned workers give, and SIGTERM
    ends a forked worker as it ends a spawned one."""
    proc = subprocess.run([sys.executable, "-c", FORK_VS_SPAWN, str(SAMPLE)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (forked, phones_forked), sigterm_exit, (spawned, phones_spawned) = json.loads(
        proc.stdout.strip().splitlines()[-1]
    )
    assert (forked, spawned) == ("fork", "spawn")
    assert len(phones_forked) > 20 and phones_forked == phones_spawned
    assert sigterm_exit == -15


def _result(frames: int) -> AnimationResult:
    rng = np.random.default_rng(7)
    weights = rng.random((frames, 52), dtype=np.float32)
    weights[0, :4] = [0.0, 1.0, 1e-7, 0.5]  # exact values, a tiny one
    return AnimationResult(
        weights=weights, fps=Fraction(30000, 1001), audio_path="clips/å ü.wav", start_s=0.5,
        duration_s=frames / 30.0, model="default", model_version="x", options=InferenceOptions(),
        parameters={"fast": True}, head_rotations=rng.normal(size=(frames, 3)),
        eye_rotations=np.zeros((frames, 6)), arrays={}, warnings=['a "quoted"\nwarning ✓'],
    )  # fmt: skip


@pytest.mark.parametrize("frames", [1, 3, 240])
def test_json_export_is_jsons_own_text(tmp_path, frames) -> None:
    """The fast matrix writer gives json.dumps(indent=1)'s text, byte for byte."""
    result = _result(frames)
    document = to_a2f_json(result)
    assert dumps_indent1(document) == json.dumps(document, indent=1, allow_nan=False)
    write_json(result, tmp_path / "a.json")
    text = (tmp_path / "a.json").read_text(encoding="utf-8")
    assert text == json.dumps(document, indent=1, allow_nan=False) + "\n"
    assert json.loads(text)["weightMat"] == document["weightMat"]


def test_json_writer_keeps_jsons_rules_for_odd_values() -> None:
    """Ints, empty rows, nested dicts and non-string keys go through json itself; NaN and
    infinity raise json's ValueError."""
    odd = {"a": [[1, 2.5]], "b": [[], [1.0]], "c": {"d": [[0.25]], "e": []}, "f": {1: [[1.0]]},
           "g": [[True]], "h": [{"i": [[-0.0]]}]}  # fmt: skip
    assert dumps_indent1(odd) == json.dumps(odd, indent=1)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="not JSON compliant"):
            dumps_indent1({"weightMat": [[0.5, bad]]})


@pytest.mark.parametrize(
    ("argv", "default"),
    [(["animate", "a.wav", "-o", "a.json"], True), (["animate", "--model", "default", "a.wav"], True),
     (["animate", "--model=default", "a.wav"], True), (["animate", "--model", "m/model.json"], False),
     (["animate", "--mod", "default"], False), (["live", "a.wav"], False), ([], False)],
)  # fmt: skip
def test_single_threaded_blas_only_for_the_default_models_animate(argv, default) -> None:
    """The command limits OpenBLAS to one thread only where its numpy work is small (the
    default model's ``animate``); other models keep their threads."""
    from a2x_core.cli import _default_model_animate

    assert _default_model_animate(argv) is default


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_the_command_forks_its_workers_with_its_progress_bar_on(tmp_path) -> None:
    """``a2x animate`` as users run it (progress bar on, so tqdm is loaded): the 11 s clip is
    decoded by workers forked from the command (its command line, no ``spawn_main``), and no
    other helper process (no resource tracker) is started."""
    command = [sys.executable, "-m", "a2x_core", "animate", str(SAMPLE), "-o",
               str(tmp_path / "a.json")]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO), A2X_PROGRESS_DELAY="0")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    seen: dict[int, bytes] = {}
    try:
        while process.poll() is None:
            for pid in _children(process.pid) - set(seen):
                try:
                    seen[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0
    assert len(seen) >= 1, "no worker process was seen: nothing was tested"
    parent = b"\0".join(os.fsencode(a) for a in command)
    assert all(cmdline.rstrip(b"\0") == parent for cmdline in seen.values()), seen
