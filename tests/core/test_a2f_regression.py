"""Whole regression runs: a closed-form network, an independent NumPy reference pipeline,
batch == one-at-a-time, progress and cancel (SDK spec §3, §4, §4.1, §6)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from a2x_core.api import Animator
from a2x_core.audio.decode import Audio
from a2x_core.errors import CancelledError, ParameterError
from a2x_core.jobs import CancelToken, Progress
from a2x_core.models.emotion_input import A2F_EMOTIONS
from a2x_core.models.registry import load_model
from a2x_core.names import ARKIT_52, TONGUE_16
from a2x_core.options import InferenceOptions
from tests.a2f_folders import SHOTS, GeneratedModel, make_regression_folder

JAW_OPEN, FUNNEL, LOOK_DOWN_L = ARKIT_52.index("jawOpen"), ARKIT_52.index("mouthFunnel"), 1
TONGUE_IN = TONGUE_16.index("tongueIn")
JOY = A2F_EMOTIONS.index("joy")


def _audio(samples: np.ndarray, start_s: float = 0.0) -> Audio:
    return Audio(np.asarray(samples, np.float32), path="", start_s=start_s)


# ----------------------------------------------------------------------------- closed form


@pytest.fixture(scope="module")
def closed_form(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    """A folder whose network output is known by hand:

    - skin PCA shape 0 = the jawOpen pose delta, coefficient = the window's centre sample
      (= the frame's target sample x input_strength); shape 1 = mouthFunnel, coefficient 0.25;
    - tongue PCA shape 0 = the tongueIn delta, coefficient = the explicit ``joy`` input;
    - jaw keypoints all move by (0, 0.1, 0); eyes output (1, 2, 3, 4);
    - no smoothing, no correctives, unit strengths, unregularised solves.
    """
    root = tmp_path_factory.mktemp("closed") / "model"
    probe = make_regression_folder(root)  # to read its pose deltas
    s_count, t_count = 2, 1
    width = s_count + t_count + 19
    skin_basis = np.stack([probe.skin_bs["jawOpen"], probe.skin_bs["mouthFunnel"]])
    tongue_basis = probe.tongue_bs["tongueIn"][None]
    audio_w = np.zeros((8320, width), np.float32)
    audio_w[4160, 0] = 1.0  # window position 4160 = the target sample
    emotion_w = np.zeros((26, width), np.float32)
    emotion_w[16 + JOY, s_count] = 1.0
    bias = np.zeros(width, np.float32)
    bias[1] = 0.25
    bias[s_count + t_count : s_count + t_count + 15] = np.tile([0.0, 0.1, 0.0], 5)
    bias[-4:] = [1.0, 2.0, 3.0, 4.0]
    unregularised = {"strengthL1regularization": 0.0, "strengthL2regularization": 0.0,
                     "strengthTemporalSmoothing": 0.0, "strengthSymmetry": 0.0}  # fmt: skip
    multipliers = [1.0] * 52
    multipliers[JAW_OPEN] = 0.5
    offsets = [0.0] * 52
    offsets[JAW_OPEN], offsets[LOOK_DOWN_L] = 0.1, 0.2  # pose 1 is inactive: its output = 0.2
    return make_regression_folder(
        root, num_shapes_skin=s_count, num_shapes_tongue=t_count, skin_basis=skin_basis,
        tongue_basis=tongue_basis, audio_weights=audio_w, emotion_weights=emotion_w, bias=bias,
        zero_correctives=True,
        model_config={
            "lower_face_smoothing": 0.0, "upper_face_smoothing": 0.0, "lower_face_strength": 1.0,
            "upper_face_strength": 1.0, "skin_strength": 1.0, "tongue_strength": 1.0,
            "tongue_height_offset": 0.0, "tongue_depth_offset": 0.0, "lower_teeth_strength": 1.3,
            "lower_teeth_height_offset": -0.1, "lower_teeth_depth_offset": 0.0,
            "saccade_strength": 0.0,
        },
        skin_config={
            **unregularised, "bsWeightMultipliers": multipliers, "bsWeightOffsets": offsets
        },
        tongue_config={**unregularised, "bsWeightMultipliers": [1.0] * 16},
    )  # fmt: skip


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30), Fraction(60), Fraction(30000, 1001)])
def test_closed_form_run(closed_form: GeneratedModel, fps: Fraction) -> None:
    model = load_model(closed_form.model_json, backend="onnxruntime", threads=1)
    n = 16000 * 3 // 2 + 7
    # in [0, 0.7]: x 1.3 stays inside the bounds, where the bounded solve is exact
    samples = (0.35 + 0.35 * np.sin(np.arange(n) * 0.0021)).astype(np.float32)
    keys = ((0.0, {"joy": 0.0}), (1.0, {"joy": 1.0}))
    result = model.animate([_audio(samples)], InferenceOptions(fps=fps, emotions=keys))[0]

    i = np.arange(result.num_frames)
    targets = (i * 16000 * fps.denominator) // fps.numerator
    assert result.num_frames == int(np.sum(targets < n)) and targets[-1] < n
    coeff = np.float32(samples[targets]) * np.float32(1.3)  # input_strength 1.3 (Mark)
    w = result.weights
    np.testing.assert_allclose(w[:, JAW_OPEN], coeff * 0.5 + 0.1, atol=2e-5)
    np.testing.assert_allclose(w[:, FUNNEL], 0.25, atol=2e-5)
    assert np.all(w[:, LOOK_DOWN_L] == np.float32(0.2))  # inactive pose = its offset
    others = np.delete(np.arange(52), [JAW_OPEN, FUNNEL, LOOK_DOWN_L])
    assert np.abs(w[:, others]).max() < 2e-5
    joy = np.clip(targets / 16000.0, 0, 1)  # lerp between the keys, then held
    np.testing.assert_allclose(result.emotions[:, JOY], joy, atol=1e-6)
    np.testing.assert_allclose(result.tongue_weights[:, TONGUE_IN], joy, atol=2e-5)
    # jaw: keypoints + 0.1 y x 1.3 - 0.1 height offset = pure translation (0, 0.03, 0)
    expected_jaw = np.eye(4, dtype=np.float32)
    expected_jaw[1, 3] = 0.03
    np.testing.assert_allclose(
        result.jaw_transforms, np.broadcast_to(expected_jaw, (len(i), 4, 4)), atol=1e-5
    )
    # eyes: offsets (0, -2) / (0, 2) + network (1, 2) / (3, 4), no saccade
    np.testing.assert_allclose(
        result.eye_rotations, np.tile([1, 0, 0, 3, 6, 0], (len(i), 1)), atol=1e-6
    )
    assert result.fps == fps and result.names == ARKIT_52 and result.tongue_names == TONGUE_16
    assert result.emotion_names == A2F_EMOTIONS and result.model == "testactor"


def test_input_strength_override_changes_the_coefficient(closed_form: GeneratedModel) -> None:
    model = load_model(closed_form.model_json, backend="onnxruntime", threads=1)
    samples = np.full(8000, 0.5, np.float32)
    result = model.animate(
        [_audio(samples)], InferenceOptions(fps=30, parameters={"input_strength": 0.8})
    )[0]
    np.testing.assert_allclose(result.weights[:, JAW_OPEN], 0.4 * 0.5 + 0.1, atol=2e-5)
    assert result.parameters["input_strength"] == 0.8
    assert result.parameters["skin.bsWeightOffsets"][LOOK_DOWN_L] == pytest.approx(0.2)


# ----------------------------------------------------------------------------- reference


def _kabsch_reference(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    sc, tc = src.mean(0), tgt.mean(0)
    h = (src - sc).T @ (tgt - tc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1, 1, d]) @ u.T
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, tc - r @ sc
    return m


def _solver_reference(bs: dict, cfg: dict, n_poses: int):
    """M and a per-frame solve, written from spec §4.1 with scipy's BVLS."""
    names = [n.decode() for n in bs["poseNames"][1:]]
    neutral = bs["neutral"].reshape(-1).astype(np.float64)
    deltas = np.stack([bs[n].reshape(-1) for n in names]).astype(np.float64)
    active = np.flatnonzero(np.asarray(cfg["bsSolveActivePoses"]))
    rows = slice(None)
    if "frontalMask" in bs:
        rows = (bs["frontalMask"].astype(int)[:, None] * 3 + np.arange(3)).reshape(-1)
    d = deltas[active][:, rows].T
    xyz = neutral.reshape(-1, 3)
    s = (np.linalg.norm(xyz.max(0) - xyz.min(0)) / cfg["templateBBSize"]) ** 2
    sym_ids = np.asarray(cfg["bsSolveSymmetryPoses"])[active]
    pairs = [np.flatnonzero(sym_ids == v) for v in set(sym_ids.tolist()) - {-1}]
    sm = np.zeros((len(pairs), len(active)))
    for r, (a, b) in enumerate(pairs):
        sm[r, a], sm[r, b] = 1, -1
    k = len(active)
    m = (d.T @ d + cfg["strengthL1regularization"] ** 2 * 0.25 * s * np.ones((k, k))
         + cfg["strengthL2regularization"] * 10 * s * np.eye(k)
         + cfg["strengthTemporalSmoothing"] * 100 * s * np.eye(k)
         + cfg["strengthSymmetry"] * 10 * s * sm.T @ sm)  # fmt: skip
    mult, off = np.asarray(cfg["bsWeightMultipliers"]), np.asarray(cfg["bsWeightOffsets"])

    def solve_track(geometry: np.ndarray) -> np.ndarray:
        prev = np.zeros(k)
        out = []
        for target in geometry:
            b = d.T @ (target[rows] - neutral[rows]) + cfg["strengthTemporalSmoothing"] * s * prev
            x = lsq_linear(m, b, bounds=(0, 1), method="bvls", tol=1e-12).x
            prev = x
            full = np.zeros(n_poses)
            full[active] = x
            out.append(full * mult + off)
        return np.array(out)

    return solve_track


def _reference_run(g: GeneratedModel, samples: np.ndarray, fps: Fraction, emotion: np.ndarray):
    """The whole pipeline from the spec, in float64 with plain loops (no a2x code)."""
    cfg, md = g.model_config, g.model_data
    n = len(samples)
    count = (n * fps.numerator - 1) // (16000 * fps.denominator) + 1
    targets = [(i * 16000 * fps.denominator) // fps.numerator for i in range(count)]
    padded = np.concatenate([np.zeros(4160), samples.astype(np.float64), np.zeros(8320)])
    windows = np.array([padded[t : t + 8320] for t in targets]) * cfg["input_strength"]
    start, _ = SHOTS[cfg["source_shot"]]
    implicit = g.emo_db[start + cfg["source_frame"]]
    emo_in = np.tile(np.concatenate([implicit, emotion]), (count, 1))
    out = g.network(windows, emo_in)
    s_n, t_n = g.num_shapes_skin, g.num_shapes_tongue
    # skin
    neutral = md["shapes_mean_skin"].reshape(-1).astype(np.float64)
    y = md["shapes_mean_skin"][:, 1].astype(np.float64)
    yn = (y - y.min()) / (y.max() - y.min())
    mask = np.repeat(
        1 / (1 + np.exp(-(cfg["face_mask_level"] - yn) / cfg["face_mask_softness"])), 3
    )
    dt = fps.denominator / fps.numerator
    a_lo = 1 - 0.5 ** (dt / cfg["lower_face_smoothing"])
    a_up = 1 - 0.5 ** (dt / cfg["upper_face_smoothing"])
    skin = []
    state = None
    for coeffs in out[:, :s_n]:
        delta = coeffs @ md["shapes_matrix_skin"].reshape(s_n, -1)
        eye_term = md["eye_close_pose_delta"].reshape(-1) * -cfg["eyelid_open_offset"]
        lip_term = md["lip_open_pose_delta"].reshape(-1) * cfg["lip_open_offset"]
        d = cfg["skin_strength"] * delta + eye_term + lip_term
        if state is None:
            state = [d.copy() for _ in range(4)]
        else:
            state[0] += (d - state[0]) * a_lo
            state[1] += (state[0] - state[1]) * a_lo
            state[2] += (d - state[2]) * a_up
            state[3] += (state[2] - state[3]) * a_up
        skin.append(neutral + state[3] * cfg["upper_face_strength"] * (1 - mask)
                    + state[1] * cfg["lower_face_strength"] * mask)  # fmt: skip
    skin = np.array(skin)
    tongue = (
        md["shapes_mean_tongue"].reshape(-1)
        + (out[:, s_n : s_n + t_n] @ md["shapes_matrix_tongue"].reshape(t_n, -1))
        * cfg["tongue_strength"]
    )
    tongue = tongue.reshape(count, -1, 3)
    tongue[:, :, 1] += cfg["tongue_height_offset"]
    tongue[:, :, 2] += cfg["tongue_depth_offset"]
    tongue = tongue.reshape(count, -1)
    jaw_n = md["neutral_jaw"].astype(np.float64)
    off = np.array([0, cfg["lower_teeth_height_offset"], cfg["lower_teeth_depth_offset"]])
    jaw = np.array([
        _kabsch_reference(jaw_n, jaw_n + row.reshape(5, 3) * cfg["lower_teeth_strength"] + off)
        for row in out[:, s_n + t_n : s_n + t_n + 15]
    ])  # fmt: skip
    table = md["saccade_rot_matrix"].astype(np.float64)
    eyes = []
    for i, e in enumerate(out[:, -4:]):
        row = table[int((cfg["eye_saccade_seed"] + i * dt * 30) % len(table))]
        offs = [cfg["right_eye_rot_x_offset"], cfg["right_eye_rot_y_offset"],
                cfg["left_eye_rot_x_offset"], cfg["left_eye_rot_y_offset"]]  # fmt: skip
        v = (
            np.array(offs)
            + e * cfg["eyeballs_strength"]
            + np.tile(row, 2) * cfg["saccade_strength"]
        )
        eyes.append([v[0], v[1], 0, v[2], v[3], 0])
    skin_w = _solver_reference(g.skin_bs, g.skin_config, 52)(skin)
    tongue_w = _solver_reference(g.tongue_bs, g.tongue_config, 16)(tongue)
    return skin_w, tongue_w, jaw, np.array(eyes), skin, tongue


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return make_regression_folder(tmp_path_factory.mktemp("random") / "model", seed=7)


@pytest.mark.parametrize("fps", [Fraction(60), Fraction(30000, 1001)])
def test_pipeline_matches_an_independent_numpy_reference(
    random_model: GeneratedModel, fps: Fraction
) -> None:
    rng = np.random.default_rng(11)
    samples = (rng.uniform(-0.6, 0.6, 16000) * np.hanning(16000)).astype(np.float32)
    emotion = np.zeros(10)
    emotion[JOY], emotion[2] = 0.7, 0.2
    model = load_model(random_model.model_json, backend="onnxruntime", threads=1)
    options = InferenceOptions(
        fps=fps, emotions=((0.0, {"joy": 0.7, "cheekiness": 0.2}),), geometry=True
    )
    result = model.animate([_audio(samples)], options)[0]
    skin_w, tongue_w, jaw, eyes, skin, tongue = _reference_run(random_model, samples, fps, emotion)
    assert result.num_frames == len(skin_w)
    np.testing.assert_allclose(
        result.arrays["skin_geometry"].reshape(len(skin), -1), skin, atol=2e-5
    )
    np.testing.assert_allclose(
        result.arrays["tongue_geometry"].reshape(len(tongue), -1), tongue, atol=2e-5
    )
    np.testing.assert_allclose(result.jaw_transforms, jaw, atol=2e-5)
    np.testing.assert_allclose(result.eye_rotations, eyes, atol=2e-5)
    np.testing.assert_allclose(result.weights, skin_w, atol=1e-5)
    np.testing.assert_allclose(result.tongue_weights, tongue_w, atol=1e-5)
    assert np.abs(result.weights).max() > 0.05  # the comparison is not vacuous


# ----------------------------------------------------------------------------- batching


def test_batch_equals_one_at_a_time_exactly(random_model: GeneratedModel) -> None:
    model = load_model(random_model.model_json, backend="onnxruntime", threads=2)
    rng = np.random.default_rng(2)
    tracks = [_audio(rng.uniform(-0.5, 0.5, n).astype(np.float32), start_s=s)
              for n, s in ((16000, 0.0), (9000, 1.5), (27000, 0.25))]  # fmt: skip
    keys = ((0.5, {"anger": 0.0}), (1.6, {"anger": 1.0}))
    options = InferenceOptions(fps=30, emotions=keys, geometry=True)
    batch = model.animate(tracks, options)
    for track, together in zip(tracks, batch, strict=True):
        alone = model.animate([track], options)[0]
        for name, value in alone.to_arrays().items():
            np.testing.assert_array_equal(together.to_arrays()[name], value, err_msg=name)
        assert together.start_s == track.start_s
    assert [r.num_frames for r in batch] == [30, 17, 51]


def test_frames_per_call_only_changes_float_rounding(random_model: GeneratedModel) -> None:
    model = load_model(random_model.model_json, backend="onnxruntime", threads=1)
    track = _audio(np.random.default_rng(4).uniform(-0.5, 0.5, 12000).astype(np.float32))
    batched = model.animate([track], InferenceOptions(fps=60))[0]
    model.frames_per_call = 1  # the SDK's one inference per frame
    single = model.animate([track], InferenceOptions(fps=60))[0]
    np.testing.assert_allclose(single.weights, batched.weights, atol=1e-5)


def test_geometry_only_on_request_and_same_weights(random_model: GeneratedModel) -> None:
    model = load_model(random_model.model_json, backend="onnxruntime", threads=1)
    track = _audio(np.random.default_rng(5).uniform(-0.5, 0.5, 8000).astype(np.float32))
    plain = model.animate([track], InferenceOptions(fps=30))[0]
    full = model.animate([track], InferenceOptions(fps=30, geometry=True))[0]
    assert plain.arrays == {}
    assert full.arrays["skin_geometry"].shape == (15, 90, 3)
    assert full.arrays["tongue_geometry"].shape == (15, 30, 3)
    np.testing.assert_array_equal(plain.weights, full.weights)


def test_progress_cancel_and_parameter_errors(random_model: GeneratedModel) -> None:
    model = load_model(random_model.model_json, backend="onnxruntime", threads=1)
    model.frames_per_call = 4
    track = _audio(np.zeros(16000, np.float32))
    seen: list[Progress] = []
    model.animate([track], InferenceOptions(fps=30), progress=seen.append)
    fractions = [p.fraction for p in seen]
    assert len(fractions) == 8 and fractions == sorted(fractions) and fractions[-1] == 1.0
    token = CancelToken()

    def cancel_after_two(progress: Progress) -> None:
        if progress.fraction > 0.2:
            token.cancel()

    with pytest.raises(CancelledError):
        model.animate([track], InferenceOptions(fps=30), progress=cancel_after_two, cancel=token)
    with pytest.raises(ParameterError, match="unknown parameter 'strength'"):
        model.animate([track], InferenceOptions(parameters={"strength": 1}))
    with pytest.raises(ParameterError, match="unknown emotion 'happy'"):
        model.animate([track], InferenceOptions(emotions=((0.0, {"happy": 1.0}),)))


def test_animator_api_runs_a_regression_folder(
    random_model: GeneratedModel, tmp_path: Path
) -> None:
    import soundfile as sf

    wav = tmp_path / "line.wav"
    sf.write(wav, np.random.default_rng(6).uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)
    animator = Animator(str(random_model.model_json), InferenceOptions(fps=24, threads=1))
    result = animator.animate(wav)
    assert result.weights.shape == (24, 52) and result.weights.dtype == np.float32
    assert result.audio_path == str(wav) and result.model == "testactor"
