"""The CLI turns every bad input into one clear line and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import SAMPLE, run_cli


def _assert_clean_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("a2x: error: ")
    for fragment in fragments:
        assert fragment in proc.stderr


def test_missing_audio(tmp_path: Path) -> None:
    _assert_clean_error(run_cli("animate", str(tmp_path / "none.wav"), "-o", str(tmp_path / "o.json")),
                        "none.wav", "no such file")  # fmt: skip


def test_corrupt_audio(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00\x01garbage" * 100)
    proc = run_cli("animate", str(bad), "-o", str(tmp_path / "o.json"))
    _assert_clean_error(proc, "bad.mp3", "not readable audio")
    assert not (tmp_path / "o.json").exists()


def test_nan_audio(tmp_path: Path) -> None:
    data = np.full(8000, 0.2, np.float32)
    data[10] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    _assert_clean_error(run_cli("animate", str(path), "-o", str(tmp_path / "o.json")), "NaN")


def test_too_short_audio(tmp_path: Path) -> None:
    path = tmp_path / "blip.wav"
    sf.write(path, np.full(50, 0.2), 16000)
    _assert_clean_error(run_cli("animate", str(path), "-o", str(tmp_path / "o.csv")), "shorter than one frame")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["--fps", "0"], "--fps"), (["--fps", "abc"], "--fps"), (["--start", "5", "--end", "2"], "end_s"),
     (["-o", "x.fbx"], "unknown output format"), (["--model", "/nowhere/model.json"], "model.json")],
)  # fmt: skip
def test_bad_parameters(tmp_path: Path, args: list[str], fragment: str) -> None:
    full = ["animate", str(SAMPLE), *args]
    if "-o" not in args:
        full += ["-o", str(tmp_path / "o.json")]
    _assert_clean_error(run_cli(*full, cwd=tmp_path), fragment)


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "artist.json"
    out.write_text("the artist's own file")
    _assert_clean_error(run_cli("animate", str(SAMPLE), "-o", str(out)), "--overwrite")
    assert out.read_text() == "the artist's own file"


def test_transcript_with_several_clips_is_refused(tmp_path: Path) -> None:
    _assert_clean_error(
        run_cli("animate", str(SAMPLE), str(SAMPLE), "--transcript", "hi", "-o", str(tmp_path)),
        "one clip",
    )


def test_info_on_missing_model(tmp_path: Path) -> None:
    _assert_clean_error(run_cli("info", str(tmp_path)), "model.json")


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.startswith("a2x ")
    assert "animate" in run_cli("--help").stdout


def test_engines_build_without_tensorrt_names_the_fix(tmp_path: Path) -> None:
    from tests.a2f_folders import make_regression_folder

    make_regression_folder(tmp_path / "m")
    proc = run_cli("engines", "build", str(tmp_path / "m"), "--cache", str(tmp_path / "plans"))
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        _assert_clean_error(proc, "TensorRT is not available", "--backend onnxruntime")
    listing = run_cli("engines", "list", "--cache", str(tmp_path / "plans"))
    assert listing.returncode == 0, listing.stderr


def test_emotions_for_the_default_model_are_refused(tmp_path: Path) -> None:
    proc = run_cli("animate", str(SAMPLE), "-o", str(tmp_path / "e.json"), "--emotion", "joy=0.5")
    _assert_clean_error(proc, "takes no emotion input")
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("command", ["animate", "serve", "batch"])
def test_engine_options_are_the_same_for_every_command(command: str) -> None:
    from a2x_core.cli import _build_parser
    from a2x_core.options import BACKENDS, PRECISIONS

    parser = _build_parser()
    needs = {"animate": ["clip.wav", "-o", "out.json"], "serve": [], "batch": ["clips/", "-o", "out/"]}
    args = parser.parse_args([command, *needs[command], "--backend", "torch", "--device", "cuda:1",
                              "--precision", "bf16", "--threads", "3"])  # fmt: skip
    assert (args.backend, args.device, args.precision, args.threads) == ("torch", "cuda:1", "bf16", 3)
    sub = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(command))
    choices = {a.dest: tuple(a.choices) for a in sub._actions if a.dest in ("backend", "precision")}
    assert choices == {"backend": BACKENDS, "precision": PRECISIONS}


@pytest.mark.parametrize("command", ["live", "serve", "batch"])
def test_streaming_and_batch_commands_take_the_language(command: str) -> None:
    from a2x_core.cli import _build_parser, _options

    needs = {"live": [], "serve": [], "batch": ["clips/", "-o", "out/"]}
    args = _build_parser().parse_args([command, *needs[command], "--language", "de"])
    assert args.language == "de"
    if command != "serve":  # serve builds its options itself (tested with the service)
        assert _options(args).language == "de"


def test_live_engine_options_keep_device_for_the_microphone() -> None:
    from a2x_core.cli import _build_parser

    args = _build_parser().parse_args(["live", "--device", "USB mic", "--engine", "onnxruntime", "--threads", "1"])
    assert (args.input_device, args.backend, args.threads) == ("USB mic", "onnxruntime", 1)
    assert args.device == "auto"  # the engine's device is not the microphone


def test_a_bad_precision_names_the_choices(tmp_path: Path) -> None:
    proc = run_cli("animate", str(SAMPLE), "-o", str(tmp_path / "o.json"), "--precision", "fp8")
    assert proc.returncode == 2
    assert "fp8" in proc.stderr and "bf16" in proc.stderr


def test_serve_advises_mps_only_where_it_can_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``a2x serve --processes N`` on a GPU engine prints the MPS advice only where NVIDIA's
    MPS control tool is on the PATH (and never for one process, the CPU or ONNX Runtime)."""
    from a2x_core.cli import _build_parser, _mps_hint

    tool = tmp_path / "nvidia-cuda-mps-control"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)

    def hint(*argv: str) -> str:
        return _mps_hint(_build_parser().parse_args(["serve", *argv]))

    monkeypatch.setenv("PATH", str(tmp_path))
    assert "nvidia-cuda-mps-control -d" in hint("--processes", "8", "--device", "cuda")
    assert "8 processes" in hint("--processes", "8")  # auto: the children may take the GPU
    assert hint("--processes", "1", "--device", "cuda") == ""
    assert hint("--processes", "8", "--device", "cpu") == ""
    assert hint("--processes", "8", "--engine", "onnxruntime") == ""
    monkeypatch.setenv("PATH", str(tmp_path / "none"))  # no MPS tool here
    assert hint("--processes", "8", "--device", "cuda") == ""
