"""Jobs (poll/cancel/result), progress scaling and the generic output shaping."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest

from a2x_core.errors import CancelledError
from a2x_core.jobs import CancelToken, Job, Progress, ProgressScale
from a2x_core.postprocess.shaping import shape_weights, smooth_curves


def _count(progress, cancel: CancelToken, steps: int = 50) -> int:
    for i in range(steps):
        cancel.check()
        progress(Progress((i + 1) / steps, "counting"))
        time.sleep(0.002)
    return steps


def test_job_reports_progress_and_result() -> None:
    job = Job(_count).start()
    seen = []
    while (state := job.poll()) is not None:
        seen.append(state.fraction)
        time.sleep(0.005)
    assert job.result() == 50
    assert seen == sorted(seen)


def test_job_cancel_raises_on_poll() -> None:
    job = Job(lambda p, c: _count(p, c, 10_000)).start()
    job.cancel()
    with pytest.raises(CancelledError):
        job.result(timeout=10)
    with pytest.raises(CancelledError):
        job.poll()


def test_worker_errors_reach_the_poller() -> None:
    def fail(progress, cancel):
        raise ValueError("boom")

    job = Job(fail).start()
    with pytest.raises(ValueError, match="boom"):
        job.result(timeout=5)


def test_progress_scale_maps_into_a_slice() -> None:
    seen: list[Progress] = []
    ProgressScale(seen.append, 0.2, 0.6)(Progress(0.5, "x"))
    assert seen[0].fraction == pytest.approx(0.4) and seen[0].stage == "x"


def test_shaping_is_identity_by_default_and_clips_when_scaled() -> None:
    weights = np.random.default_rng(0).uniform(0, 1, (100, 52)).astype(np.float32)
    assert shape_weights(weights, Fraction(60), 1.0, 0.0) is weights
    louder = shape_weights(weights, Fraction(60), 2.0, 0.0)
    assert louder.max() <= 1.0 and np.allclose(louder, np.minimum(weights * 2, 1))


def test_smoothing_is_zero_phase() -> None:
    """A symmetric pulse stays centred: smoothing must not delay the lips."""
    curve = np.zeros((121, 1), np.float32)
    curve[60] = 1.0
    smooth = smooth_curves(curve, Fraction(60), 0.05)
    assert int(np.argmax(smooth[:, 0])) == 60
    assert smooth[:, 0] == pytest.approx(smooth[::-1, 0], abs=1e-7)
    assert smooth.max() < 0.5
