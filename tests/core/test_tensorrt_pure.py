"""The TensorRT engine's GPU-free parts: trt_info.json -> profiles, plan cache keys and records,
``a2x engines list|clear``, CUDA error checking, the SDK's engine I/O checks, and the
"TensorRT missing" error. None of these tests imports TensorRT or needs a GPU."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path

import pytest

from a2x_core import engines_cli
from a2x_core.backends import create_engine, regression_io
from a2x_core.backends import tensorrt as trt
from a2x_core.backends.base import TensorSpec
from a2x_core.errors import EngineError
from tests.a2f_folders import BUFFER_LEN, make_regression_folder

EMOTION = 26  # 16 implicit + 10 explicit emotions of the generated folders


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated regression folder's model.json (network.onnx + trt_info.json beside it)."""
    return make_regression_folder(tmp_path_factory.mktemp("trt") / "model").model_json


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tensorrt`` fail, whatever is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    trt.tensorrt_available.cache_clear()
    yield
    trt.tensorrt_available.cache_clear()


# ----------------------------------------------------------------------------- profiles


def test_profiles_from_generated_trt_info(model: Path) -> None:
    params = trt.build_params(trt.read_trt_info(model.with_name("network.onnx")))
    assert params.profiles == {
        "emotion": trt.Profile((1, 1, EMOTION), (3, 1, EMOTION), (8, 1, EMOTION)),
        "input": trt.Profile((1, 1, BUFFER_LEN), (3, 1, BUFFER_LEN), (8, 1, BUFFER_LEN)),
    }
    assert params.memory_pools == {"tacticsharedmem": 48 * 1024}  # 0.046875 MiB
    assert params.max_batch == 8 and not params.fp16 and params.ignored == ()


def test_max_batch_is_the_number_of_tracks_and_caps_opt(model: Path) -> None:
    info = trt.read_trt_info(model.with_name("network.onnx"))
    two = trt.build_params(info, max_batch=2)
    assert two.profiles["input"] == trt.Profile((1, 1, BUFFER_LEN), (2, 1, BUFFER_LEN),
                                                (2, 1, BUFFER_LEN))  # fmt: skip
    big = trt.build_params(info, max_batch=64)
    assert big.max_batch == 64 and big.profiles["emotion"].opt == (3, 1, EMOTION)
    with pytest.raises(EngineError, match="at least 1"):
        trt.build_params(info, max_batch=0)


#: A diffusion model's trt_info.json as published (spec §1.2): the GRU state's batch is axis 2.
DIFFUSION_TRT_INFO = {
    "trt_build_param": {
        "batch": [
            "--minShapes=window:1x16000,identity:1x3,emotion:1x30x10,input_latents:2x2x1x256,"
            "noise:1x3x60x88831",
            "--optShapes=window:{OPT_BATCH_SIZE}x16000,identity:{OPT_BATCH_SIZE}x3,"
            "emotion:{OPT_BATCH_SIZE}x30x10,input_latents:2x2x{OPT_BATCH_SIZE}x256,"
            "noise:{OPT_BATCH_SIZE}x3x60x88831",
            "--maxShapes=window:{MAX_BATCH_SIZE}x16000,identity:{MAX_BATCH_SIZE}x3,"
            "emotion:{MAX_BATCH_SIZE}x30x10,input_latents:2x2x{MAX_BATCH_SIZE}x256,"
            "noise:{MAX_BATCH_SIZE}x3x60x88831",
        ]
    },
    "defaults": {"MAX_BATCH_SIZE": 8, "OPT_BATCH_SIZE": 3},
}


def test_diffusion_profile_batch_is_read_on_its_axis() -> None:
    """``input_latents`` [steps, layers, B, latent] has 2 x 2 in front of its batch: the max
    batch is 8 (its axis 2), not 2 (its first extent), and grows with the track count."""
    assert trt.placeholder_axes(trt.trt_args(DIFFUSION_TRT_INFO)) == {
        "window": 0, "identity": 0, "emotion": 0, "input_latents": 2, "noise": 0,
    }  # fmt: skip
    params = trt.build_params(DIFFUSION_TRT_INFO)
    assert params.batch_axes == {"input_latents": 2} and params.max_batch == 8
    assert params.profiles["input_latents"] == trt.Profile((2, 2, 1, 256), (2, 2, 3, 256),
                                                           (2, 2, 8, 256))  # fmt: skip
    two = trt.build_params(DIFFUSION_TRT_INFO, max_batch=2)
    assert two.max_batch == 2 and two.profiles["input_latents"].opt == (2, 2, 2, 256)
    assert trt.build_params(DIFFUSION_TRT_INFO, max_batch=16).max_batch == 16
    # without placeholders the model's tensor specs say where the batch is
    fixed = {"trt_build_param": {"b": ["--minShapes=x:2x1x5", "--optShapes=x:2x3x5",
                                       "--maxShapes=x:2x4x5"]}}  # fmt: skip
    assert trt.build_params(fixed).max_batch == 2
    assert trt.build_params(fixed, batch_axes={"x": 1}).max_batch == 4
    with pytest.raises(EngineError, match="batch axis 3"):
        trt.build_params(fixed, batch_axes={"x": 3})


