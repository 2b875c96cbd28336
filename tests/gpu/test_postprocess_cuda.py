"""The whole regression pipeline on CUDA (torch engine + device stages + ADMM) against the NumPy
stages on the CPU (skipped without torch or a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from a2x_core.audio.decode import Audio  # noqa: E402
from a2x_core.blendshapes.cpu import BlendshapeSolver  # noqa: E402
from a2x_core.blendshapes.gpu import MAX_GRAPHS, AdmmSolver, graph_shape  # noqa: E402
from a2x_core.models.registry import load_model  # noqa: E402
from a2x_core.options import InferenceOptions  # noqa: E402
from tests.a2f_folders import make_regression_folder  # noqa: E402
from tests.core.test_postprocess_gpu import ADMM_VS_BVLS_MAX, ADMM_VS_BVLS_MEAN  # noqa: E402


def _tracks(*sizes: int, seed: int = 0) -> list[Audio]:
    rng = np.random.default_rng(seed)
    return [Audio((0.3 * rng.standard_normal(n)).astype(np.float32)) for n in sizes]


def test_cuda_pipeline_matches_the_cpu_pipeline(tmp_path) -> None:  # noqa: ANN001
    generated = make_regression_folder(tmp_path / "model")
    tracks = _tracks(16000, 9000, 23000)
    options = InferenceOptions(geometry=True, emotions=((0.0, {"joy": 0.2}), (1.0, {"joy": 0.9})))
    cpu = load_model(generated.model_json, backend="onnxruntime", threads=1)
    ref = cpu.animate(tracks, options)
    gpu = load_model(generated.model_json, backend="torch", device="cuda")
    assert gpu.postprocess_device() == "cuda"
    gpu.device_frames_per_call = 7  # several chunks, CUDA-graph replays of the solver loop
    got = gpu.animate(tracks, options)
    again = gpu.animate(tracks, options)
    settings = cpu.settings({})
    admm = AdmmSolver(BlendshapeSolver(cpu.package.skin.data, settings.skin), "cpu")
    diffs = []
    for r, q, q2 in zip(ref, got, again, strict=True):
        assert q.parameters["postprocess"] == "cuda" and q.num_frames == r.num_frames
        np.testing.assert_allclose(q.arrays["skin_geometry"], r.arrays["skin_geometry"], atol=1e-4,
                                   rtol=0)  # fmt: skip
        np.testing.assert_allclose(q.arrays["tongue_geometry"], r.arrays["tongue_geometry"],
                                   atol=1e-4, rtol=0)  # fmt: skip
        np.testing.assert_allclose(q.jaw_transforms, r.jaw_transforms, atol=1e-5, rtol=0)
        np.testing.assert_allclose(q.eye_rotations, r.eye_rotations, atol=1e-5, rtol=0)
        mesh = torch.from_numpy(r.arrays["skin_geometry"].reshape(1, r.num_frames, -1))
        np.testing.assert_allclose(q.weights, admm.solve(mesh)[0].numpy()[:, cpu._skin_columns],
                                   atol=1e-4, rtol=0)  # fmt: skip
        np.testing.assert_allclose(q.tongue_weights, r.tongue_weights, atol=1e-4, rtol=0)
        np.testing.assert_allclose(q2.weights, q.weights, atol=1e-6, rtol=0)  # graph replays
        diffs.append(np.abs(q.weights - r.weights).ravel())
    diffs = np.concatenate(diffs)
    assert diffs.max() < ADMM_VS_BVLS_MAX and diffs.mean() < ADMM_VS_BVLS_MEAN


def _eager_and_graphed_solvers(tmp_path) -> tuple[AdmmSolver, AdmmSolver]:  # noqa: ANN001
    """The skin + tongue ADMM solver of a generated folder, eager and with CUDA graphs."""
    generated = make_regression_folder(tmp_path / "model")
    model = load_model(generated.model_json, backend="onnxruntime", threads=1)
    settings = model.settings({"skin.bsSolveCancelPoses": {"jawOpen": 0, "mouthClose": 0}})
    solvers = [BlendshapeSolver(model.package.skin.data, settings.skin),
               BlendshapeSolver(model.package.tongue.data, settings.tongue)]  # fmt: skip
    return AdmmSolver(solvers, "cuda"), AdmmSolver(solvers, "cuda", cuda_graphs=True)


def test_cuda_graph_solver_loop_equals_eager(tmp_path) -> None:  # noqa: ANN001
    eager, graphed = _eager_and_graphed_solvers(tmp_path)
    rng = np.random.default_rng(1)
    prev = None
    for _ in range(3):
        atb = torch.from_numpy(rng.normal(0, 2, (5, 6, eager.num_active)).astype(np.float32))
        atb = atb.cuda()
        want, want_last = eager.solve_projected(atb, prev)
        got, got_last = graphed.solve_projected(atb, prev)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        prev = got_last.clone()
        torch.testing.assert_close(prev, want_last, atol=1e-6, rtol=0)
    assert len(graphed._graphs) == 1


@pytest.mark.parametrize("precision", ["tf32", "bf16", "fp16"])
def test_cuda_pipeline_reduced_precision_runs(tmp_path, precision: str) -> None:  # noqa: ANN001
    generated = make_regression_folder(tmp_path / "model")
    tracks = _tracks(8000, 12000, seed=3)
    fp32 = load_model(generated.model_json, backend="torch", device="cuda")
    low = load_model(generated.model_json, backend="torch", device="cuda", precision=precision)
    for a, b in zip(fp32.animate(tracks, InferenceOptions()), low.animate(tracks, InferenceOptions()),
                    strict=True):  # fmt: skip
        assert np.isfinite(b.weights).all() and b.weights.shape == a.weights.shape
        assert np.abs(a.weights - b.weights).max() < 0.1


def test_compiled_network_matches_the_engine(tmp_path) -> None:  # noqa: ANN001
    """torch.compile of the benchmark architecture (fp32, padded 256-row passes) against the
    engine, and the whole pipeline with it against the pipeline without it."""
    from a2x_core.backends import regression_io
    from a2x_core.backends.torch_engine import TorchEngine
    from a2x_core.postprocess.gpu import CompiledNetwork
    from tests.torch_networks import SMALL_RESULT, export_small_benchmark_network, random_feeds

    path = export_small_benchmark_network(tmp_path / "network.onnx")
    engine = TorchEngine(path, *regression_io(8320, 26, SMALL_RESULT), device="cuda")
    feeds = random_feeds(300, 26, seed=6)
    tensors = [torch.from_numpy(feeds[n]).cuda() for n in engine.graph.input_names]
    want = engine.forward(*tensors)[0]
    compiled = CompiledNetwork(engine)
    for rows in (300, 7):  # two passes (the second padded), then one padded pass
        got = compiled.run_device([t[:rows] for t in tensors])[0]
        torch.testing.assert_close(got, want[:rows], atol=2e-5, rtol=0)

    generated = make_regression_folder(tmp_path / "model")
    tracks = _tracks(9000, 14000, seed=4)
    model = load_model(generated.model_json, backend="torch", device="cuda")
    plain = model.animate(tracks, InferenceOptions())
    model.compile_network = True
    for a, b in zip(plain, model.animate(tracks, InferenceOptions()), strict=True):
        np.testing.assert_allclose(b.weights, a.weights, atol=1e-4, rtol=0)


def test_compile_option_reaches_the_pipeline_through_the_api(tmp_path) -> None:  # noqa: ANN001
    from a2x_core.api import Animator, unused_option_warnings

    generated = make_regression_folder(tmp_path / "model")
    tracks = _tracks(12000, 7000, seed=8)
    options = InferenceOptions(backend="torch", device="cuda", compile_network=True)
    animator = Animator(str(generated.model_json), options)
    assert animator.model.compile_network and not unused_option_warnings(animator.model, options)
    plain = Animator(str(generated.model_json), options.with_changes(compile_network=False))
    for a, b in zip(plain.animate_many(tracks), animator.animate_many(tracks), strict=True):
        np.testing.assert_allclose(b.weights, a.weights, atol=1e-4, rtol=0)


def test_cuda_graphs_at_padded_shapes_equal_eager(tmp_path) -> None:  # noqa: ANN001
    """Calls of many (tracks, frames) shapes share the graphs of their padded shapes, the least
    recently used dropped past MAX_GRAPHS, and every replay equals the eager loop."""
    eager, graphed = _eager_and_graphed_solvers(tmp_path)
    rng = np.random.default_rng(2)
    shapes = [(200, 81), (144, 39), (3, 13), (5, 11), (1, 61), (1, 120), (2, 64), (17, 9),
              (40, 17), (300, 8), (1, 119), (200, 81)]  # fmt: skip
    for tracks, frames in shapes:
        atb = torch.from_numpy(rng.normal(0, 2, (tracks, frames, eager.num_active))
                               .astype(np.float32)).cuda()  # fmt: skip
        prev = torch.from_numpy(rng.uniform(0, 1, (tracks, eager.num_active))
                                .astype(np.float32)).cuda()  # fmt: skip
        want, want_last = eager.solve_projected(atb, prev)
        got, got_last = graphed.solve_projected(atb, prev)
        assert got.shape == want.shape and got_last.shape == want_last.shape
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        torch.testing.assert_close(got_last, want_last, atol=1e-6, rtol=0)
        assert len(graphed._graphs) <= MAX_GRAPHS
    padded = {(*graph_shape(t, f), eager.num_active) for t, f in shapes}
    assert not graphed._failed and set(graphed._graphs) <= padded
    assert len(graphed._graphs) == min(MAX_GRAPHS, len(padded))
