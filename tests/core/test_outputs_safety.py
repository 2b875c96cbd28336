"""Outputs are never lost, half-written or silently replaced, and every output-side failure is a
typed error (issue 11, points 3 and 4): real files, real file systems, real ``a2x`` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from a2x_core.errors import ModelError, OutputError
from a2x_core.export.writers import (
    OutputSet,
    check_output_path,
    make_output_folder,
    remove_stale_temps,
    stage_result,
    write_result,
)
from a2x_core.models.registry import list_models
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions
from a2x_core.result import AnimationResult
from tests.a2f_folders import make_regression_folder
from tests.conftest import REPO, run_cli

PRECIOUS = "the artist's own take\n"


def _result(frames: int = 30) -> AnimationResult:
    weights = np.random.default_rng(2).uniform(0, 1, (frames, len(ARKIT_52))).astype(np.float32)
    return AnimationResult(
        weights=weights, fps=Fraction(30), audio_path="line.wav", duration_s=frames / 30,
        model="default", model_version="1", options=InferenceOptions(fps=30),
    )  # fmt: skip


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _assert_typed(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("a2x: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def _popen(*args: str, cwd: Path, **extra: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "a2x_core", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **extra)  # type: ignore[call-overload]  # fmt: skip


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models") / "small"
    make_regression_folder(root, seed=3)
    return root / "model.json"


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3000 skin vertices: ``--geometry`` makes an NPZ of megabytes, slow enough to interrupt."""
    root = tmp_path_factory.mktemp("models") / "dense"
    make_regression_folder(root, seed=4, num_verts_skin=3000)
    return root / "model.json"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "line.wav"
    sf.write(path, 0.3 * np.random.default_rng(5).standard_normal(16000), 16000)
    return path


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted on ``folder`` (needs mount rights: the test skips without them)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def _full_tmpfs(folder: Path, free_kib: int) -> Iterator[Path]:
    """A real tmpfs with about ``free_kib`` KiB free."""
    with _tmpfs(folder, f"size={free_kib + 64}k") as mounted:
        (mounted / "filler").write_bytes(b"\0" * 64 * 1024)
        yield mounted


# --------------------------------------------------------------------------- the output set


def test_a_failed_commit_restores_the_replaced_file(tmp_path: Path) -> None:
    """`--overwrite -o a.json -o b.json`: when b cannot be published, a.json is the artist's again."""
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(PRECIOUS)
    with pytest.raises(OutputError, match="is a folder"), OutputSet(overwrite=True) as outputs:
        stage_result(outputs, _result(), first)
        stage_result(outputs, _result(), second)
        second.mkdir()  # something takes b's name after the checks
        outputs.commit()
    assert first.read_text() == PRECIOUS
    assert _hidden(tmp_path) == []


