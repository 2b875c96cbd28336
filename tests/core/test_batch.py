"""``a2x batch`` on real local Dask clusters: outputs equal ``a2x animate``'s, bad clips in
the report, a killed worker's clips redone elsewhere, resume after Ctrl-C, crash accounting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from a2x_core.batch.manifest import read_clips
from a2x_core.batch.runner import BatchSettings, open_client, plan_batch, run_batch
from tests.conftest import REPO, run_cli
from tests.core.batch_clips import (
    CrashOnClip,
    corrupt_clips,
    cut_clips,
    regression_model,
    write_manifest,
)

pytest.importorskip("distributed")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _visible_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file() and ".tmp" in p.name]


def test_cli_small_batch_report_exit_code_and_resume(tmp_path: Path) -> None:
    """One worker, two good clips and a corrupt one: outputs equal ``a2x animate``'s, exit 1
    with the bad clip in the report; the second run starts no cluster and redoes nothing."""
    good = cut_clips(tmp_path / "in", 2, seconds=0.6)
    corrupt_clips(tmp_path / "in")[0].unlink()  # keep one corrupt file: corrupt_empty, _cut
    out = tmp_path / "out"
    proc = run_cli("batch", str(tmp_path / "in"), "-o", str(out), "--workers", "1",
                   "--format", "json", "--format", "csv", timeout=240)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    report = json.loads((out / "report.json").read_text())
    status = {row["clip"]: row["status"] for row in report["clips"]}
    assert status == {"corrupt_cut": "failed", "corrupt_empty": "failed", "line000": "done",
                      "line001": "done"}  # fmt: skip
    assert "corrupt_cut" in proc.stderr and "2 done, 0 skipped, 2 failed" in proc.stderr
    assert "Traceback" not in proc.stderr and "distributed" not in proc.stderr
    ref = run_cli("animate", *map(str, good), "-o", str(tmp_path / "ref") + "/", "-q")
    assert ref.returncode == 0, ref.stderr
    for clip in good:
        assert (out / f"{clip.stem}.json").read_bytes() == (tmp_path / "ref" / f"{clip.stem}.json").read_bytes()
        assert (out / f"{clip.stem}.csv").stat().st_size > 0
    assert _visible_files(out) == {"line000.json", "line000.csv", "line001.json", "line001.csv",
                                   "report.csv", "report.json"}  # fmt: skip
    before = (out / "line000.json").stat().st_mtime_ns
    again = run_cli("batch", str(tmp_path / "in"), "-o", str(out), "--workers", "1",
                    "--format", "json", "--format", "csv", timeout=240)  # fmt: skip
    assert again.returncode == 1  # the corrupt clips still fail; good ones are skipped
    assert "0 done, 2 skipped, 2 failed" in again.stderr
    assert (out / "line000.json").stat().st_mtime_ns == before


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_thirty_clips_two_models_worker_killed_mid_run(tmp_path: Path) -> None:
    """The issue's "done when": ≥ 30 clips (3 corrupt, default + regression model) on a local
    2-worker cluster, one worker process SIGKILLed mid-run; every good output equals
    ``a2x animate``'s, the corrupt ones are in the report, a second run redoes nothing and a
    changed row is redone."""
    audio = cut_clips(tmp_path / "in", 30, seconds=0.6)
    bad = corrupt_clips(tmp_path / "in")
    model = regression_model(tmp_path / "reg")
    rows = [{"audio": p.name, "model": str(model) if i % 3 == 0 else ""} for i, p in enumerate(audio)]
    rows += [{"audio": p.name, "model": str(model) if i == 1 else ""} for i, p in enumerate(bad)]
    manifest = write_manifest(tmp_path / "in" / "takes.csv", rows)
    out = tmp_path / "out"
    out.mkdir()
    settings = BatchSettings(outdir=out)
    plan = plan_batch(read_clips(manifest), settings)
    killed: list[int] = []

    with open_client(workers=2) as client:
        pids = client.run(os.getpid)
        assert len(pids) == 2

        def kill_one(rows: dict) -> None:
            if not killed and sum(r["status"] == "done" for r in rows.values()) >= 6:
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        results = run_batch(plan, client, settings, kill_one)
        assert killed, "the batch ended before a worker could be killed"
        assert killed[0] not in client.run(os.getpid).values()  # it did die (and was replaced)

    status = {row["clip"]: row for row in results}
    assert {name for name, row in status.items() if row["status"] != "done"} == {p.stem for p in bad}
    for clip in bad:
        assert status[clip.stem]["status"] == "failed" and status[clip.stem]["error"]
    assert len({row["worker"] for row in results if row["status"] == "done"}) >= 2
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["done"] == 30 and report["summary"]["failed"] == 3
    assert _visible_files(out) == {f"{p.stem}.json" for p in audio} | {"report.csv", "report.json"}
    assert not _temporaries(out), _temporaries(out)

    for spec, group in (("default", audio[1::3] + audio[2::3]), (str(model), audio[0::3])):
        ref = tmp_path / f"ref-{len(group)}-{spec == 'default'}"
        proc = run_cli("animate", *map(str, group), "--model", spec, "-o", f"{ref}/", "-q")
        assert proc.returncode == 0, proc.stderr
        for clip in group:
            assert (out / f"{clip.stem}.json").read_bytes() == (ref / f"{clip.stem}.json").read_bytes(), clip

    again = plan_batch(read_clips(manifest), settings)  # only the corrupt clips are tried again
    assert sorted(c["name"] for t in again.tasks for c in t["clips"]) == sorted(p.stem for p in bad)
    assert {r["status"] for r in again.rows.values()} == {"skipped"} and len(again.rows) == 30
    rows[4]["fps"] = "30"
    changed = plan_batch(read_clips(write_manifest(manifest, rows)), settings)
    redo = sorted(c["name"] for t in changed.tasks for c in t["clips"])
    assert redo == sorted(["line004"] + [p.stem for p in bad])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_clip_that_kills_its_worker_twice_fails_alone(tmp_path: Path) -> None:
    """A clip whose task kills the worker process each time (a crash inside native code, here
    a Dask worker plugin that SIGKILLs the process when that task starts) is given up after
    the second crash and reported; the other clips finish."""
    from distributed import WorkerPlugin

    cut_clips(tmp_path / "in", 3, seconds=0.5)
    out = tmp_path / "out"
    out.mkdir()
    settings = BatchSettings(outdir=out)
    plan = plan_batch(read_clips(tmp_path / "in"), settings)
    with open_client(workers=1) as client:
        client.register_plugin(CrashOnClip("line001"), name="crash-line001")
        results = run_batch(plan, client, settings)
    status = {row["clip"]: row for row in results}
    assert status["line001"]["status"] == "failed"
    assert "crashed its Dask worker twice" in status["line001"]["error"]
    assert status["line000"]["status"] == status["line002"]["status"] == "done"
    assert not (out / "line001.json").exists()
    assert isinstance(CrashOnClip("x"), WorkerPlugin)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(tmp_path: Path) -> None:
    """SIGINT to a running ``a2x batch``: exit 130, report with cancelled clips, no partial
    file, no worker left; the next run skips the finished clips and does the rest."""
    cut_clips(tmp_path / "in", 14, seconds=0.8)
    out = tmp_path / "out"
    # one clip per task: each clip's row comes back on its own ("finished" below)
    argv = [sys.executable, "-m", "a2x_core", "batch", str(tmp_path / "in"), "-o", str(out),
            "--workers", "1", "--chunk", "1"]  # fmt: skip
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(list(out.glob("line*.json"))) < 3:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "cancelled" in stderr and "Traceback" not in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is True
    finished = {r["clip"] for r in report["clips"] if r["status"] == "done"}
    # a clip whose files were published while its row was on the way counts as cancelled
    # here (its record decides the next run); at least the first ones came back
    assert 1 <= len(finished) < 14 and report["summary"]["cancelled"] == 14 - len(finished)
    assert {f"{name}.json" for name in finished} <= _visible_files(out)
    for name in _visible_files(out) - {"report.csv", "report.json"}:
        json.loads((out / name).read_text())  # every output present is complete
    again = run_cli("batch", str(tmp_path / "in"), "-o", str(out), "--workers", "1", timeout=240)
    assert again.returncode == 0, again.stderr
    report = json.loads((out / "report.json").read_text())
    skipped = {r["clip"] for r in report["clips"] if r["status"] == "skipped"}
    assert finished <= skipped and report["summary"]["done"] == 14 - len(skipped)
    assert len(_visible_files(out)) == 14 + 2 and not _temporaries(out)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_existing_cluster_through_scheduler_address(tmp_path: Path) -> None:
    """``--scheduler tcp://…``: a cluster started the documented way (``dask scheduler``,
    ``dask worker``, each its own process) runs the batch; the cluster outlives the client."""
    cut_clips(tmp_path / "in", 3, seconds=0.5)
    address = f"tcp://127.0.0.1:{_free_port()}"
    dask_cli = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    logs = open(tmp_path / "cluster.log", "w")  # noqa: SIM115 - closed below
    processes = [subprocess.Popen([*dask_cli, "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                   "--no-dashboard"], env=_env(), stdout=logs, stderr=logs,
                                  start_new_session=True)]  # fmt: skip
    try:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--no-dashboard"], env=_env(), stdout=logs, stderr=logs, start_new_session=True,
        ))  # fmt: skip
        out = tmp_path / "out"
        proc = run_cli("batch", str(tmp_path / "in"), "-o", str(out), "--scheduler", address,
                       timeout=200)  # fmt: skip
        assert proc.returncode == 0, proc.stderr + (tmp_path / "cluster.log").read_text()[-2000:]
        report = json.loads((out / "report.json").read_text())
        assert report["summary"]["done"] == 3
        assert all(p.poll() is None for p in processes)  # the user's cluster keeps running
        workers = {row["worker"] for row in report["clips"]}
        assert len(workers) == 1  # the one `dask worker` (a process of its nanny)
    finally:
        for process in reversed(processes):
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        logs.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path) -> None:
    cut_clips(tmp_path, 1)
    proc = run_cli("batch", str(tmp_path), "-o", str(tmp_path / "out"), "--scheduler",
                   f"tcp://127.0.0.1:{_free_port()}", timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach the Dask scheduler" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written, no folder left behind
