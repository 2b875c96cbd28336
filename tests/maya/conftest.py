"""Maya-tier fixtures: the plug-in's scripts on sys.path, a fake runner and test audio."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "plugins" / "maya" / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from a2x_core.names import TONGUE_16  # noqa: E402
from a2x_core.result import AnimationResult  # noqa: E402


def make_result(frames: int = 30, fps: Fraction = Fraction(30), tongue: bool = False,
                start_s: float = 0.0, emotions: bool = False) -> AnimationResult:  # fmt: skip
    """Weights known in closed form: pose ``j`` at frame ``i`` = ``(i + j) / 100``; with
    ``emotions``, emotion ``e`` (Audio2Face order) = ``(i + e) / 1000`` and detected = half."""
    i = np.arange(frames, dtype=np.float32)[:, None]
    weights = (i + np.arange(52, dtype=np.float32)[None, :]) / 100.0
    result = AnimationResult(weights=weights, fps=fps, start_s=start_s, duration_s=frames / float(fps))
    if tongue:
        result.tongue_weights = np.full((frames, 16), 0.5, dtype=np.float32)
        result.tongue_names = TONGUE_16
    if emotions:
        from a2x_core.models.emotion_input import A2F_EMOTIONS

        result.emotions = (i + np.arange(10, dtype=np.float32)[None, :]) / 1000.0
        result.detected_emotions = result.emotions / 2
        result.emotion_names = A2F_EMOTIONS
    return result


class FakeRunner:
    """Stands in for :func:`a2x_maya.engine.run_inference`: counts calls, returns
    :func:`make_result` (optionally failing or blocking until released)."""

    def __init__(self, frames: int = 30, fps: Fraction = Fraction(30), error: Exception | None = None,
                 emotions: bool = False) -> None:  # fmt: skip
        self.calls: list = []
        self.frames, self.fps, self.error, self.emotions = frames, fps, error, emotions

    def __call__(self, inputs, progress, cancel):  # noqa: ANN001, ANN204
        self.calls.append(inputs)
        from a2x_core.jobs import Progress

        progress(Progress(0.5, "inferring"))
        cancel.check()
        if self.error is not None:
            raise self.error
        result = make_result(self.frames, self.fps, start_s=inputs.start_s, emotions=self.emotions)
        if getattr(self, "head", False):  # head rotation i/1000, 2i/1000, -i/1000 radians
            i = np.arange(self.frames, dtype=np.float32)[:, None]
            result.head_rotations = i * np.array([1.0, 2.0, -1.0], np.float32) / 1000.0
        return result


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    """One second of quiet noise as a 16 kHz WAV."""
    import soundfile

    path = tmp_path / "line.wav"
    rng = np.random.default_rng(0)
    soundfile.write(path, (rng.standard_normal(16000) * 0.01).astype(np.float32), 16000)
    return path


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> FakeRunner:
    """Every new PlayerEngine uses a FakeRunner."""
    import a2x_maya.engine as engine

    fake = FakeRunner()
    monkeypatch.setattr(engine, "run_inference", fake)
    return fake