def test_a_failed_write_leaves_the_replaced_file_untouched(tmp_path: Path) -> None:
    """The second output cannot be written at all (here: /proc takes no new files): the first
    one's new version is dropped and the artist's file never left its place."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    precious = tmp_path / "a.json"
    precious.write_text(PRECIOUS)
    with pytest.raises(OutputError, match="/proc/b.npz: cannot be written"), OutputSet(overwrite=True) as outputs:
        stage_result(outputs, _result(), precious)
        stage_result(outputs, _result(), Path("/proc/b.npz"))
        outputs.commit()
    assert precious.read_text() == PRECIOUS and _hidden(tmp_path) == []


def test_a_file_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    """Two writers of one new file: the one publishing second gets a typed error, not a silent
    replace (and the first run's output of this set is withdrawn: all or nothing)."""
    mine, contested = tmp_path / "mine.csv", tmp_path / "take.json"
    with pytest.raises(OutputError, match="another run"), OutputSet(overwrite=False) as outputs:
        stage_result(outputs, _result(), mine)
        stage_result(outputs, _result(), contested)
        contested.write_text(PRECIOUS)  # the other run publishes first
        outputs.commit()
    assert contested.read_text() == PRECIOUS
    assert not mine.exists() and _hidden(tmp_path) == []


def test_a_dangling_symlink_is_an_existing_output(tmp_path: Path) -> None:
    link = tmp_path / "take.json"
    link.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(OutputError, match="--overwrite"):
        check_output_path(link, overwrite=False)
    with pytest.raises(OutputError, match="another run"):
        write_result(_result(), link, overwrite=False)
    assert link.is_symlink()
    write_result(_result(), link, overwrite=True)
    assert not link.is_symlink() and json.loads(link.read_text())["numFrames"] == 30
    assert not (tmp_path / "nowhere.json").exists()  # the link was replaced, not followed


def test_overwriting_a_symlink_leaves_the_file_it_names_alone(tmp_path: Path) -> None:
    artist = tmp_path / "artist.json"
    artist.write_text(PRECIOUS)
    link = tmp_path / "take.json"
    link.symlink_to(artist)
    write_result(_result(), link, overwrite=True)
    assert artist.read_text() == PRECIOUS and not link.is_symlink()


def test_stale_temps_of_a_killed_run_are_removed_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "take.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    old = time.time() - 3600
    stale = tmp_path / f".take.npz.{dead}-ab3_x9z0.tmp"
    legacy = tmp_path / ".take.npz.f05ijppz.tmp"  # written before temp names carried the PID
    live = tmp_path / f".take.npz.{os.getpid()}-livelive.tmp"
    fresh = tmp_path / f".take.npz.{dead}-fresh000.tmp"  # modified after this process started
    foreign = tmp_path / ".take.npz.notours"
    backup = tmp_path / f".take.npz.{dead}-0badc0de.bak"
    for path in (stale, legacy, live, fresh, foreign, backup):
        path.write_bytes(b"partial")
    for path in (stale, legacy, live, foreign, backup):
        os.utime(path, (old, old))
    assert sorted(remove_stale_temps(target)) == sorted([stale, legacy])
    assert all(p.exists() for p in (live, fresh, foreign, backup))
    write_result(_result(), target)  # every write cleans up before it starts
    assert target.exists() and not stale.exists()


def test_output_path_failures_are_typed(tmp_path: Path) -> None:
    a_file = tmp_path / "clip.wav"
    a_file.write_bytes(b"RIFF")
    too_long = tmp_path / ("y" * 300 + ".json")
    with pytest.raises(OutputError, match="too long"):
        check_output_path(too_long, overwrite=False)
    with pytest.raises(OutputError, match="not a folder"):
        check_output_path(a_file / "take.json", overwrite=False)
    with pytest.raises(OutputError, match="not a folder"):
        make_output_folder(a_file / "sub")
    if Path("/proc/self").is_dir():
        with pytest.raises(OutputError, match="/proc/a2x-out"):
            make_output_folder(Path("/proc/a2x-out/sub"))
        with pytest.raises(OutputError, match="cannot be written"):
            write_result(_result(), Path("/proc/take.json"))
    with pytest.raises(OutputError, match="too long"):
        write_result(_result(), too_long)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav"]


def test_a_name_that_nearly_fills_the_limit_still_gets_a_temp(tmp_path: Path) -> None:
    """The hidden temporary name is longer than the output's: it is shortened to fit."""
    target = tmp_path / ("n" * 250 + ".csv")
    write_result(_result(), target)
    assert target.exists() and _hidden(tmp_path) == []


def test_folder_creation_is_undone_on_failure(tmp_path: Path) -> None:
    from a2x_core.export.writers import remove_empty_folders

    created = make_output_folder(tmp_path / "a" / "b" / "c")
    assert created == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    remove_empty_folders(created)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_disk_full_during_a_write_keeps_the_overwritten_file(tmp_path: Path, dense_model: Path,
                                                            clip: Path) -> None:  # fmt: skip
    """The reproducer of the report: `--overwrite -o a.json -o full/b.npz` lost a.json. A
    per-file size limit (RLIMIT_FSIZE: EFBIG) stands in for a full disk where no tmpfs can be
    mounted; both fail while the NPZ is written, after a.json's new version is complete."""
    resource = pytest.importorskip("resource")
    precious = tmp_path / "a.json"
    precious.write_text(PRECIOUS)
    limit = 512 * 1024

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = _popen("animate", str(clip), "--model", str(dense_model), "--overwrite", "-o", str(precious),
                  "-o", str(tmp_path / "b.npz"), "--geometry", "-q", cwd=tmp_path,
                  preexec_fn=small_files)  # fmt: skip
    _, stderr = proc.communicate(timeout=300)
    _assert_typed(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), "b.npz", "cannot be written")
    assert precious.read_text() == PRECIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.slow