def test_trtexec_argument_parsing() -> None:
    assert trt.parse_shapes("input:1x1x8320, 'odd:name':2x3") == {
        "input": (1, 1, 8320),
        "odd:name": (2, 3),
    }
    assert trt.parse_pool("workspace:1G,tacticSharedMem:512K,dlaSRAM:3") == {
        "workspace": 2**30,
        "tacticsharedmem": 512 * 1024,
        "dlasram": 3 * 2**20,
    }
    params = trt.parse_build_args(
        ["--minShapes=x:1x4", "--optShapes=x:2x4", "--maxShapes=x:5x4", "--fp16", "--noTF32"]
    )
    assert params.fp16 and params.ignored == ("--noTF32",) and params.max_batch == 5
    for bad in ("x", "x:1xA", ":1x2"):
        with pytest.raises(EngineError, match="NAME:DxDxD"):
            trt.parse_shapes(bad)
    with pytest.raises(EngineError, match="memory pool"):
        trt.parse_pool("shared:1")


def test_profile_errors_name_the_problem() -> None:
    with pytest.raises(EngineError, match="only some of"):
        trt.parse_build_args(["--minShapes=x:1x4", "--maxShapes=x:5x4"])
    with pytest.raises(EngineError, match="min <= opt <= max"):
        trt.parse_build_args(["--minShapes=x:1x4", "--optShapes=x:6x4", "--maxShapes=x:5x4"])
    with pytest.raises(EngineError, match="no --minShapes"):
        trt.parse_build_args(["--memPoolSize=workspace:1"])
    with pytest.raises(EngineError, match=r"\{MAX_BATCH_SIZE\}.*defaults"):
        trt.build_params({"trt_build_param": {"b": ["--maxShapes=x:{MAX_BATCH_SIZE}x4"]}})
    with pytest.raises(EngineError, match="trt_build_param"):
        trt.trt_args({"defaults": {}})
    with pytest.raises(EngineError, match="not a list of strings"):
        trt.trt_args({"trt_build_param": {"batch": "--fp16"}})


def test_missing_trt_info_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="trt_info.json: missing"):
        trt.read_trt_info(tmp_path / "network.onnx")


# ----------------------------------------------------------------------------- cache keys


def _params() -> trt.BuildParams:
    return trt.parse_build_args(
        ["--minShapes=a:1x2,b:1x3", "--optShapes=a:2x2,b:2x3", "--maxShapes=a:4x2,b:4x3",
         "--memPoolSize=tacticSharedMem:0.046875"]
    )  # fmt: skip


def test_plan_key_is_stable_and_order_free() -> None:
    key = trt.plan_key("ab" * 32, "10.13.0.35", "9.0", "fp32", _params())
    assert key == trt.plan_key("ab" * 32, "10.13.0.35", "9.0", "fp32", _params())
    reordered = trt.parse_build_args(
        ["--memPoolSize=tacticSharedMem:0.046875", "--maxShapes=b:4x3,a:4x2",
         "--optShapes=b:2x3,a:2x2", "--minShapes=b:1x3,a:1x2", "--verbose"]
    )  # fmt: skip
    assert trt.plan_key("ab" * 32, "10.13.0.35", "9.0", "fp32", reordered) == key
    assert len(key) == 32 and int(key, 16) >= 0
    # pinned: changing the key material silently orphans every cached plan
    assert key == "aa6e608a422955a5b677076af11964b9"


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"trt_version": "10.13.0.36"},
        {"compute_capability": "8.9"},
        {"precision": "tf32"},
        {"precision": "fp16"},
        {"params": trt.parse_build_args(["--minShapes=a:1x2,b:1x3", "--optShapes=a:2x2,b:2x3",
                                         "--maxShapes=a:5x2,b:5x3",
                                         "--memPoolSize=tacticSharedMem:0.046875"])},
        {"params": trt.parse_build_args(["--minShapes=a:1x2,b:1x3", "--optShapes=a:2x2,b:2x3",
                                         "--maxShapes=a:4x2,b:4x3"])},
    ],
)  # fmt: skip
def test_plan_key_changes_with_everything_that_changes_a_plan(change: dict) -> None:
    base = {"onnx_sha256": "ab" * 32, "trt_version": "10.13.0.35", "compute_capability": "9.0",
            "precision": "fp32", "params": _params()}  # fmt: skip
    assert trt.plan_key(**{**base, **change}) != trt.plan_key(**base)


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(EngineError, match="precision"):
        trt.plan_key("ab", "10", "9.0", "int8", _params())


