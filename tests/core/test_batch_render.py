"""``a2x batch --render --export-fbx``: every clip of a batch through ``a2x render``'s path —
baked onto a real Rocketbox head in headless Blender (``bpy``), rendered with the scene's camera
to an MP4 with sound, exported to FBX. The head is imported from ../shared into a scene made
here (never committed: its licence does not allow redistribution)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from a2x_core.batch.manifest import read_clips
from a2x_core.batch.render_step import render_settings
from a2x_core.batch.runner import BatchSettings, plan_batch
from a2x_core.errors import ParameterError
from tests.conftest import run_cli
from tests.core.batch_clips import cut_clips
from tests.core.test_render import READ_FBX, _run_bpy, head_scene

pytest.importorskip("distributed")
av = pytest.importorskip("av")


def test_render_settings_need_a_scene_and_replace_the_scene_copy(tmp_path: Path) -> None:
    """--render/--export-fbx plan a video and an FBX per clip instead of the .blend copy, and
    enter each clip's fingerprint (a clip rendered before is redone when they change)."""
    cut_clips(tmp_path / "in", 2, seconds=0.5)
    scene = tmp_path / "scene.blend"
    scene.write_bytes(b"BLENDER-v400 not opened by the planner")
    clips = read_clips(tmp_path / "in")
    with pytest.raises(ParameterError, match="--blend"):
        render_settings(video=True, fbx=False, blend=None)
    assert render_settings(video=False, fbx=False, blend=scene) is None
    copy = plan_batch(clips, BatchSettings(outdir=tmp_path / "out", blend=scene, object_name="F"))
    rendered = plan_batch(clips, BatchSettings(
        outdir=tmp_path / "out", blend=scene, object_name="F",
        render=render_settings(video=True, fbx=True, blend=scene, engine="eevee"),
    ))  # fmt: skip
    (clip, *_), (plain, *_) = rendered.tasks[0]["clips"], copy.tasks[0]["clips"]
    assert [Path(p).suffix for p in plain["outputs"]] == [".json", ".blend"]
    assert [Path(p).suffix for p in clip["outputs"]] == [".json", ".mp4", ".fbx"]
    assert clip["blend"]["render"]["engine"] == "eevee"
    assert clip["fingerprint"] != plain["fingerprint"]


def test_batch_render_without_a_scene_is_refused(tmp_path: Path) -> None:
    cut_clips(tmp_path / "in", 1, seconds=0.5)
    proc = run_cli("batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--render")
    assert proc.returncode == 2
    assert "--render" in proc.stderr and "--blend" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.blender
@pytest.mark.shared
@pytest.mark.timeout(900)
def test_batch_renders_and_exports_each_clip_on_a_real_head(shared_data, tmp_path: Path) -> None:
    python, blend, scene = head_scene(shared_data, tmp_path, "rocketbox")
    before = blend.read_bytes()
    clips = cut_clips(tmp_path / "in", 2, seconds=1.0)
    out = tmp_path / "out"
    command = ["batch", str(tmp_path / "in"), "-o", str(out), "--workers", "1", "--blend",
               str(blend), "--object", scene["face"], "--render", "--export-fbx",
               "--blender-python", python, "--resolution-percentage", "50", "-q"]  # fmt: skip
    proc = run_cli(*command, timeout=800)
    assert proc.returncode == 0, proc.stderr
    assert blend.read_bytes() == before  # the artist's scene is opened, never saved
    report = {r["clip"]: r for r in json.loads((out / "report.json").read_text())["clips"]}
    reader = tmp_path / "read_fbx.py"
    reader.write_text(READ_FBX)
    for clip in clips:
        assert report[clip.stem]["status"] == "done", report
        assert not (out / f"{clip.stem}.blend").exists()
        seconds = sf.info(str(clip)).duration
        with av.open(str(out / f"{clip.stem}.mp4")) as container:
            streams = {s.type: s for s in container.streams}
            assert streams["audio"].codec_context.name == "aac"
            rate = float(streams["video"].average_rate)
            lumas = [f.to_ndarray(format="gray").astype(np.int16) for f in container.decode(video=0)]
        assert rate == scene["fps"]
        assert abs(len(lumas) / rate - seconds) <= 1 / rate  # the frame range is the audio's
        assert max(float(np.mean(np.abs(f - lumas[0]))) for f in lumas) > 0.5  # the face moves
        animated = _run_bpy(python, reader, str(out / f"{clip.stem}.fbx"), scene["jaw"],
                            mark="A2X_FBX ")  # fmt: skip
        assert animated["curves"] >= 10 and animated["jaw_max"] > 0.1, animated
    # resumable: a second run finds every clip done and renders nothing again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_cli(*command, timeout=300)
    assert again.returncode == 0, again.stderr
    rows = json.loads((out / "report.json").read_text())["clips"]
    assert {r["status"] for r in rows} == {"skipped"}
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.glob("*.mp4"))
