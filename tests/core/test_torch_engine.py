"""The torch engine (ONNX graph on torch ops) against ONNX Runtime, and the GPU ADMM solve
against the CPU BVLS, all on the CPU (issue 6)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from a2x_core.backends import EngineSettings, create_engine, regression_io  # noqa: E402
from a2x_core.backends.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from a2x_core.backends.torch_engine import TorchEngine  # noqa: E402
from a2x_core.errors import EngineError  # noqa: E402
from tests.a2f_folders import make_regression_folder  # noqa: E402
from tests.torch_networks import SMALL_RESULT, export_small_benchmark_network  # noqa: E402
from tests.torch_networks import random_feeds as _feeds  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: fp32 agreement with ONNX Runtime required by the issue
FP32_TOL = 1e-4


@pytest.fixture(scope="module")
def folder_network(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    model = make_regression_folder(tmp_path_factory.mktemp("torch") / "model")
    return model.folder / "network.onnx", model.emotion_weights.shape[0], model.bias.shape[0]


@pytest.fixture(scope="module")
def bench_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_small_benchmark_network(tmp_path_factory.mktemp("bench") / "network.onnx")


def test_generated_network_matches_onnxruntime(folder_network: tuple[Path, int, int]) -> None:
    path, emotion_size, result_size = folder_network
    inputs, outputs = regression_io(8320, emotion_size, result_size)
    feeds = _feeds(5, emotion_size)
    ref = OnnxRuntimeEngine(path, inputs, outputs).run(feeds)["result"]
    engine = create_engine("torch", path, inputs, outputs, device="cpu")
    got = engine.run(feeds)["result"]
    assert engine.name == "torch" and got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=FP32_TOL, rtol=0)


@pytest.mark.slow
def test_benchmark_architecture_matches_onnxruntime(bench_network: Path) -> None:
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = _feeds(3, 26, seed=1)
    ref = OnnxRuntimeEngine(bench_network, inputs, outputs).run(feeds)["result"]
    got = TorchEngine(bench_network, inputs, outputs, device="cpu").run(feeds)["result"]
    np.testing.assert_allclose(got, ref, atol=FP32_TOL, rtol=0)
    # batching over tracks: one row at a time gives the same rows
    one = TorchEngine(bench_network, inputs, outputs, device="cpu")
    row = one.run({k: v[1:2] for k, v in feeds.items()})["result"]
    np.testing.assert_allclose(row, got[1:2], atol=FP32_TOL, rtol=0)


@pytest.mark.slow
def test_bf16_is_an_explicit_option_with_bounded_error(bench_network: Path) -> None:
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = _feeds(2, 26)
    ref = TorchEngine(bench_network, inputs, outputs, device="cpu").run(feeds)["result"]
    low = TorchEngine(bench_network, inputs, outputs, device="cpu", precision="bf16")
    got = low.run(feeds)["result"]
    assert low.describe()["precision"] == "bf16"
    assert 0 < np.abs(got - ref).max() < 2e-2  # measured 2.5e-3 here (outputs up to 0.57)


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "bound"), [("bf16", 2e-2), ("fp16", 4e-3)])
def test_half_precision_keeps_activations_half(
    bench_network: Path, precision: str, bound: float
) -> None:
    """bf16 / fp16 end to end: weights cast once, Conv/GEMM outputs stay half, FP32 out."""
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = _feeds(2, 26, seed=2)
    ref = TorchEngine(bench_network, inputs, outputs, device="cpu").run(feeds)["result"]
    low = TorchEngine(bench_network, inputs, outputs, device="cpu", precision=precision)
    half = getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[precision])
    graph = low.graph
    weights = [t for t in graph.consts.values() if t.is_floating_point() and t.dim() > 1]
    assert weights and all(t.dtype == half for t in weights)
    # a Conv's output is half (no cast back to FP32 after every weighted op)
    audio = torch.from_numpy(feeds["input"])
    conv = next(k for k, node in enumerate(graph.nodes) if node[0].__name__ == "_op_Conv")
    fn, ins, _outs, attrs = graph.nodes[conv]
    assert fn([audio, graph.consts[ins[1]], None], attrs, ins).dtype == half
    got = low.forward(audio, torch.from_numpy(feeds["emotion"]))[0]
    assert got.dtype == torch.float32  # outputs come back as FP32
    err = np.abs(got.numpy() - ref).max()
    assert 0 < err < bound  # measured on the CPU: bf16 2.5e-3, fp16 2.5e-4 (outputs up to 0.57)


def test_bad_inputs_and_options_are_engine_errors(folder_network: tuple[Path, int, int]) -> None:
    path, emotion_size, result_size = folder_network
    inputs, outputs = regression_io(8320, emotion_size, result_size)
    with pytest.raises(EngineError, match="precision"):
        TorchEngine(path, inputs, outputs, device="cpu", precision="fp8")
    wrong_in, _ = regression_io(8000, emotion_size, result_size)
    with pytest.raises(EngineError, match="does not match"):
        TorchEngine(path, wrong_in, outputs, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="CUDA"):
            TorchEngine(path, inputs, outputs, device="cuda")


def test_auto_without_a_gpu_is_onnxruntime(folder_network: tuple[Path, int, int]) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: auto picks torch")
    path, emotion_size, result_size = folder_network
    inputs, outputs = regression_io(8320, emotion_size, result_size)
    assert create_engine("auto", path, inputs, outputs).name == "onnxruntime"


def test_result_records_the_engine(tmp_path: Path) -> None:
    from a2x_core.audio.decode import Audio
    from a2x_core.models.regression import RegressionModel
    from a2x_core.options import InferenceOptions

    model = make_regression_folder(tmp_path / "model")
    regression = RegressionModel.load(model.model_json, EngineSettings("torch"))
    audio = Audio((0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32))
    result = regression.animate([audio], InferenceOptions(fps=30.0))[0]
    assert result.parameters["engine"] == "torch"


# ---------------------------------------------------------------- fusion of exported patterns

#: fused vs node-by-node output on the CPU (fp32)
FUSE_TOL = 1e-6


def _export(module: object, example: object, path: Path) -> Path:
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=14,
                          dynamo=False)  # fmt: skip
    return path


def _fusion_case(kind: str) -> tuple[object, object]:
    from torch import nn

    torch.manual_seed(0)
    if kind == "gelu":
        return nn.GELU(), 3 * torch.randn(2, 7, 33)
    if kind == "layer_norm":
        norm = nn.LayerNorm(48)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-1, 1)
        return nn.Sequential(nn.Linear(48, 48), norm), torch.randn(3, 5, 48)
    if kind == "linear":
        return nn.Linear(40, 24), torch.randn(3, 6, 40)

    class Lags(nn.Module):
        def __init__(self, lags: list[int]) -> None:
            super().__init__()
            self.lags = lags

        def forward(self, x):  # noqa: ANN001, ANN202
            n = 640  # a constant, as in the network (a traced x.shape would be dynamic)
            parts = [(x[:, :, : n - k] * x[:, :, k:]).sum(dim=2) for k in self.lags]
            return torch.stack(parts, dim=2) / n

    lags = list(range(32)) if kind == "autocorr" else [1, 3, 4]
    return Lags(lags), torch.randn(2, 25, 640)


@pytest.mark.parametrize(
    ("kind", "op"),
    [("gelu", "_Gelu"), ("layer_norm", "_LayerNorm"), ("linear", "_Linear"),
     ("autocorr", "_AutoCorr"), ("autocorr_sparse_lags", "_AutoCorr")],
)  # fmt: skip
def test_each_fusion_matches_the_unfused_graph(kind: str, op: str, tmp_path: Path) -> None:
    from a2x_core.backends.torch_engine import OnnxGraph

    module, x = _fusion_case(kind)
    path = _export(module.eval(), x, tmp_path / f"{kind}.onnx")
    fused, plain = OnnxGraph(path, "cpu"), OnnxGraph(path, "cpu", fuse=False)
    assert op in fused.fused and not plain.fused
    assert len(fused.nodes) < len(plain.nodes)
    with torch.inference_mode():
        got, ref = fused(x)[0], plain(x)[0]
        expected = module(x)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=FUSE_TOL, rtol=0)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_fused_benchmark_network_matches_unfused(bench_network: Path) -> None:
    from a2x_core.backends.torch_engine import OnnxGraph

    fused, plain = OnnxGraph(bench_network, "cpu"), OnnxGraph(bench_network, "cpu", fuse=False)
    assert fused.fused == {"_Gelu", "_LayerNorm", "_Linear", "_AutoCorr"}
    assert len(fused.nodes) < len(plain.nodes) // 2
    feeds = _feeds(3, 26, seed=2)
    x = [torch.from_numpy(feeds[n]) for n in fused.input_names]
    with torch.inference_mode():
        got, ref = fused(*x)[0], plain(*x)[0]
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=FUSE_TOL, rtol=0)


def test_shared_intermediates_are_not_fused(tmp_path: Path) -> None:
    """A pattern whose intermediate also feeds another node stays node by node."""
    from a2x_core.backends.torch_engine import OnnxGraph

    class Leaky(torch.nn.Module):
        def forward(self, x):  # noqa: ANN001, ANN202
            e = torch.erf(x / 2**0.5)
            return x * (e + 1) * 0.5 + e

    x = torch.randn(4, 9)
    graph = OnnxGraph(_export(Leaky(), x, tmp_path / "shared.onnx"), "cpu")
    assert "_Gelu" not in graph.fused
    with torch.inference_mode():
        np.testing.assert_allclose(graph(x)[0].numpy(), Leaky()(x).numpy(), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- GPU ADMM solve (on the CPU)

#: GPU ADMM vs CPU BVLS: the SDK's 4 ADMM updates stop short of the optimum ("GPU ~ CPU but
#: not identical"); measured max 6.1e-3, mean 5.5e-4 on 3 x 200 Mark-like frames (temporal 0.3),
#: 2.2e-3 on 64 frames on the H200, and max 3.0e-2 with temporal 0 and a cancel pair here.
ADMM_MAX_TOL = {0.0: 5e-2, 0.3: 2e-2}
ADMM_MEAN_TOL = 2e-3


@pytest.mark.parametrize("temporal", [0.0, 0.3])
def test_admm_agrees_with_cpu_bvls(temporal: float) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_solver import build

    from a2x_core.blendshapes.cpu import BlendshapeSolver
    from a2x_core.blendshapes.gpu import AdmmSolver
    from a2x_core.models.regression_folder import BlendshapeData

    solver, (neutral, deltas, rng) = build(1500, 700)
    if temporal == 0.0:  # same data, temporal term off (frames independent: one batch)
        cancel = np.full(52, -1, np.int32)
        cancel[[10, 11]] = 0
        config = solver_config(solver, temporal=0.0, cancel=cancel)
        data = BlendshapeData(solver.pose_names, neutral, deltas, np.sort(
            rng.choice(1500, 700, replace=False)).astype(np.int32))  # fmt: skip
        solver = BlendshapeSolver(data, config)
    weights = np.clip(np.cumsum(rng.normal(0, 0.05, (2, 60, 52)), axis=1), 0, 1)
    targets = (neutral + weights.astype(np.float32) @ deltas).astype(np.float32)
    cpu = []
    for track in targets:
        solver.reset()
        cpu.append(solver.solve(track))
    gpu = AdmmSolver(solver, "cpu").solve(torch.from_numpy(targets)).numpy()
    diff = np.abs(gpu - np.stack(cpu))
    assert diff.max() < ADMM_MAX_TOL[temporal] and diff.mean() < ADMM_MEAN_TOL
    # tracks are independent: one track alone gives the same rows
    alone = AdmmSolver(solver, "cpu").solve(torch.from_numpy(targets[1:])).numpy()
    np.testing.assert_allclose(alone[0], gpu[1], atol=1e-5)


def solver_config(solver: object, **changes: object) -> object:
    """Mark-like config of ``bench_solver.build`` with ``changes``."""
    from dataclasses import replace

    from a2x_core.models.regression_folder import BlendshapeConfig

    base = BlendshapeConfig(
        l1=0.5, l2=0.5, temporal=0.3, symmetry=100.0, template_bb_size=30.0,
        active=np.ones(52, np.int32), cancel=np.full(52, -1, np.int32),
        symmetry_ids=np.full(52, -1, np.int32), multipliers=np.ones(52, np.float32),
        offsets=np.zeros(52, np.float32),
    )  # fmt: skip
    return replace(base, **changes)


# ---------------------------------------------------------------- grouped conv as a GEMM


@pytest.mark.parametrize(("size", "kernel", "pad"), [(26, 128, 64), (26, 17, 8), (40, 16, 3)])
def test_grouped_conv_as_gemm_matches_the_plain_conv(
    size: int, kernel: int, pad: int, tmp_path: Path
) -> None:
    """A grouped 1-D conv shaped like the positional conv (large kernel, groups, padding):
    the GEMM formulations (expanded weight for a constant weight, im2col otherwise) against
    torch's conv and against the engine with ``grouped_gemm=False``."""
    from torch import nn

    from a2x_core.backends.torch_engine import OnnxGraph

    torch.manual_seed(3)
    conv = nn.Conv1d(64, 64, kernel, padding=pad, groups=8).eval()
    x = torch.randn(3, 64, size)
    path = _export(conv, x, tmp_path / "grouped.onnx")
    gemm, plain = OnnxGraph(path, "cpu"), OnnxGraph(path, "cpu", grouped_gemm=False)
    assert gemm.grouped_gemm and not plain.grouped_gemm
    with torch.inference_mode():
        got, ref, expected = gemm(x)[0], plain(x)[0], conv(x)
        assert gemm._gemm_weights  # the GEMM path ran (its weight is cached)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5, rtol=0)
        # the im2col form (used when the weight is not a constant, or too large to expand)
        w, b = conv.weight.detach(), conv.bias.detach()
        cols = gemm._grouped_gemm_conv1d(x, w, b, [pad, pad], 8, "not a constant")
        np.testing.assert_allclose(cols.numpy(), expected.numpy(), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_benchmark_network_with_and_without_grouped_gemm(bench_network: Path) -> None:
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = _feeds(2, 26, seed=4)
    ref = OnnxRuntimeEngine(bench_network, inputs, outputs).run(feeds)["result"]
    for flag in (True, False):
        engine = TorchEngine(bench_network, inputs, outputs, device="cpu", grouped_gemm=flag)
        assert engine.describe()["grouped_gemm"] is flag
        np.testing.assert_allclose(engine.run(feeds)["result"], ref, atol=FP32_TOL, rtol=0)
        assert bool(engine.graph._gemm_weights) is flag


# ---------------------------------------------------------------- channels-last convs


@pytest.mark.slow
def test_channels_last_convs_match_the_current_path(bench_network: Path) -> None:
    """The convs on channels-last activations (the default on CUDA: a 1-D conv as a 2-D conv
    with a unit height, layout-keeping instance norm) against the NCHW path, forced on the CPU:
    the same within 1e-6, and within the fp32 tolerance of ONNX Runtime."""
    inputs, outputs = regression_io(8320, 26, SMALL_RESULT)
    feeds = _feeds(3, 26, seed=5)
    ref = OnnxRuntimeEngine(bench_network, inputs, outputs).run(feeds)["result"]
    plain = TorchEngine(bench_network, inputs, outputs, device="cpu")
    last = TorchEngine(bench_network, inputs, outputs, device="cpu", channels_last=True)
    assert plain.describe()["channels_last"] is False  # CPU default: unchanged
    assert last.describe()["channels_last"] is True
    got, base = last.run(feeds)["result"], plain.run(feeds)["result"]
    np.testing.assert_allclose(got, base, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got, ref, atol=FP32_TOL, rtol=0)
    keys = [k for k in last.graph._gemm_weights if k[0] == "channels_last"]
    assert len(keys) == 7 + 5 + 4  # wav2vec2 features, autocorrelation, temporal stack
    # the activations stay channels-last between the convs: the first conv's output is
    # [B, C, T] with [B, T, C] memory
    audio = torch.from_numpy(feeds["input"])
    graph = last.graph
    conv = next(k for k, node in enumerate(graph.nodes) if node[0].__name__ == "_op_Conv")
    fn, ins, _outs, attrs = graph.nodes[conv]
    with torch.inference_mode():
        y = fn([audio, graph.consts[ins[1]], None], attrs, ins)
    assert y.dim() == 3 and y.transpose(1, 2).is_contiguous()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_channels_last_instance_norm_matches_torch(precision: str, tmp_path: Path) -> None:
    """InstanceNormalization on channels-last activations keeps the layout and agrees with
    F.instance_norm."""
    from torch import nn

    from a2x_core.backends.torch_engine import OnnxGraph

    torch.manual_seed(6)
    norm = nn.InstanceNorm2d(8, affine=True).eval()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 5, 7) + 0.3
    path = _export(norm, x, tmp_path / "norm.onnx")
    graph = OnnxGraph(path, "cpu", precision, channels_last=True)
    xl = x.contiguous(memory_format=torch.channels_last)
    fn, ins, _outs, attrs = next(n for n in graph.nodes if n[0].__name__.endswith("Instance"
                                                                                  "Normalization"))
    with torch.inference_mode():
        expected = norm(x)
        if precision == "fp32":
            got = fn([xl] + [graph.consts[n] for n in ins[1:]], attrs, ins)
            assert got.is_contiguous(memory_format=torch.channels_last)
            np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6, rtol=0)
        else:
            got = fn([xl.half()] + [graph.consts[n] for n in ins[1:]], attrs, ins)
            assert got.dtype == torch.float16
            np.testing.assert_allclose(got.float().numpy(), expected.numpy(), atol=1e-2, rtol=0)


def test_row_buckets_are_few_and_never_smaller() -> None:
    """CUDA calls run padded to a bucket: every count maps to one at least as large, within the
    limit, and 1..2048 rows use few distinct shapes (graphs and cuDNN timings are per shape)."""
    from a2x_core.backends.torch_engine import row_bucket

    buckets = {row_bucket(n, 2048) for n in range(1, 2049)}
    assert all(row_bucket(n, 2048) >= n for n in range(1, 2049))
    assert max(buckets) == 2048 and len(buckets) <= 16
    assert row_bucket(300, 2048) == 512 and row_bucket(200, 2048) == 256
    assert row_bucket(700, 600) == 700  # above the limit: as it is (run in chunks)
