"""The device stages (:mod:`a2x_core.postprocess.gpu`) run by torch on the CPU against the NumPy
stages they replace: the same code runs on CUDA (tests/gpu/test_postprocess_cuda.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from a2x_core.audio.decode import Audio  # noqa: E402
from a2x_core.audio.windows import audio_windows, frame_plan  # noqa: E402
from a2x_core.blendshapes.cpu import CANCEL_CAP, BlendshapeSolver  # noqa: E402
from a2x_core.blendshapes.gpu import FRAME_BUCKET, AdmmSolver, graph_shape  # noqa: E402
from a2x_core.errors import ParameterError  # noqa: E402
from a2x_core.models.registry import load_model  # noqa: E402
from a2x_core.models.regression_folder import BlendshapeConfig, BlendshapeData  # noqa: E402
from a2x_core.options import InferenceOptions  # noqa: E402
from a2x_core.postprocess.cpu import (  # noqa: E402
    EyesAnimator,
    SkinAnimator,
    frame_dt,
    jaw_transforms,
    kabsch,
)
from a2x_core.postprocess.gpu import (  # noqa: E402
    DeviceInputs,
    best_rotations,
    cascade_matrix,
    kabsch_transforms,
    padded_rows,
    real_rows,
    saccade_rows,
)
from tests.a2f_folders import MARK_CONFIG, GeneratedModel, make_regression_folder  # noqa: E402

#: GPU solver (ADMM, 4 updates) against the CPU's BVLS on the generated folders (52 poses on 63
#: masked vertices, temporal 0.3): measured max 3.3e-2, mean 2.8e-3 over 181 frames.
ADMM_VS_BVLS_MAX, ADMM_VS_BVLS_MEAN = 6e-2, 5e-3


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return make_regression_folder(tmp_path_factory.mktemp("device") / "model")


def _tracks(*sizes: int, seed: int = 0) -> list[Audio]:
    rng = np.random.default_rng(seed)
    return [Audio((0.3 * rng.standard_normal(n)).astype(np.float32)) for n in sizes]


@pytest.mark.parametrize(("upper", "lower"), [(0.05, 0.01), (0.0023, 0.001), (0.0, 0.02)])
def test_cascade_matrix_is_the_skin_filter(upper: float, lower: float) -> None:
    """Chunks of the closed form, states carried, equal the SDK's per-frame recursion."""
    params = {"face_mask_level": 0.6, "face_mask_softness": 0.05, "skin_strength": 1.0,
              "blink_strength": 1.0, "eyelid_open_offset": 0.0, "lip_open_offset": 0.0,
              "lower_face_strength": 1.0, "upper_face_strength": 1.0,
              "lower_face_smoothing": lower, "upper_face_smoothing": upper}  # fmt: skip
    rng = np.random.default_rng(1)
    neutral = np.zeros((40, 3), np.float32)
    neutral[:, 1] = np.linspace(0, 1, 40)
    zeros = np.zeros_like(neutral)
    dt = frame_dt(60, 1)
    skin = SkinAnimator(params, neutral, zeros, zeros, dt)
    deltas = rng.normal(0, 1, (23, neutral.size)).astype(np.float32)
    ref = skin.animate(deltas)
    state = None
    out = []
    for start, n in ((0, 7), (7, 1), (8, 15)):
        d = deltas[start : start + n].astype(np.float64)
        state = np.repeat(d[:1], 4, axis=0) if state is None else state
        y = cascade_matrix(skin.upper_alpha, skin.lower_alpha, n) @ np.concatenate([d, state])
        state = y[[n, n - 1, 2 * n + 1, 2 * n]]
        out.append(skin.neutral + skin.upper_strength * y[:n] * skin.inv_mask
                   + skin.lower_strength * y[n + 1 : 2 * n + 1] * skin.mask)  # fmt: skip
    np.testing.assert_allclose(np.concatenate(out), ref, atol=1e-5, rtol=0)


def test_saccade_rows_follow_the_eyes_clock() -> None:
    rng = np.random.default_rng(2)
    table = rng.normal(0, 1, (5000, 2)).astype(np.float32)
    params = {**MARK_CONFIG, "eye_saccade_seed": 4990, "eyeballs_strength": 0.0,
              "saccade_strength": 1.0, "right_eye_rot_x_offset": 0.0, "right_eye_rot_y_offset": 0.0,
              "left_eye_rot_x_offset": 0.0, "left_eye_rot_y_offset": 0.0}  # fmt: skip
    dt = frame_dt(30000, 1001)
    eyes = EyesAnimator(params, table, dt).animate(np.zeros((700, 4), np.float32))
    rows = saccade_rows(params, len(table), dt, 700)
    np.testing.assert_array_equal(eyes[:, [0, 1]], table[rows])


