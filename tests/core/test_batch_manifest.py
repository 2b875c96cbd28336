"""``a2x batch`` without a cluster: manifests, per-clip options, resume records, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from a2x_core.batch import ledger
from a2x_core.batch.manifest import read_clips
from a2x_core.batch.runner import BatchSettings, plan_batch
from a2x_core.errors import ParameterError
from a2x_core.options import InferenceOptions
from tests.conftest import REPO
from tests.core.batch_clips import corrupt_clips, cut_clips, write_manifest


def test_csv_manifest_columns_paths_and_per_clip_options(tmp_path: Path) -> None:
    clips = cut_clips(tmp_path / "audio", 2)
    manifest = write_manifest(tmp_path / "takes.csv", [
        {"audio": "audio/line000.wav", "output": "hero_001", "fps": "30000/1001",
         "emotions": "joy=0.7,anger=0.2", "transcript": "", "rig": ""},
        {"audio": str(clips[1]), "output": "", "fps": "", "emotions": "",
         "transcript": "ask not", "rig": ""},
    ])  # fmt: skip
    first, second = read_clips(manifest)
    assert first.audio == clips[0] and first.name == "hero_001" and first.fps == "30000/1001"
    assert first.emotions and dict(first.emotions[0][1]) == {"joy": 0.7, "anger": 0.2}
    assert second.name == "line001" and second.transcript == "ask not" and second.emotions is None
    plan = plan_batch([first, second], BatchSettings(outdir=tmp_path / "out",
                                                     options=InferenceOptions(seed=3)))  # fmt: skip
    by_name = {c["name"]: c for task in plan.tasks for c in task["clips"]}
    assert by_name["hero_001"]["options"]["fps"] == "30000/1001"
    assert by_name["hero_001"]["options"]["seed"] == 3  # the batch's option, kept
    assert by_name["line001"]["options"]["transcript"] == "ask not"
    assert by_name["line001"]["options"]["fps"] == "60/1"


def test_language_column_and_option_reach_each_clip(tmp_path: Path) -> None:
    """``language`` per row (the default model's spoken language) over the batch's
    ``--language``; a row's language is part of its recorded inputs (a change redoes it)."""
    cut_clips(tmp_path / "audio", 2)
    manifest = write_manifest(tmp_path / "takes.csv", [
        {"audio": "audio/line000.wav", "language": "DE"},
        {"audio": "audio/line001.wav", "language": ""},
    ])  # fmt: skip
    german, other = read_clips(manifest)
    assert (german.language, other.language) == ("de", None)
    plan = plan_batch([german, other], BatchSettings(outdir=tmp_path / "out",
                                                     options=InferenceOptions(language="ru")))  # fmt: skip
    by_name = {c["name"]: c for task in plan.tasks for c in task["clips"]}
    assert by_name["line000"]["options"]["language"] == "de"
    assert by_name["line001"]["options"]["language"] == "ru"  # the batch's
    english = plan_batch([german, other], BatchSettings(outdir=tmp_path / "out"))
    fingerprints = {c["name"]: c["fingerprint"] for task in english.tasks for c in task["clips"]}
    assert fingerprints["line001"] != by_name["line001"]["fingerprint"]
    assert fingerprints["line000"] == by_name["line000"]["fingerprint"]


def test_jsonl_manifest_and_folder(tmp_path: Path) -> None:
    cut_clips(tmp_path, 3)
    corrupt_clips(tmp_path)
    (tmp_path / "notes.txt").write_text("not a clip")
    manifest = tmp_path / "takes.jsonl"
    manifest.write_text('{"audio": "line000.wav", "emotions": {"joy": 1}, "model": "default"}\n'
                        '\n{"audio": "line002.wav", "output": "b"}\n')  # fmt: skip
    rows = read_clips(manifest)
    assert [c.name for c in rows] == ["line000", "b"] and rows[0].model == "default"
    folder = read_clips(tmp_path)
    assert [c.name for c in folder] == ["corrupt_cut", "corrupt_empty", "corrupt_text",
                                        "line000", "line001", "line002"]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [
    ("audio,speaker\na.wav,x\n", "unknown column(s) speaker"),
    ("output\nx\n", "no 'audio' column"),
    ("audio,output\na.wav,x\nb.wav,X\n", "both write 'X'"),
    ("audio,emotions\na.wav,glee=2\n", "takes.csv:2: emotions"),
    ("audio,fps\na.wav,-5\n", "takes.csv:2: fps"),
    ("audio,language\na.wav,klingon\n", "takes.csv:2: language"),
    ("audio,output\na.wav,../up\n", "not a plain file name"),
    ("audio\n", "lists no clip"),
    ("audio,output\na.wav,Report\n", "the batch report's"),
])  # fmt: skip
def test_bad_manifest_is_refused_naming_the_row(tmp_path: Path, text: str, expected: str) -> None:
    manifest = tmp_path / "takes.csv"
    manifest.write_text(text)
    with pytest.raises(ParameterError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_clips(manifest)


def test_resume_record_skips_only_unchanged_clips(tmp_path: Path) -> None:
    """A clip is done when its outputs exist and the recorded audio hash, model and options
    match; a changed option, audio or missing output is redone."""
    audio = cut_clips(tmp_path / "audio", 2)
    out = tmp_path / "out"
    out.mkdir()
    clips = read_clips(tmp_path / "audio")
    settings = BatchSettings(outdir=out)
    plan = plan_batch(clips, settings)
    for task in plan.tasks:
        for clip in task["clips"]:
            Path(clip["outputs"][0]).write_text("{}")
            ledger.write_record(out, clip["name"], {"fingerprint": clip["fingerprint"]})
    assert len(plan_batch(clips, settings).rows) == 2  # both skipped
    assert {r["status"] for r in plan_batch(clips, settings).rows.values()} == {"skipped"}
    changed = plan_batch(clips, BatchSettings(outdir=out, options=InferenceOptions(strength=0.5)))
    assert not changed.rows and sum(len(t["clips"]) for t in changed.tasks) == 2
    audio[0].write_bytes(audio[1].read_bytes())  # new audio under the old name
    (out / "line001.json").unlink()
    assert not plan_batch(clips, settings).rows
    assert plan_batch(clips, BatchSettings(outdir=out, formats=(".csv",))).tasks


def test_missing_audio_and_missing_model_fail_in_the_report_not_the_run(tmp_path: Path) -> None:
    cut_clips(tmp_path, 1)
    manifest = write_manifest(tmp_path / "m.csv", [
        {"audio": "line000.wav", "model": ""}, {"audio": "gone.wav", "model": ""},
        {"audio": "line000.wav", "model": "nowhere/model.json", "output": "x"},
    ])  # fmt: skip
    plan = plan_batch(read_clips(manifest), BatchSettings(outdir=tmp_path / "out"))
    assert "No such file" in plan.rows["gone"]["error"]
    assert "no model.json" in plan.rows["x"]["error"]
    assert [c["name"] for t in plan.tasks for c in t["clips"]] == ["line000"]


def test_blend_needs_an_object_and_a_rig_needs_a_scene(tmp_path: Path) -> None:
    cut_clips(tmp_path, 1)
    scene = tmp_path / "scene.blend"
    scene.write_bytes(b"BLENDER")
    clips = read_clips(write_manifest(tmp_path / "m.csv", [{"audio": "line000.wav", "rig": ""}]))
    with pytest.raises(ParameterError, match="no object to bake onto"):
        plan_batch(clips, BatchSettings(outdir=tmp_path, blend=scene))
    rigged = read_clips(write_manifest(tmp_path / "r.csv", [{"audio": "line000.wav", "rig": "Face"}]))
    with pytest.raises(ParameterError, match="no scene"):
        plan_batch(rigged, BatchSettings(outdir=tmp_path))
    plan = plan_batch(rigged, BatchSettings(outdir=tmp_path, blend=scene))
    clip = plan.tasks[0]["clips"][0]
    assert clip["blend"]["object"] == "Face" and clip["outputs"][-1].endswith("line000.blend")


def test_without_dask_the_error_names_the_extra(tmp_path: Path) -> None:
    cut_clips(tmp_path, 1)
    code = ("import sys; sys.modules['distributed'] = None; from a2x_core.cli import main; "
            f"sys.exit(main(['batch', {str(tmp_path)!r}, '-o', {str(tmp_path / 'out')!r}]))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "a2x[batch]" in proc.stderr and "Traceback" not in proc.stderr


def test_report_files_are_complete(tmp_path: Path) -> None:
    from a2x_core.batch.report import write_report

    rows = [{"clip": "a", "status": "done", "error": "", "seconds": 0.5, "model": "default",
             "engine": "lipsync", "worker": "w", "audio": "a.wav", "outputs": ["a.json"]},
            {"clip": "b", "status": "failed", "error": "bad, really", "seconds": 0, "model": "m",
             "engine": "", "worker": "", "audio": "b.wav", "outputs": ["b.json", "b.csv"]}]  # fmt: skip
    csv_path, json_path = write_report(tmp_path, rows, {"interrupted": False})
    document = json.loads(json_path.read_text())
    assert document["summary"] == {"done": 1, "skipped": 0, "failed": 1, "cancelled": 0, "clips": 2}
    text = csv_path.read_text()
    assert '"bad, really"' in text and "b.json;b.csv" in text
    assert not list(tmp_path.glob(".*"))
