"""Post-processing stages against their formulas and hand-checked values (SDK spec §4)."""

from __future__ import annotations

import numpy as np
import pytest

from a2x_core.postprocess.cpu import (
    EyesAnimator,
    SkinAnimator,
    face_mask,
    frame_dt,
    jaw_flat_column_major,
    jaw_transforms,
    kabsch,
    pca_decode,
    smoothing_alpha,
    tongue_geometry,
)

BASE = {
    "face_mask_level": 0.6, "face_mask_softness": 0.0085, "skin_strength": 1.0,
    "blink_strength": 1.0, "eyelid_open_offset": 0.0, "lip_open_offset": 0.0,
    "lower_face_strength": 1.0, "upper_face_strength": 1.0,
    "lower_face_smoothing": 0.0, "upper_face_smoothing": 0.0,
}  # fmt: skip


def _neutral(num_verts: int = 11) -> np.ndarray:
    verts = np.zeros((num_verts, 3), np.float32)
    verts[:, 1] = np.linspace(0.0, 10.0, num_verts)
    return verts


def test_dt_and_alpha_follow_the_sdk_formula() -> None:
    assert frame_dt(60, 1) == np.float32(1.0 / 60.0)
    assert frame_dt(30000, 1001) == np.float32(np.float32(1001) / np.float32(30000))
    # alpha = 1 - 0.5^(dt / smoothing): a smoothing equal to dt halves the gap each frame
    assert smoothing_alpha(np.float32(0.02), 0.02) == pytest.approx(0.5, abs=1e-7)
    assert smoothing_alpha(frame_dt(60, 1), 0.0023) == pytest.approx(
        1 - 0.5 ** ((1 / 60) / 0.0023), rel=1e-6
    )
    assert smoothing_alpha(frame_dt(60, 1), 0.0) == -1  # off


def test_cascaded_filters_match_their_closed_form() -> None:
    """A step from d0 (seed frame) to d1: s1_n = d1 + (d0-d1)(1-a)^n and
    s2_n = d1 + (d0-d1)(1-a)^n (1 + n a) -- the second of two cascaded one-pole filters."""
    dt = frame_dt(30, 1)
    params = {**BASE, "lower_face_smoothing": 0.05, "upper_face_smoothing": 0.05,
              "face_mask_level": 1.0, "face_mask_softness": 0.001}  # fmt: skip
    neutral = _neutral()
    skin = SkinAnimator(params, neutral, np.zeros_like(neutral), np.zeros_like(neutral), dt)
    d0, d1 = 2.0, -1.0
    deltas = np.full((12, neutral.size), d1, np.float32)
    deltas[0] = d0
    out = skin.animate(deltas) - neutral.reshape(-1)
    alpha = float(smoothing_alpha(dt, 0.05))
    n = np.arange(12)
    expected = d1 + (d0 - d1) * (1 - alpha) ** n * (1 + n * alpha)
    np.testing.assert_allclose(out[:, 0], expected, rtol=0, atol=2e-6)
    # state carries across calls; reset() seeds again from the next frame
    more = skin.animate(np.full((1, neutral.size), d1, np.float32)) - neutral.reshape(-1)
    assert more[0, 0] == pytest.approx(
        d1 + (d0 - d1) * (1 - alpha) ** 12 * (1 + 12 * alpha), abs=2e-6
    )
    skin.reset()
    assert (skin.animate(deltas[:1]) - neutral.reshape(-1))[0, 0] == pytest.approx(d0)


def test_face_mask_formula_and_regions() -> None:
    neutral = _neutral(11)  # y' = 0, 0.1, ..., 1
    mask = face_mask(neutral, 0.6, 0.1)
    y = np.linspace(0, 1, 11)
    np.testing.assert_allclose(mask, 1 / (1 + np.exp(-(0.6 - y) / 0.1)), rtol=1e-6)
    assert mask[6] == pytest.approx(0.5)  # at the level
    # region strengths: out = neutral + d * upper * (1 - m) + d * lower * m (no smoothing)
    params = {
        **BASE,
        "face_mask_softness": 0.1,
        "lower_face_strength": 2.0,
        "upper_face_strength": 0.5,
    }
    skin = SkinAnimator(
        params, neutral, np.zeros_like(neutral), np.zeros_like(neutral), frame_dt(60, 1)
    )
    out = skin.animate(np.ones((1, neutral.size), np.float32))[0].reshape(-1, 3)
    np.testing.assert_allclose(out[:, 0], 0.5 * (1 - mask) + 2.0 * mask, rtol=1e-6)