def test_kabsch_matches_the_numpy_jaw() -> None:
    rng = np.random.default_rng(3)
    neutral = rng.normal(0, 3, (5, 3)).astype(np.float32)
    deltas = rng.normal(0, 0.4, (50, 15)).astype(np.float32)
    deltas[0] = np.tile([0.0, 0.1, 0.0], 5)  # a pure translation
    ref = jaw_transforms(deltas, neutral, 1.3, -0.1, 0.05)
    got = kabsch_transforms(torch, torch.from_numpy(deltas), torch.from_numpy(neutral), 1.3,
                            torch.tensor([0.0, -0.1, 0.05]))  # fmt: skip
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", ["small", "large", "mirrored", "coincident"])
def test_horn_rotations_are_the_svd_kabsch(case: str) -> None:
    """The sync-free rotation (Horn's quaternion by repeated squaring) is the NumPy SVD fit's,
    reflections (det(V U^T) = -1: the best proper rotation) and a zero covariance included."""
    rng = np.random.default_rng(11)
    src = rng.normal(0, 3, (5, 3))
    noise = {"small": 0.01, "large": 3.0, "mirrored": 0.01, "coincident": 0.0}[case]
    tgt = src[None] + rng.normal(0, 1, (300, 5, 3)) * noise
    if case == "mirrored":
        tgt = -tgt
    if case == "coincident":
        tgt = np.broadcast_to(np.arange(300.0)[:, None, None], (300, 5, 3))  # H = 0 exactly
    want, _ = kabsch(src, tgt)
    h = np.einsum("ki,nkj->nij", src - src.mean(0), tgt - tgt.mean(1)[:, None])
    got = best_rotations(torch, torch.from_numpy(h)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


def test_device_windows_are_the_host_windows() -> None:
    tracks = _tracks(16000, 5000, 12345, seed=4)
    fps_targets = [frame_plan(len(a.samples), 60) for a in tracks]
    emotions = [np.full((len(t), 26), k, np.float32) for k, t in enumerate(fps_targets)]
    longest = max(len(t) for t in fps_targets)
    inputs = DeviceInputs("cpu", [a.samples for a in tracks], fps_targets, emotions, 8320, 4160,
                          1.3, longest)  # fmt: skip
    live = torch.tensor([0, 2])
    audio, emo = inputs.rows(live, 16, 5)
    for k, track in enumerate((0, 2)):
        ref = audio_windows(tracks[track].samples, fps_targets[track][16:21], 8320, 4160, 1.3)
        np.testing.assert_array_equal(audio[k * 5 : (k + 1) * 5, 0].numpy(), ref)
        assert np.all(emo[k * 5 : (k + 1) * 5].numpy() == track)


def test_stacked_admm_equals_separate_solvers(generated: GeneratedModel) -> None:
    """Skin and tongue as one block-diagonal ADMM give each solver's own result."""
    model = load_model(generated.model_json, backend="onnxruntime", threads=1)
    settings = model.settings({"skin.bsSolveCancelPoses": {"jawOpen": 0, "mouthClose": 0}})
    skin = BlendshapeSolver(model.package.skin.data, settings.skin)
    tongue = BlendshapeSolver(model.package.tongue.data, settings.tongue)
    assert skin.cancel_pairs and not tongue.cancel_pairs
    rng = np.random.default_rng(5)
    atb_s = torch.from_numpy(rng.normal(0, 2, (3, 9, len(skin.active))).astype(np.float32))
    atb_t = torch.from_numpy(rng.normal(0, 2, (3, 9, len(tongue.active))).astype(np.float32))
    both = AdmmSolver([skin, tongue], "cpu")
    z, last = both.solve_projected(torch.cat([atb_s, atb_t], dim=-1))
    for part, (alone, atb) in enumerate(((skin, atb_s), (tongue, atb_t))):
        single = AdmmSolver(alone, "cpu")
        want, _ = single.solve_projected(atb)
        np.testing.assert_allclose(both.expand(z, part).numpy(), single.expand(want).numpy(),
                                   atol=2e-6, rtol=0)  # fmt: skip
    np.testing.assert_array_equal(last.numpy(), z[:, -1].numpy())


def _compare(ref: list, got: list, model: object) -> None:
    """Device results against the NumPy stages: meshes, jaw, eyes to float32 rounding; weights
    exactly the ADMM of the CPU meshes, and within the ADMM-vs-BVLS gap of the CPU weights."""
    settings = model.settings({})
    admm = AdmmSolver(BlendshapeSolver(model.package.skin.data, settings.skin), "cpu")
    diffs = []
    for r, q in zip(ref, got, strict=True):
        assert q.num_frames == r.num_frames and q.parameters["postprocess"] == "cpu"
        np.testing.assert_allclose(q.arrays["skin_geometry"], r.arrays["skin_geometry"], atol=1e-4,
                                   rtol=0)  # fmt: skip
        np.testing.assert_allclose(q.arrays["tongue_geometry"], r.arrays["tongue_geometry"],
                                   atol=1e-4, rtol=0)  # fmt: skip
        np.testing.assert_allclose(q.jaw_transforms, r.jaw_transforms, atol=1e-5, rtol=0)
        np.testing.assert_allclose(q.eye_rotations, r.eye_rotations, atol=1e-5, rtol=0)
        geometry = torch.from_numpy(r.arrays["skin_geometry"].reshape(1, r.num_frames, -1))
        on_cpu_mesh = admm.solve(geometry)[0].numpy()[:, model._skin_columns]
        np.testing.assert_allclose(q.weights, on_cpu_mesh, atol=1e-5, rtol=0)
        np.testing.assert_allclose(q.tongue_weights, r.tongue_weights, atol=1e-4, rtol=0)
        diffs.append(np.abs(q.weights - r.weights).ravel())
    diffs = np.concatenate(diffs)
    assert diffs.max() < ADMM_VS_BVLS_MAX and diffs.mean() < ADMM_VS_BVLS_MEAN


def test_device_stages_match_the_numpy_stages(generated: GeneratedModel) -> None:
    """ORT network, stages by torch on the CPU in chunks of 7 frames, tracks of three lengths."""
    model = load_model(generated.model_json, backend="onnxruntime", threads=1)
    tracks = _tracks(16000, 9000, 23000)
    options = InferenceOptions(geometry=True, emotions=((0.0, {"joy": 0.2}), (1.0, {"joy": 0.9})))
    model.postprocess = "numpy"
    ref = model.animate(tracks, options)
    model.postprocess = "cpu"
    model.device_frames_per_call = 7
    got = model.animate(tracks, options)
    _compare(ref, got, model)
    # the solves never read the decoded meshes: the same weights without them
    plain = model.animate(tracks, InferenceOptions(emotions=options.emotions))
    for a, b in zip(plain, got, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)
        assert "skin_geometry" not in a.arrays


def test_device_windows_path_batch_equals_one_at_a_time(generated: GeneratedModel) -> None:
    """The torch engine on the CPU takes the device windows; each track alone gives its rows of
    the batched run, and the batch matches the NumPy stages."""
    model = load_model(generated.model_json, backend="torch", device="cpu")
    tracks = _tracks(12000, 20000, 4000, seed=7)
    options = InferenceOptions(geometry=True, fps=30)
    model.postprocess = "numpy"
    ref = model.animate(tracks, options)
    model.postprocess = "cpu"
    batched = model.animate(tracks, options)
    _compare(ref, batched, model)
    for k, track in enumerate(tracks):
        alone = model.animate([track], options)[0]
        np.testing.assert_allclose(alone.weights, batched[k].weights, atol=1e-5, rtol=0)
        np.testing.assert_allclose(alone.jaw_transforms, batched[k].jaw_transforms, atol=1e-6)


def test_postprocess_choice(generated: GeneratedModel, tmp_path: Path) -> None:
    model = load_model(generated.model_json, backend="onnxruntime", threads=1)
    assert model.postprocess_device() is None  # auto: a CPU engine keeps the NumPy stages
    result = model.animate(_tracks(3000), InferenceOptions())[0]
    assert result.parameters["postprocess"] == "numpy"
    model.postprocess = "gpu"
    with pytest.raises(ParameterError, match="postprocess"):
        model.animate(_tracks(3000), InferenceOptions())
    model.postprocess = "cuda:1"
    assert model.postprocess_device() == "cuda:1"
    empty = _tracks(3000, 0, seed=8)
    model.postprocess = "cpu"
    results = model.animate(empty, InferenceOptions())
    assert results[1].num_frames == 0 and results[1].weights.shape == (0, 52)


def test_admm_cancels_the_minus_one_pair_as_bvls() -> None:
    """The GPU solver takes the CPU solver's pairs: two active poses alone at id -1 are a cancel
    pair on the ADMM path too (SDK getPairs), the smaller capped at 1e-10."""
    rng = np.random.default_rng(3)
    num, verts = 5, 30
    neutral = rng.uniform(-5, 5, verts * 3).astype(np.float32)
    deltas = rng.normal(0, 1, (num, verts * 3)).astype(np.float32)
    data = BlendshapeData(tuple(f"p{i}" for i in range(num)), neutral, deltas, None)
    config = BlendshapeConfig(
        l1=0.0, l2=0.0, temporal=0.0, symmetry=0.0, template_bb_size=10.0,
        active=np.ones(num, np.int32), cancel=np.array([-1, -1, 0, 1, 2], np.int32),
        symmetry_ids=np.full(num, -1, np.int32), multipliers=np.ones(num, np.float32),
        offsets=np.zeros(num, np.float32),
    )  # fmt: skip
    solver = BlendshapeSolver(data, config)
    admm = AdmmSolver(solver, "cpu", dtype="float64")
    assert admm.cancel_i.tolist() == [0] and admm.cancel_j.tolist() == [1]
    target = neutral + np.array([0.2, 0.7, 0.4, 0.0, 0.5], np.float32) @ deltas
    z = admm.solve_rows(admm.project(target[None])).numpy()[0]
    assert z[0] <= CANCEL_CAP and z[1] > 0.5


def test_graph_shapes_pad_tracks_and_frames_without_changing_a_result(
    generated: GeneratedModel,
) -> None:
    """The CUDA graphs of the solver's frame loop run at padded shapes (few shapes for a whole
    batch); that is safe because padded tracks are independent rows and padded frames come
    after the real ones: the padded solve, cut back, is the solve (checked here on the CPU)."""
    assert graph_shape(1, 1) == (1, FRAME_BUCKET)
    assert graph_shape(200, 81) == (256, 88) and graph_shape(130, 39) == (256, 40)
    assert graph_shape(300, 16) == (512, 16) and graph_shape(5, 6) == (8, 8)
    shapes = {graph_shape(t, f) for t in range(129, 257) for f in range(61, 121)}
    assert len(shapes) == 8  # every length of 1-2 s clips at 60 fps, 129-256 tracks
    model = load_model(generated.model_json, backend="onnxruntime", threads=1)
    settings = model.settings({"skin.bsSolveCancelPoses": {"jawOpen": 0, "mouthClose": 0}})
    admm = AdmmSolver([BlendshapeSolver(model.package.skin.data, settings.skin),
                       BlendshapeSolver(model.package.tongue.data, settings.tongue)], "cpu")  # fmt: skip
    rng = np.random.default_rng(11)
    atb = torch.from_numpy(rng.normal(0, 2, (5, 13, admm.num_active)).astype(np.float32))
    prev = torch.from_numpy(rng.uniform(0, 1, (5, admm.num_active)).astype(np.float32))
    want, want_last = admm.solve_projected(atb, prev)
    tracks, frames = graph_shape(5, 13)
    padded = torch.from_numpy(rng.normal(0, 2, (tracks, frames, admm.num_active)).astype(np.float32))
    padded[:5, :13] = atb
    padded_prev = torch.from_numpy(rng.uniform(0, 1, (tracks, admm.num_active)).astype(np.float32))
    padded_prev[:5] = prev
    got, _ = admm.solve_projected(padded, padded_prev)
    torch.testing.assert_close(got[:5, :13], want, atol=1e-6, rtol=0)
    torch.testing.assert_close(got[:5, 12], want_last, atol=1e-6, rtol=0)


def test_real_rows_and_their_places() -> None:
    """Only the real rows of an offline call go through the network; their outputs go back to
    their places, the padding zero."""
    assert real_rows([4, 4], 4) is None and real_rows([], 3) is None
    rows = real_rows([3, 1, 2], 3)
    assert rows.tolist() == [0, 1, 2, 3, 6, 7]
    out = torch.arange(6 * 2, dtype=torch.float32).reshape(6, 2) + 1
    full = padded_rows(torch, out, rows, 9)
    assert full.shape == (9, 2)
    torch.testing.assert_close(full[torch.as_tensor(rows)], out)
    assert not full[[4, 5, 8]].any()


def test_batched_device_run_feeds_the_network_only_real_rows(generated: GeneratedModel) -> None:
    """Tracks of three lengths in one device run: the network sees each track's own frames and
    no padding, and each track's results equal its run alone."""
    model = load_model(generated.model_json, backend="torch", device="cpu")
    model.postprocess = "cpu"
    tracks = _tracks(4000, 9000, 6500, seed=9)
    options = InferenceOptions(fps=30)
    seen: list[int] = []
    infer = model._infer_on

    def counting(device: object, audio: object, emotion: object, on_device: bool) -> object:
        seen.append(int(audio.shape[0]))
        return infer(device, audio, emotion, on_device)

    model._infer_on = counting
    batched = model.animate(tracks, options)
    assert sum(seen) == sum(r.num_frames for r in batched)
    del model._infer_on
    for k, track in enumerate(tracks):
        alone = model.animate([track], options)[0]
        np.testing.assert_allclose(alone.weights, batched[k].weights, atol=1e-5, rtol=0)
        np.testing.assert_allclose(alone.jaw_transforms, batched[k].jaw_transforms, atol=1e-6)
