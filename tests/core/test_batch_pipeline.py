"""``a2x batch`` inside a worker: the fast JSON writer, the decode/write thread pools (same
bytes as ``a2x animate``, a killed run resumed without redoing finished clips and without a
half-written file), Audio2Emotion in batch, and a task of several clips that kills its workers.

Real clips cut from samples/jfk.flac, real generated model folders on ONNX Runtime, real
processes killed with SIGKILL, real local Dask clusters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from a2x_core.api import Animator
from a2x_core.batch import ledger
from a2x_core.batch.manifest import read_clips
from a2x_core.batch.runner import BatchSettings, open_client, plan_batch, run_batch
from a2x_core.batch.work import run_task
from a2x_core.export.writers import dumps_indent1, to_a2f_json, write_result
from tests.a2e_folders import make_emotion_folder
from tests.conftest import REPO, run_cli
from tests.core.batch_clips import (
    CrashOnClip,
    corrupt_clips,
    cut_clips,
    regression_model,
    write_manifest,
)


def _visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file() and ".tmp" in p.name]


def test_fast_json_is_json_dumps_indent1_byte_for_byte(tmp_path: Path) -> None:
    """Real results (regression model: weights, tongue, jaw 4x4, eyes, head, emotions) and
    edge cases print exactly as ``json.dumps(indent=1, allow_nan=False)``; NaN still raises."""
    clips = cut_clips(tmp_path / "in", 2, seconds=0.6)
    results = Animator(str(regression_model(tmp_path / "reg"))).animate_many(clips)
    for result in results:
        want = json.dumps(to_a2f_json(result), indent=1, allow_nan=False)
        assert dumps_indent1(to_a2f_json(result, arrays=True)) == want
        assert dumps_indent1(to_a2f_json(result)) == want
    rng = np.random.default_rng(3)
    for shape in [(1,), (5,), (1, 1), (3, 2), (2, 1, 3), (2, 2, 2, 2), (0,), (2, 0)]:
        array = np.round(rng.normal(size=shape) * 10.0 ** rng.integers(-9, 9, size=shape), 6)
        document = {"a": array, "b": [array, "é\"\n", None, True, 3, 2.5, [], {}], "c": {"d": array}}
        lists = json.loads(json.dumps(document, default=lambda v: v.tolist()))
        assert dumps_indent1(document) == json.dumps(lists, indent=1), shape
    assert dumps_indent1({1: [1, 2.0]}) == json.dumps({1: [1, 2.0]}, indent=1)
    for bad in ([1.0, float("nan")], {"x": float("inf")}, np.array([1.0, np.nan])):
        with pytest.raises(ValueError):
            dumps_indent1(bad)


def test_threaded_task_writes_what_animate_writes(tmp_path: Path) -> None:
    """One task of 5 clips (one corrupt) in steps of 2: decoded on the decode pool, written on
    the writer pool; every good output is ``write_result``'s bytes, each with its record; the
    corrupt clip fails alone; nothing temporary is left."""
    clips = cut_clips(tmp_path / "in", 4, seconds=0.5)
    for extra in corrupt_clips(tmp_path / "in")[1:]:  # keep the text file named .wav
        extra.unlink()
    model = str(regression_model(tmp_path / "reg"))
    out = tmp_path / "out"
    out.mkdir()
    settings = BatchSettings(outdir=out, model=model, formats=(".json", ".csv"), chunk=10, step=2,
                             engine={"backend": "onnxruntime", "threads": 1})  # fmt: skip
    plan = plan_batch(read_clips(tmp_path / "in"), settings)
    (task,) = plan.tasks
    rows = {row["clip"]: row for row in run_task(task)}
    assert rows["corrupt_text"]["status"] == "failed" and rows["corrupt_text"]["error"]
    animator = Animator(model)
    (tmp_path / "ref").mkdir()
    for clip in clips:
        assert rows[clip.stem]["status"] == "done", rows[clip.stem]
        ref = write_result(animator.animate(clip.resolve()), tmp_path / "ref" / f"{clip.stem}.json")
        assert (out / f"{clip.stem}.json").read_bytes() == ref.read_bytes()
        record = ledger.read_record(out, clip.stem)
        assert record is not None and record["state"] == "done"
    assert _visible(out) == {f"{c.stem}{s}" for c in clips for s in (".json", ".csv")}
    assert not _temporaries(out)
    again = plan_batch(read_clips(tmp_path / "in"), settings)
    assert [c["name"] for t in again.tasks for c in t["clips"]] == ["corrupt_text"]


KILLABLE = """
import sys
from pathlib import Path
from a2x_core.batch.manifest import read_clips
from a2x_core.batch.runner import BatchSettings, plan_batch
from a2x_core.batch.work import run_task
source, out, model = sys.argv[1:4]
settings = BatchSettings(outdir=Path(out), model=model, formats=(".json", ".csv", ".npz"),
                         chunk=1000, step=2, engine={"backend": "onnxruntime", "threads": 1})