def test_skin_offsets_and_strength_per_element() -> None:
    rng = np.random.default_rng(0)
    neutral = _neutral(7)
    eye, lip = rng.normal(size=(2, 7, 3)).astype(np.float32)
    params = {**BASE, "skin_strength": 1.1, "eyelid_open_offset": 0.06, "lip_open_offset": -0.03,
              "face_mask_softness": 0.2}  # fmt: skip
    skin = SkinAnimator(params, neutral, eye, lip, frame_dt(60, 1))
    delta = rng.normal(size=(1, 21)).astype(np.float32)
    m = np.repeat(face_mask(neutral, 0.6, 0.2), 3)
    d = 1.1 * delta[0] + eye.reshape(-1) * -0.06 + lip.reshape(-1) * -0.03
    expected = neutral.reshape(-1) + d * (1 - m) + d * m
    np.testing.assert_allclose(skin.animate(delta)[0], expected, rtol=1e-5, atol=1e-6)
    # a column subset computes the same values for those columns
    cols = np.array([0, 1, 2, 9, 10, 11])
    part = SkinAnimator(params, neutral, eye, lip, frame_dt(60, 1), cols)
    np.testing.assert_array_equal(
        part.animate(delta[:, cols])[0], skin_full(params, neutral, eye, lip, delta)[0, cols]
    )


def skin_full(params, neutral, eye, lip, delta):  # noqa: ANN001, ANN201
    return SkinAnimator(params, neutral, eye, lip, frame_dt(60, 1)).animate(delta)


def test_pca_decode_has_no_mean_term() -> None:
    basis = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(
        pca_decode(np.array([[1.0, 2.0]]), basis), [[12, 15, 18, 21, 24, 27]]
    )


def test_tongue_strength_then_height_and_depth_offsets() -> None:
    neutral = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], np.float32)
    delta = np.array([[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]], np.float32)
    out = tongue_geometry(delta, neutral, 1.5, 0.2, -0.3)
    np.testing.assert_allclose(out, [[1.5, 2.7, 3.2, 6.0, 7.2, 7.7]], rtol=1e-6)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_kabsch_recovers_a_known_rotation_and_translation() -> None:
    rng = np.random.default_rng(5)
    src = rng.normal(size=(5, 3))
    rot = _rotation(np.array([0.3, -1.0, 0.2]), np.deg2rad(25.0))
    t = np.array([0.5, -2.0, 1.0])
    r_fit, t_fit = kabsch(src, (src @ rot.T + t)[None])
    np.testing.assert_allclose(r_fit[0], rot, atol=1e-12)
    np.testing.assert_allclose(t_fit[0], t, atol=1e-12)
    assert np.linalg.det(r_fit[0]) == pytest.approx(1.0)
    # a mirrored target still yields a proper rotation (the det(V U^T) correction)
    mirrored = src * np.array([1.0, 1.0, -1.0])
    r_m, _ = kabsch(src, mirrored[None])
    assert np.linalg.det(r_m[0]) == pytest.approx(1.0)


def test_jaw_transform_from_keypoint_deltas_and_offsets() -> None:
    rng = np.random.default_rng(6)
    neutral = rng.normal(size=(5, 3)).astype(np.float32)
    rot = _rotation(np.array([1.0, 0.0, 0.0]), np.deg2rad(12.0))
    t = np.array([0.0, -0.4, 0.3])
    strength = 1.3
    moved = neutral @ rot.T + t
    deltas = ((moved - neutral) / strength).reshape(1, 15)
    # offsets become translation: height 0.2 (y) and depth -0.1 (z); x is never offset
    mats = jaw_transforms(deltas, neutral, strength, 0.2, -0.1)
    np.testing.assert_allclose(mats[0, :3, :3], rot, atol=1e-5)
    np.testing.assert_allclose(mats[0, :3, 3], t + [0.0, 0.2, -0.1], atol=1e-5)
    np.testing.assert_array_equal(mats[0, 3], [0, 0, 0, 1])
    flat = jaw_flat_column_major(mats)[0]  # the SDK's 16 floats
    np.testing.assert_array_equal(flat[12:15], mats[0, :3, 3])
    np.testing.assert_array_equal(flat[[0, 1, 2]], mats[0, :3, 0])
    np.testing.assert_array_equal(flat[[3, 7, 11, 15]], [0, 0, 0, 1])


EYES = {
    "eyeballs_strength": 1.0, "saccade_strength": 0.9, "right_eye_rot_x_offset": 0.0,
    "right_eye_rot_y_offset": -2.0, "left_eye_rot_x_offset": 0.5, "left_eye_rot_y_offset": 2.0,
    "eye_saccade_seed": 0,
}  # fmt: skip


def test_eyes_formula_and_saccade_clock_at_60_fps() -> None:
    table = np.arange(20, dtype=np.float32).reshape(10, 2)  # row k = (2k, 2k+1)
    eyes = EyesAnimator(EYES, table, frame_dt(60, 1))
    net = np.tile(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32), (5, 1))
    out = eyes.animate(net)
    rows = [0, 0, 1, 1, 2]  # the 30 fps table advances half a row per 60 fps frame
    for i, k in enumerate(rows):
        s0, s1 = 2 * k, 2 * k + 1
        expected = [0 + 1 + 0.9 * s0, -2 + 2 + 0.9 * s1, 0, 0.5 + 3 + 0.9 * s0, 2 + 4 + 0.9 * s1, 0]
        np.testing.assert_allclose(out[i], expected, rtol=1e-6)