def test_full_disk_keeps_the_overwritten_file(tmp_path: Path, dense_model: Path, clip: Path) -> None:
    precious = tmp_path / "a.json"
    precious.write_text(PRECIOUS)
    with _full_tmpfs(tmp_path / "full", free_kib=256) as full:
        proc = run_cli("animate", str(clip), "--model", str(dense_model), "--overwrite", "-o", str(precious),
                       "-o", str(full / "b.npz"), "--geometry", "-q")  # fmt: skip
        _assert_typed(proc, "b.npz", "No space left")
        assert sorted(p.name for p in full.iterdir()) == ["filler"]
        (full / "filler2").write_bytes(b"\0" * 240 * 1024)  # a PNG no longer fits
        proc = run_cli("animate", str(clip), "--model", str(dense_model), "-o", str(tmp_path / "c.json"),
                       "--plot", str(full / "p.png"), "-q")  # fmt: skip
        _assert_typed(proc, "p.png", "No space left")
        assert sorted(p.name for p in full.iterdir()) == ["filler", "filler2"]
    assert precious.read_text() == PRECIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "full"]


def test_read_only_file_system(tmp_path: Path, small_model: Path, clip: Path) -> None:
    """Single output, folder mode and --plot on a read-only file system: exit 2 before the work."""
    second = tmp_path / "second.wav"
    second.write_bytes(clip.read_bytes())
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as read_only:
        for clips, outputs in (([clip], ["-o", str(read_only / "a.json")]),
                               ([clip, second], ["-o", str(read_only / "new") + "/"]),
                               ([clip], ["-o", str(tmp_path / "a.json"), "--plot", str(read_only / "p.png")])):  # fmt: skip
            proc = run_cli("animate", *map(str, clips), "--model", str(small_model), *outputs)
            _assert_typed(proc, str(read_only), "read-only")
        assert list(read_only.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "second.wav"]


@pytest.mark.parametrize(
    ("outputs", "fragment"),
    [(["-o", "clip.wav/sub/"], "not a folder"),
     (["-o", "/proc/a2x-new-folder/"], "/proc/a2x-new-folder: cannot be created"),
     (["-o", "y" * 300 + "/"], "too long")],
    ids=["under-a-file", "proc", "name-too-long"],
)  # fmt: skip
def test_folder_mode_failures_exit_2(tmp_path: Path, small_model: Path, clip: Path,
                                     outputs: list[str], fragment: str) -> None:  # fmt: skip
    (tmp_path / "clip.wav").write_bytes(clip.read_bytes())
    second = tmp_path / "other.wav"
    second.write_bytes(clip.read_bytes())
    proc = run_cli("animate", "clip.wav", str(second), "--model", str(small_model), *outputs, cwd=tmp_path)
    _assert_typed(proc, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "other.wav"]


@pytest.mark.parametrize(
    ("outputs", "fragment"),
    [(["-o", "y" * 300 + ".json"], "too long"), (["-o", "a.json", "--plot", "/proc/p.png"], "/proc/p.png")],
    ids=["name-too-long", "plot-into-proc"],
)  # fmt: skip
def test_file_mode_failures_exit_2(tmp_path: Path, small_model: Path, clip: Path,
                                   outputs: list[str], fragment: str) -> None:  # fmt: skip
    proc = run_cli("animate", str(clip), "--model", str(small_model), *outputs, cwd=tmp_path)
    _assert_typed(proc, fragment)
    assert list(tmp_path.iterdir()) == []


def test_several_clips_with_a_file_output_are_refused(tmp_path: Path, clip: Path) -> None:
    proc = run_cli("animate", str(clip), str(clip), "-o", "multi.json", cwd=tmp_path)
    _assert_typed(proc, "need an output folder", "-o multi/")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_runs_racing_for_one_new_output(tmp_path: Path, small_model: Path, clip: Path) -> None:
    """Neither run passes --overwrite: exactly one publishes, the other exits 2, nothing is
    silently replaced."""
    out = tmp_path / "take.json"
    runs = {fps: _popen("animate", str(clip), "--model", str(small_model), "-o", str(out), "--fps", fps,
                        "-q", cwd=tmp_path) for fps in ("30", "60")}  # fmt: skip
    finished = {fps: (proc.wait(timeout=300), proc.stderr.read()) for fps, proc in runs.items()}
    for proc in runs.values():
        proc.stdout.close()
        proc.stderr.close()
    codes = sorted(code for code, _ in finished.values())
    assert codes == [0, 2], finished
    winner = next(fps for fps, (code, _) in finished.items() if code == 0)
    loser_stderr = next(err for code, err in finished.values() if code == 2)
    assert "already exists" in loser_stderr and "Traceback" not in loser_stderr
    assert json.loads(out.read_text())["exportFps"] == float(winner)
    assert _hidden(tmp_path) == []


