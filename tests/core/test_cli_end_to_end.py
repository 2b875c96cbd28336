"""The CLI on real speech with the embedded default model, in a subprocess, as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core.names import ARKIT_52
from a2x_core.timing import num_frames_for
from tests.conftest import REPO, SAMPLE, SAMPLE_TRANSCRIPT, run_cli

SAMPLE_SAMPLES = 176_000  # 11.0 s at 16 kHz


def test_one_run_writes_json_csv_npz_and_plot(tmp_path: Path) -> None:
    outs = [tmp_path / f"jfk.{ext}" for ext in ("json", "csv", "npz")]
    args = ["animate", str(SAMPLE), "--fps", "30", "--plot", str(tmp_path / "jfk.png")]
    for out in outs:
        args += ["-o", str(out)]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(p) for p in [*outs, tmp_path / "jfk.png"]]
    frames = num_frames_for(SAMPLE_SAMPLES, Fraction(30))
    data = json.loads(outs[0].read_text())
    weights = np.array(data["weightMat"])
    assert data["numFrames"] == frames == weights.shape[0] and data["facsNames"] == list(ARKIT_52)
    assert data["exportFps"] == 30.0 and data["a2x"]["model"] == "default"
    assert weights.min() >= 0 and weights.max() <= 1
    jaw = weights[:, ARKIT_52.index("jawOpen")]
    assert jaw.max() > 0.3 and jaw[:5].max() < 0.05  # speaks, and starts at rest
    with open(outs[1]) as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == frames + 1 and rows[0][0] == "Timecode"
    with np.load(outs[2]) as npz:
        assert np.allclose(npz["weights"], weights, atol=1e-6)
    assert (tmp_path / "jfk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_time_range_and_fractional_fps(tmp_path: Path) -> None:
    out = tmp_path / "part.json"
    proc = run_cli("animate", str(SAMPLE), "--start", "2", "--end", "5", "--fps", "30000/1001", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["numFrames"] == num_frames_for(48_000, Fraction(30000, 1001))
    assert data["a2x"]["startSeconds"] == pytest.approx(2.0)


def test_transcript_file(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text(SAMPLE_TRANSCRIPT)
    out = tmp_path / "t.json"
    proc = run_cli("animate", str(SAMPLE), "--transcript-file", str(words), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["a2x"]["options"]["transcript"] == SAMPLE_TRANSCRIPT


@pytest.mark.slow
def test_several_clips_into_a_folder_equal_single_runs(tmp_path: Path, shared_data: Path) -> None:
    clips = [SAMPLE, shared_data / "speech_en" / "librispeech_61-70968-0002.wav"]
    proc = run_cli("animate", *map(str, clips), "-o", str(tmp_path / "batch") + "/", "-q")
    assert proc.returncode == 0, proc.stderr
    for clip in clips:
        single = tmp_path / f"single_{clip.stem}.json"
        assert run_cli("animate", str(clip), "-o", str(single), "-q").returncode == 0
        batch = json.loads((tmp_path / "batch" / f"{clip.stem}.json").read_text())["weightMat"]
        assert np.allclose(batch, json.loads(single.read_text())["weightMat"], atol=1e-6)


@pytest.mark.slow
def test_progress_bar_on_stderr(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), A2X_PROGRESS_DELAY="0")
    proc = subprocess.run(
        [sys.executable, "-m", "a2x_core", "animate", str(SAMPLE), "-o", str(tmp_path / "p.json")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "%|" in proc.stderr and "Traceback" not in proc.stderr


def test_info_and_models() -> None:
    info = run_cli("info", "default", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)
    models = run_cli("models")
    assert models.returncode == 0 and models.stdout.startswith("default\t")


def test_silent_clip_warns_and_rests(tmp_path: Path) -> None:
    import soundfile as sf

    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(32000), 16000)
    out = tmp_path / "s.json"
    proc = run_cli("animate", str(silent), "-o", str(out), "--no-blinks")
    assert proc.returncode == 0, proc.stderr
    assert "silent" in proc.stderr
    weights = np.array(json.loads(out.read_text())["weightMat"])
    assert weights[:, ARKIT_52.index("jawOpen")].max() < 0.05


def _processes_in_group(pgid: int) -> dict[str, tuple[str, bytes]]:
    """Processes (zombies too) of process group ``pgid`` from /proc: pid -> (state, cmdline)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        fields = text.rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid:
            found[stat.parent.name] = (fields[0], cmdline)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_the_command_leaves_no_worker_behind(tmp_path: Path) -> None:
    """An 11 s clip is decoded by worker processes; when ``a2x`` returns, none of them is left
    in its process group, running or zombie. The command forks its workers (they carry its
    command line), so every other process seen in the group counts, except multiprocessing's
    resource tracker of spawned workers (it exits just after its parent by design; a container
    whose init does not reap may show it as a zombie)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "a2x_core", "animate", str(SAMPLE), "--model", "default", "-q",
         "-o", str(tmp_path / "out.json")],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True,
    )  # fmt: skip
    seen: dict[str, bytes] = {}
    while process.poll() is None:
        for pid, (_, cmdline) in _processes_in_group(process.pid).items():
            seen.setdefault(pid, cmdline)
        time.sleep(0.02)
    assert process.returncode == 0
    workers = {pid for pid, cmdline in seen.items()
               if int(pid) != process.pid and b"resource_tracker" not in cmdline}  # fmt: skip
    assert workers, "the clip was decoded without worker processes: nothing was tested"
    assert workers.isdisjoint(_processes_in_group(process.pid))