def test_saccade_seed_wraps_around_the_table() -> None:
    table = np.arange(20, dtype=np.float32).reshape(10, 2)
    eyes = EyesAnimator({**EYES, "eye_saccade_seed": 9, "eyeballs_strength": 0.0,
                         "saccade_strength": 1.0}, table, frame_dt(30, 1))  # fmt: skip
    out = eyes.animate(np.zeros((4, 4), np.float32))
    assert out[:, 0].tolist() == [18.0, 0.0, 2.0, 4.0]  # rows 9, 0, 1, 2
    eyes.reset()
    assert eyes.animate(np.zeros((1, 4), np.float32))[0, 0] == 18.0


def _random_solver(rng: np.random.Generator, num_verts: int, poses: int, masked: bool) -> object:
    from a2x_core.blendshapes.cpu import BlendshapeSolver
    from a2x_core.models.regression_folder import BlendshapeConfig, BlendshapeData

    neutral = rng.normal(size=3 * num_verts).astype(np.float32)
    deltas = rng.normal(0, 0.2, size=(poses, 3 * num_verts)).astype(np.float32)
    mask = np.sort(rng.choice(num_verts, num_verts // 2, replace=False)).astype(np.int32)
    active = (rng.random(poses) > 0.2).astype(np.int32)
    config = BlendshapeConfig(
        l1=0.1, l2=0.2, temporal=0.3, symmetry=0.0, template_bb_size=10.0, active=active,
        cancel=np.full(poses, -1, np.int32), symmetry_ids=np.full(poses, -1, np.int32),
        multipliers=np.ones(poses, np.float32), offsets=np.zeros(poses, np.float32),
    )  # fmt: skip
    data = BlendshapeData(tuple(f"p{i}" for i in range(poses)), neutral, deltas,
                          mask if masked else None)  # fmt: skip
    return BlendshapeSolver(data, config)


@pytest.mark.parametrize("smoothing", [0.0, 0.02])
@pytest.mark.parametrize("geometry", [False, True])
def test_folded_projection_equals_the_unfolded_stages(smoothing: float, geometry: bool) -> None:
    """The solves' projections folded from PCA coefficients equal decode -> correctives ->
    both filter cascades -> mask blend -> strengths -> ``D^T (target - neutral)`` (skin) and
    decode -> tongue offsets -> projection, frame by frame across calls, after a reset too."""
    from a2x_core.postprocess.cpu import FoldedProjection

    rng = np.random.default_rng(7)
    verts, t_verts, shapes, t_shapes = 40, 12, 9, 4
    params = {**BASE, "skin_strength": 1.2, "eyelid_open_offset": 0.05, "lip_open_offset": -0.02,
              "face_mask_softness": 0.1, "lower_face_strength": 1.3, "upper_face_strength": 0.7,
              "lower_face_smoothing": smoothing, "upper_face_smoothing": smoothing * 2,
              "tongue_strength": 1.4, "tongue_height_offset": 0.1,
              "tongue_depth_offset": -0.2}  # fmt: skip
    neutral = rng.normal(size=(verts, 3)).astype(np.float32)
    eye, lip = rng.normal(0, 0.1, size=(2, verts, 3)).astype(np.float32)
    skin_solver = _random_solver(rng, verts, 6, masked=True)
    tongue_solver = _random_solver(rng, t_verts, 5, masked=False)
    basis = rng.normal(0, 0.3, size=(shapes, 3 * verts)).astype(np.float32)
    t_basis = rng.normal(0, 0.3, size=(t_shapes, 3 * t_verts)).astype(np.float32)
    t_neutral = rng.normal(size=3 * t_verts).astype(np.float32)
    cols = skin_solver.mask_columns
    dt = frame_dt(30, 1)
    reference = SkinAnimator(params, neutral, eye, lip, dt)  # full, unfolded
    prepared = SkinAnimator(params, neutral, eye, lip, dt, None if geometry else cols)
    folded = FoldedProjection(prepared, cols if geometry else None, basis[:, cols], skin_solver,
                              t_basis, t_neutral, params, tongue_solver)  # fmt: skip
    coeffs = rng.normal(size=(11, shapes)).astype(np.float32)
    t_coeffs = rng.normal(size=(11, t_shapes)).astype(np.float32)
    for part in (slice(0, 1), slice(1, 7), slice(7, 11), "reset", slice(0, 3)):
        if part == "reset":
            folded.reset()
            reference.reset()
            continue
        skin_atb, tongue_atb = folded.project(coeffs[part], t_coeffs[part])
        skin = reference.animate(pca_decode(coeffs[part], basis))
        tongue = tongue_geometry(pca_decode(t_coeffs[part], t_basis), t_neutral, 1.4, 0.1, -0.2)
        scale = np.abs(skin_atb).max()
        np.testing.assert_allclose(skin_atb, skin_solver.project(skin), atol=2e-6 * scale)
        np.testing.assert_allclose(tongue_atb, tongue_solver.project(tongue),
                                   atol=2e-6 * np.abs(tongue_atb).max())  # fmt: skip