def _wait_for_temp(folder: Path, name: str, proc: subprocess.Popen[str]) -> Path:
    """The output's hidden temporary file once it holds data (the pre-run probe is empty)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        for temp in folder.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                if temp.stat().st_size > 0:
                    return temp
        time.sleep(0.002)
    pytest.fail(f"no temporary file of {name} seen (exit {proc.poll()})")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "long.wav"
    sf.write(path, 0.3 * np.random.default_rng(6).standard_normal(16000 * 8), 16000)
    return path


@pytest.mark.slow
def test_sigterm_while_writing_leaves_no_temp(tmp_path: Path, dense_model: Path, long_clip: Path) -> None:
    proc = _popen("animate", str(long_clip), "--model", str(dense_model), "-o", "first.json",
                  "-o", "take.npz", "--geometry", "-q", cwd=tmp_path)  # fmt: skip
    _wait_for_temp(tmp_path, "take.npz", proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the temps nor the finished first.json


@pytest.mark.slow
def test_sigkill_leftover_is_removed_by_the_next_write(tmp_path: Path, dense_model: Path, small_model: Path,
                                                       long_clip: Path, clip: Path) -> None:  # fmt: skip
    proc = _popen("animate", str(long_clip), "--model", str(dense_model), "-o", "take.npz", "--geometry", "-q",
                  cwd=tmp_path)  # fmt: skip
    leftover = _wait_for_temp(tmp_path, "take.npz", proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert leftover.exists()  # SIGKILL cannot be caught: the partial file stays for now
    proc2 = run_cli("animate", str(clip), "--model", str(small_model), "-o", "take.npz", "-q", cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.npz"]


def _run_with_stdout_closed(*args: str, cwd: Path) -> tuple[int, str]:
    proc = _popen(*args, cwd=cwd)
    proc.stdout.close()  # the reader is gone before a2x prints anything
    stderr = proc.stderr.read()
    proc.stderr.close()
    return proc.wait(timeout=300), stderr


def test_closed_stdout_is_quiet(tmp_path: Path) -> None:
    """`a2x info … | head`: exit 141 (as a process ended by SIGPIPE) without a traceback."""
    code, stderr = _run_with_stdout_closed("info", "default", cwd=tmp_path)
    assert code == 141 and stderr == "", stderr


@pytest.mark.slow
def test_closed_stdout_after_animate_keeps_the_output(tmp_path: Path, small_model: Path, clip: Path) -> None:
    """`a2x animate … | true`: the animation is written all the same, and no traceback."""
    code, stderr = _run_with_stdout_closed("animate", str(clip), "--model", str(small_model), "-o", "t.json",
                                           cwd=tmp_path)  # fmt: skip
    assert code == 141 and "Traceback" not in stderr, stderr
    assert json.loads((tmp_path / "t.json").read_text())["numFrames"] > 0


def test_models_on_a_missing_folder(tmp_path: Path, small_model: Path) -> None:
    _assert_typed(run_cli("models", str(tmp_path / "nowhere")), "nowhere: no such folder")
    with pytest.raises(ModelError, match="no such folder"):
        list_models([tmp_path / "nowhere"], strict=True)
    # a DCC's stale preference or A2X_MODEL_PATH entry is skipped, the others still listed
    found = list_models([tmp_path / "nowhere", small_model.parent.parent])
    assert [e.kind for e in found] == ["default", "regression"]


def test_each_warning_is_printed_once(tmp_path: Path, small_model: Path) -> None:
    for name in ("quiet1.wav", "quiet2.wav"):
        sf.write(tmp_path / name, np.zeros(16000), 16000)
    proc = run_cli("animate", "quiet1.wav", "quiet2.wav", "--model", str(small_model), "-o", "out/", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("quiet1.wav", "quiet2.wav"):
        assert proc.stderr.count(f"{name}: the audio is silent") == 1, proc.stderr
