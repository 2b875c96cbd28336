"""The blendshape solve against scipy's bounded least squares and the SDK's formulas (spec §4.1)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from a2x_core.blendshapes.cpu import CANCEL_CAP, BlendshapeSolver, BoundedSolver
from a2x_core.models.regression_folder import BlendshapeConfig, BlendshapeData


def _config(num: int, **changes) -> BlendshapeConfig:
    values = dict(
        l1=0.0, l2=0.0, temporal=0.0, symmetry=0.0, template_bb_size=10.0,
        active=np.ones(num, np.int32), cancel=np.full(num, -1, np.int32),
        symmetry_ids=np.full(num, -1, np.int32), multipliers=np.ones(num, np.float32),
        offsets=np.zeros(num, np.float32),
    )  # fmt: skip
    values.update(changes)
    return BlendshapeConfig(**values)


def _data(num: int, num_verts: int = 40, mask: bool = True, seed: int = 0) -> BlendshapeData:
    rng = np.random.default_rng(seed)
    neutral = rng.uniform(-5, 5, size=num_verts * 3).astype(np.float32)
    deltas = rng.normal(0, 1, size=(num, num_verts * 3)).astype(np.float32)
    frontal = np.arange(0, num_verts, 2, dtype=np.int32) if mask else None
    return BlendshapeData(tuple(f"p{i}" for i in range(num)), neutral, deltas, frontal)


@pytest.mark.parametrize("seed", range(8))
def test_bvls_matches_scipy_lsq_linear_on_the_same_bounded_problem(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 52
    a = rng.normal(size=(150, n))
    m = a.T @ a + 0.5 * np.eye(n)  # a regularised normal matrix, as the solver's M
    truth = rng.uniform(-0.6, 1.6, size=n)  # many components outside [0, 1]
    b = m @ truth + rng.normal(scale=0.1, size=n)
    upper = np.ones(n)
    if seed % 2:
        upper[rng.choice(n, 5, replace=False)] = CANCEL_CAP  # cancel-style caps
    x = BoundedSolver(m).solve(b, np.zeros(n), upper)
    ref = lsq_linear(m, b, bounds=(np.zeros(n), upper), method="bvls", tol=1e-12).x
    assert np.all(x >= 0) and np.all(x <= upper)
    np.testing.assert_allclose(x, ref, atol=1e-7)


def test_bvls_interior_solution_is_the_plain_solve() -> None:
    m = np.diag([2.0, 4.0, 5.0])
    x = BoundedSolver(m).solve(np.array([1.0, 2.0, 2.5]), np.zeros(3), np.ones(3))
    np.testing.assert_allclose(x, [0.5, 0.5, 0.5])


def test_bvls_hand_checked_bounds() -> None:
    # diagonal M: each variable independent, minimiser b_i / m_i clamped to [0, 1]
    m = np.diag([1.0, 2.0, 4.0, 1.0])
    x = BoundedSolver(m).solve(np.array([-3.0, 1.0, 8.0, 0.25]), np.zeros(4), np.ones(4))
    np.testing.assert_allclose(x, [0.0, 0.5, 1.0, 0.25])


def test_normal_matrix_and_rhs_follow_the_sdk_formula() -> None:
    num = 6
    data = _data(num)
    config = _config(
        num, l1=0.5, l2=0.7, temporal=0.3, symmetry=100.0, template_bb_size=9.0,
        active=np.array([1, 1, 0, 1, 1, 1], np.int32),
        # pair 1 has inactive pose 2; poses 1 and 5 are the only active ones at -1, which the
        # SDK's getPairs pairs too
        symmetry_ids=np.array([0, -1, 1, 0, 1, -1], np.int32),
    )  # fmt: skip
    solver = BlendshapeSolver(data, config)
    active = np.array([0, 1, 3, 4, 5])
    rows = (np.arange(0, 40, 2)[:, None] * 3 + np.arange(3)).reshape(-1)
    d = data.deltas[active][:, rows].T.astype(np.float64)  # [masked rows, active]
    xyz = data.neutral.reshape(-1, 3)
    s = (np.linalg.norm(xyz.max(0) - xyz.min(0)) / 9.0) ** 2  # from the full, unmasked neutral
    sym = np.zeros((2, 5))
    sym[0, 1], sym[0, 4] = 1, -1  # id -1: poses 1 and 5 (active indices 1, 4)
    sym[1, 0], sym[1, 2] = 1, -1  # poses 0 and 3 (active indices 0, 2); pair 1 is skipped
    expected = (
        d.T @ d + 0.5**2 * 0.25 * s * np.ones((5, 5)) + 0.7 * 10 * s * np.eye(5)
        + 0.3 * 100 * s * np.eye(5) + 100.0 * 10 * s * sym.T @ sym
    )  # fmt: skip
    assert solver.scale == pytest.approx(s, rel=1e-6)
    np.testing.assert_allclose(solver.matrix, expected, rtol=1e-6)
    # b = D^T (target - n) + T * s * prev (s, not 100 s); two frames to exercise prev
    rng = np.random.default_rng(1)
    prev = np.zeros(5)
    for _ in range(2):
        target = data.neutral + data.deltas.T @ rng.uniform(0, 1, num).astype(np.float32)
        b = d.T @ (target[rows] - data.neutral[rows]) + 0.3 * s * prev
        ref = lsq_linear(expected, b, bounds=(0, 1), method="bvls", tol=1e-12).x
        got = solver.solve(target[None])[0]
        np.testing.assert_allclose(got[active], ref, atol=2e-6)
        assert got[2] == 0.0  # inactive
        prev = ref
    solver.reset()
    np.testing.assert_array_equal(solver.prev, np.zeros(5))


def test_recovers_known_weights_without_regularisation() -> None:
    num = 10
    data = _data(num, num_verts=60, mask=False)
    weights = np.linspace(0.05, 0.95, num).astype(np.float32)
    target = data.neutral + weights @ data.deltas
    got = BlendshapeSolver(data, _config(num)).solve(target[None])[0]
    np.testing.assert_allclose(got, weights, atol=1e-5)


def test_cancel_pair_caps_the_smaller_weight() -> None:
    num = 5
    data = _data(num, num_verts=30, mask=False)
    weights = np.array([0.6, 0.3, 0.2, 0.0, 0.5], np.float32)
    target = data.neutral + weights @ data.deltas
    config = _config(num, cancel=np.array([0, 0, -1, -1, -1], np.int32))
    got = BlendshapeSolver(data, config).solve(target[None])[0]
    assert got[1] == np.float32(CANCEL_CAP)  # the smaller of the pair sits at its cap
    solver = BlendshapeSolver(data, config)
    b = solver.project(target[None])[0]
    upper = np.array([1, CANCEL_CAP, 1, 1, 1])
    ref = lsq_linear(solver.matrix, b, bounds=(np.zeros(num), upper), method="bvls", tol=1e-12).x
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_multipliers_and_offsets_apply_to_every_pose_unclipped() -> None:
    num = 4
    data = _data(num, mask=False)
    weights = np.array([0.5, 0.8, 0.25, 0.4], np.float32)
    target = data.neutral + weights @ data.deltas
    config = _config(
        num, active=np.array([1, 1, 0, 1], np.int32),
        multipliers=np.array([3.0, 1.0, 5.0, 1.0], np.float32),
        offsets=np.array([0.0, 0.5, 0.2, -0.1], np.float32),
    )  # fmt: skip
    got = BlendshapeSolver(data, config).solve(target[None])[0]
    assert got[0] > 1.0  # 3 x w, not clipped
    assert got[2] == np.float32(0.2)  # inactive: 0 * 5 + offset
    free = BlendshapeSolver(data, _config(num, active=np.array([1, 1, 0, 1], np.int32))).solve(
        target[None]
    )[0]
    np.testing.assert_allclose(
        got[[0, 1, 3]], free[[0, 1, 3]] * [3, 1, 1] + [0, 0.5, -0.1], rtol=1e-6
    )


def test_pairs_with_an_inactive_member_are_skipped() -> None:
    config = _config(
        4, active=np.array([1, 0, 1, 1], np.int32), cancel=np.array([0, 0, 1, 1], np.int32)
    )
    solver = BlendshapeSolver(_data(4), config)
    assert solver.cancel_pairs == [(1, 2)]  # active-space indices of poses 2 and 3


def test_two_active_poses_at_minus_one_pair_as_the_sdk_getpairs_does() -> None:
    """SDK audit §3: ids [-1, 3, 3, -1, 5, 5] with pose 4 inactive -> the SDK pairs (0, 3) and
    (1, 2): -1 is grouped like any id, and id 5 has one active member left."""
    ids = np.array([-1, 3, 3, -1, 5, 5], np.int32)
    active = np.array([1, 1, 1, 1, 0, 1], np.int32)
    solver = BlendshapeSolver(_data(6), _config(6, active=active, cancel=ids, symmetry_ids=ids,
                                                symmetry=1.0))  # fmt: skip
    assert solver.cancel_pairs == [(0, 3), (1, 2)]
    # the symmetry term couples the -1 pair in M: M[0, 3] carries -Sym * 10 s
    plain = BlendshapeSolver(_data(6), _config(6, active=active, cancel=ids))
    coupling = solver.matrix - plain.matrix
    assert coupling[0, 3] == pytest.approx(-10.0 * solver.scale)
    assert coupling[1, 2] == pytest.approx(-10.0 * solver.scale)
    assert coupling[0, 1] == 0.0 and coupling[3, 4] == 0.0


def test_more_than_two_poses_at_minus_one_are_no_pair() -> None:
    ids = np.array([-1, -1, -1, 0, 0], np.int32)
    solver = BlendshapeSolver(_data(5), _config(5, cancel=ids, symmetry_ids=ids, symmetry=1.0))
    assert solver.cancel_pairs == [(3, 4)]
    # one inactive -1 pose leaves two: now they pair
    active = np.array([1, 0, 1, 1, 1], np.int32)
    solver = BlendshapeSolver(_data(5), _config(5, active=active, cancel=ids))
    assert solver.cancel_pairs == [(0, 1), (2, 3)]


def test_the_minus_one_pair_is_cancelled_in_a_solve() -> None:
    """Both -1 poses active in the target: the cancel pass keeps the larger and caps the other,
    which a solve without the pair (ids 0..4 distinct) leaves free."""
    num = 5
    data = _data(num, num_verts=30, mask=False)
    weights = np.array([0.2, 0.7, 0.4, 0.0, 0.5], np.float32)
    target = data.neutral + weights @ data.deltas
    paired = _config(num, cancel=np.array([-1, -1, 0, 1, 2], np.int32))
    got = BlendshapeSolver(data, paired).solve(target[None])[0]
    assert got[0] == np.float32(CANCEL_CAP) and got[1] > 0.5
    unpaired = _config(num, cancel=np.array([3, 4, 0, 1, 2], np.int32))
    free = BlendshapeSolver(data, unpaired).solve(target[None])[0]
    np.testing.assert_allclose(free, weights, atol=1e-5)