for task in plan_batch(read_clips(source), settings).tasks:
    run_task(task)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_worker_killed_while_writing_resumes_without_redoing_or_half_files(tmp_path: Path) -> None:
    """A worker process running one task of 24 clips (steps of 2, writes on the writer pool)
    is SIGKILLed mid-task: every output on disk is complete, every clip with a done record
    has all its outputs; the next run redoes exactly the clips without one, leaves no
    temporary file, and a third run has nothing to do."""
    clips = cut_clips(tmp_path / "in", 24, seconds=0.6)
    model = str(regression_model(tmp_path / "reg"))
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(tmp_path / "in"), str(out), model],
                            env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            done = [c for c in clips if (ledger.read_record(out, c.stem) or {}).get("state") == "done"]
            if len(done) >= 5:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    finished = {c.stem for c in clips if (ledger.read_record(out, c.stem) or {}).get("state") == "done"}
    assert 5 <= len(finished) < len(clips)
    for name in _visible(out):  # whatever is visible is complete
        path = out / name
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".npz":
            with np.load(path) as data:
                assert data["weights"].shape[1] == 52
        else:
            assert path.read_text().count("\n") > 10
    for name in finished:
        assert {f"{name}.json", f"{name}.csv", f"{name}.npz"} <= _visible(out)

    settings = BatchSettings(outdir=out, model=model, formats=(".json", ".csv", ".npz"),
                             chunk=1000, step=3, engine={"backend": "onnxruntime", "threads": 1})  # fmt: skip
    plan = plan_batch(read_clips(tmp_path / "in"), settings)
    redo = {c["name"] for t in plan.tasks for c in t["clips"]}
    assert redo == {c.stem for c in clips} - finished
    assert {name for name, row in plan.rows.items() if row["status"] == "skipped"} == finished
    rows = [row for task in plan.tasks for row in run_task(task)]
    assert {row["status"] for row in rows} == {"done"}, rows
    assert not _temporaries(out), _temporaries(out)
    assert _visible(out) == {f"{c.stem}{s}" for c in clips for s in (".json", ".csv", ".npz")}
    assert not plan_batch(read_clips(tmp_path / "in"), settings).tasks


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_emotion_model_in_batch_equals_animate(tmp_path: Path) -> None:
    """``a2x batch --emotion-model`` (and the ``emotion_model`` column) runs Audio2Emotion as
    ``a2x animate --emotion-model`` does: each output equals animate's; the record names the
    emotion model, so changing it redoes the clip; a missing one fails its clips alone."""
    clips = cut_clips(tmp_path / "in", 3, seconds=0.9)
    model = regression_model(tmp_path / "reg")
    a2e = make_emotion_folder(tmp_path / "a2e").model_json
    other = make_emotion_folder(tmp_path / "a2e-other", bias=np.array(
        [2.0, -0.2, 0.3, 0.0, -1.0, -0.1], np.float32)).model_json  # fmt: skip
    manifest = write_manifest(tmp_path / "in" / "takes.csv", [
        {"audio": clips[0].name, "emotion_model": ""},
        {"audio": clips[1].name, "emotion_model": str(other)},
        {"audio": clips[2].name, "emotion_model": "../missing-a2e/model.json"},
    ])  # fmt: skip
    out = tmp_path / "out"
    common = ["--model", str(model), "--emotion", "joy=0.4", "--emotion-param", "emotion_strength=0.9"]
    proc = run_cli("batch", str(manifest), "-o", str(out), "--workers", "1",
                   "--emotion-model", str(a2e), *common, timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    report = {r["clip"]: r for r in json.loads((out / "report.json").read_text())["clips"]}
    assert report["line002"]["status"] == "failed" and "emotion model" in report["line002"]["error"]
    for clip, emotion in ((clips[0], a2e), (clips[1], other)):
        assert report[clip.stem]["status"] == "done", report[clip.stem]
        ref = tmp_path / f"ref-{clip.stem}.json"
        done = run_cli("animate", str(clip.resolve()), "-o", str(ref), "--emotion-model",
                       str(emotion), *common, "-q")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (out / f"{clip.stem}.json").read_bytes() == ref.read_bytes()
        detected = json.loads(ref.read_text())["a2x"]["detectedEmotions"]
        assert np.ptp(np.asarray(detected)) > 0  # Audio2Emotion did run
    ours, theirs = (np.asarray(json.loads((out / f"{name}.json").read_text())["a2x"]["detectedEmotions"])
                    for name in ("line000", "line001"))  # fmt: skip
    frames = min(len(ours), len(theirs))
    assert not np.allclose(ours[:frames], theirs[:frames])  # each row's own emotion model
    record = ledger.read_record(out, "line000")
    assert record is not None and record["inputs"]["emotion_model"]["spec"] == str(a2e.resolve())
    settings = BatchSettings(outdir=out, model=str(model), emotion_model=str(other.resolve()))
    replan = plan_batch(read_clips(manifest), settings)
    assert "line000" in {c["name"] for t in replan.tasks for c in t["clips"]}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_task_of_several_clips_that_kills_workers_fails_only_its_culprit(tmp_path: Path) -> None:
    """A task of three clips whose first clip kills the worker: after two deaths the task is
    split one clip per task; the culprit kills two more workers and is given up, the other
    two are done."""
    pytest.importorskip("distributed")
    cut_clips(tmp_path / "in", 3, seconds=0.5)
    out = tmp_path / "out"
    out.mkdir()
    settings = BatchSettings(outdir=out, chunk=3)
    plan = plan_batch(read_clips(tmp_path / "in"), settings)
    assert len(plan.tasks) == 1
    with open_client(workers=1) as client:
        client.register_plugin(CrashOnClip("line000"), name="crash-line000")
        results = run_batch(plan, client, settings)
    status = {row["clip"]: row for row in results}
    assert status["line000"]["status"] == "failed"
    assert "crashed its Dask worker twice" in status["line000"]["error"]
    assert status["line001"]["status"] == status["line002"]["status"] == "done"
    assert _visible(out) == {"line001.json", "line002.json", "report.csv", "report.json"}
