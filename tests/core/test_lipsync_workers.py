"""Off the main thread (a DCC's background job) pocketsphinx runs only in worker processes,
so that its hold on the GIL never stalls the host's UI thread; results are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from a2x_core.api import Animator
from a2x_core.audio.decode import decode_audio
from a2x_core.lipsync import parallel
from a2x_core.options import InferenceOptions
from tests.conftest import SAMPLE, SAMPLE_TRANSCRIPT


@pytest.fixture
def short_clip():
    return decode_audio(SAMPLE, end_s=4.0)  # shorter than the split length: no split


@pytest.fixture(autouse=True)
def _automatic_mode():
    parallel.decode_in_workers_only(None)
    yield
    parallel.decode_in_workers_only(None)


@pytest.mark.slow
def test_main_thread_decodes_here_and_background_jobs_in_workers(short_clip) -> None:
    assert not parallel.workers_only()
    animator = Animator("default", InferenceOptions(fps=30, blinks=False))
    for transcript in (None, SAMPLE_TRANSCRIPT[:41]):  # "And so my fellow Americans, ask not what"
        parallel.shutdown()
        here = animator.animate(short_clip, transcript=transcript)
        assert parallel._POOL is None  # a short clip on the main thread is decoded here
        options = animator.options.with_changes(transcript=transcript)
        background = animator.start([short_clip], options).result(timeout=120)[0]
        assert parallel._POOL is not None  # the background job used the worker pool
        assert np.array_equal(here.weights, background.weights)


def test_forcing_either_way(short_clip) -> None:
    parallel.decode_in_workers_only(True)
    assert parallel.workers_only()
    parallel.decode_in_workers_only(False)
    job = Animator("default", InferenceOptions(blinks=False)).start([short_clip])
    assert job.result(timeout=120)[0].num_frames == 240
    assert not parallel.workers_only()


def test_cancel_while_aligning_in_a_worker(short_clip) -> None:
    from a2x_core.errors import CancelledError

    parallel.decode_in_workers_only(True)
    animator = Animator("default", InferenceOptions(transcript="ask not what your country"))
    job = animator.start([decode_audio(SAMPLE)])
    job.cancel()
    with pytest.raises(CancelledError):
        job.result(timeout=120)