def test_default_cache_dir_and_env_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(trt.CACHE_ENV, raising=False)
    assert trt.default_cache_dir() == Path.home() / ".cache" / "a2x" / "engines"
    monkeypatch.setenv(trt.CACHE_ENV, str(tmp_path / "plans"))
    assert trt.default_cache_dir() == tmp_path / "plans"


# ----------------------------------------------------------------------------- plan index + CLI


def _fake_plan(cache: Path, onnx: Path, key: str, created: str) -> trt.PlanRecord:
    """A plan and its record as :func:`trt.ensure_plan` writes them (bytes are not a plan)."""
    params = trt.build_params(trt.read_trt_info(onnx))
    record = trt.PlanRecord(
        key=key, onnx=str(onnx.resolve()), onnx_sha256=trt.file_sha256(onnx),
        tensorrt="10.13.0.35", compute_capability="9.0", device="NVIDIA H200", precision="fp32",
        max_batch=params.max_batch,
        profiles={n: p.to_json() for n, p in params.profiles.items()},
        memory_pools=params.memory_pools, created=created, plan_bytes=3 * 2**20,
    )  # fmt: skip
    trt.write_plan(cache, key, b"\0" * 16)
    trt.write_record(cache, record)
    return record


def test_plan_index_round_trip_and_skips_broken_records(model: Path, tmp_path: Path) -> None:
    onnx = model.with_name("network.onnx")
    first = _fake_plan(tmp_path, onnx, "b" * 32, "2026-01-02T00:00:00+00:00")
    second = _fake_plan(tmp_path, onnx, "a" * 32, "2026-01-03T00:00:00+00:00")
    (tmp_path / ("c" * 32 + ".json")).write_text("{not json")  # broken record
    trt.write_record(tmp_path, trt.PlanRecord(**{**first.to_json(), "key": "d" * 32}))  # no plan
    assert trt.plan_index(tmp_path) == [first, second]
    assert trt.plan_index(tmp_path / "absent") == []
    assert json.loads((tmp_path / f"{'a' * 32}.json").read_text())["max_batch"] == 8
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_list_and_clear_model(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    onnx = model.with_name("network.onnx")
    other = make_regression_folder(tmp_path / "other", seed=7).model_json.with_name("network.onnx")
    cache = tmp_path / "cache"
    mine = _fake_plan(cache, onnx, "1" * 32, "2026-01-02T00:00:00+00:00")
    theirs = _fake_plan(cache, other, "2" * 32, "2026-01-03T00:00:00+00:00")

    assert engines_cli.main(["engines", "list", "--cache", str(cache)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("key\tprecision") and len(lines) == 3
    assert lines[1].split("\t")[:5] == ["1" * 12, "fp32", "8", "10.13.0.35", "9.0"]
    assert lines[1].split("\t")[5] == "3.0" and lines[1].endswith(str(onnx.resolve()))

    for spec in (model, model.parent):  # model.json or its folder
        assert engines_cli.main(["engines", "clear", str(spec), "--cache", str(cache)]) == 0
    assert "removed 1 plan(s)" in capsys.readouterr().out
    assert trt.plan_index(cache) == [theirs]
    assert not (cache / f"{mine.key}.plan").exists()

    assert engines_cli.main(["engines", "clear", "--all", "--cache", str(cache)]) == 0
    assert "removed 1 plan(s)" in capsys.readouterr().out
    assert list(cache.iterdir()) == []


def test_cli_list_empty_and_env_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(trt.CACHE_ENV, str(tmp_path / "env-cache"))
    assert engines_cli.main(["engines", "list"]) == 0
    assert f"no cached plans in {tmp_path / 'env-cache'}" in capsys.readouterr().err


def test_cli_clear_unknown_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        engines_cli.main(["engines", "clear", str(tmp_path / "nope"), "--cache", str(tmp_path)])
        == 2
    )
    assert "has no network.onnx" in capsys.readouterr().err


# ----------------------------------------------------------------------------- TensorRT missing


def test_build_without_tensorrt_says_how_to_install(
    no_tensorrt: None, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = engines_cli.main(["engines", "build", str(model), "--cache", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "TensorRT is not available: the tensorrt package is not installed" in err and "pip install tensorrt-cu12" in err
    assert "--backend onnxruntime" in err
    assert list(tmp_path.iterdir()) == []


def test_build_flags_are_checked_first(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["engines", "build", str(model), "--cache", str(tmp_path)]
    assert engines_cli.main([*argv, "--fp16", "--tf32"]) == 2
    assert engines_cli.main([*argv, "--max-batch", "0"]) == 2
    err = capsys.readouterr().err
    assert "--fp16 and --tf32" in err and "--max-batch must be at least 1" in err


def test_backend_tensorrt_without_tensorrt(no_tensorrt: None, model: Path) -> None:
    inputs, outputs = regression_io(BUFFER_LEN, EMOTION, 6 + 4 + 19)
    with pytest.raises(EngineError, match="TensorRT is not available.*pip install"):
        create_engine("tensorrt", model.with_name("network.onnx"), inputs, outputs)
    assert not trt.tensorrt_available()


def test_cuda_python_missing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", type(sys)("tensorrt"))
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(EngineError, match="cuda-python.*a2x\\[gpu\\]"):
        trt.import_tensorrt()


# ----------------------------------------------------------------------------- CUDA + I/O checks


class _CudaError(enum.IntEnum):
    """Stands in for ``cuda.bindings.runtime.cudaError_t``."""

    cudaSuccess = 0
    cudaErrorInvalidValue = 1


def test_check_cuda_tuple_convention() -> None:
    ok = _CudaError.cudaSuccess
    assert trt.check_cuda((ok,), "cudaStreamSynchronize") is None
    assert trt.check_cuda((ok, 1234), "cudaMalloc") == 1234
    assert trt.check_cuda((ok, 1, 2), "cudaX") == (1, 2)
    with pytest.raises(EngineError, match=r"CUDA cudaMalloc failed: cudaErrorInvalidValue \(1\)"):
        trt.check_cuda((_CudaError.cudaErrorInvalidValue, None), "cudaMalloc")
    with pytest.raises(EngineError, match="expected \\(error"):
        trt.check_cuda(None, "cudaMalloc")


def test_trt_dtype_names() -> None:
    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1

    assert trt.trt_dtype_name(DataType.FLOAT) == "float32"
    assert trt.trt_dtype_name(DataType.HALF) == "float16"
    assert trt.trt_dtype_name("DataType.INT32") == "int32"


def test_engine_io_checks_like_the_sdk(tmp_path: Path) -> None:
    inputs, outputs = regression_io(BUFFER_LEN, EMOTION, 29)
    found_in = [
        TensorSpec("input", (None, 1, BUFFER_LEN)),
        TensorSpec("emotion", (None, 1, EMOTION)),
    ]
    found_out = [TensorSpec("result", (None, 1, 29))]
    plan = tmp_path / "x.plan"
    ok = {"num_profiles": 1, "profile_max_batch": 8, "tracks": 8, "path": plan}
    trt.check_engine_io(found_in, found_out, inputs, outputs, **ok)
    with pytest.raises(EngineError, match="2 optimization profiles"):
        trt.check_engine_io(found_in, found_out, inputs, outputs, **{**ok, "num_profiles": 2})
    with pytest.raises(EngineError, match="up to 8, but 9.*--max-batch 9"):
        trt.check_engine_io(found_in, found_out, inputs, outputs, **{**ok, "tracks": 9})
    with pytest.raises(EngineError, match="inputs are"):  # an input that is an output (mode)
        trt.check_engine_io(found_in[:1], [*found_out, found_in[1]], inputs, outputs, **ok)
    with pytest.raises(EngineError, match="does not match"):  # rank
        trt.check_engine_io(found_in, [TensorSpec("result", (None, 29))], inputs, outputs, **ok)
    with pytest.raises(EngineError, match="does not match"):  # dtype
        half = [TensorSpec("result", (None, 1, 29), "float16")]
        trt.check_engine_io(found_in, half, inputs, outputs, **ok)
