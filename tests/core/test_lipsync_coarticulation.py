"""Coarticulation: real closures, continuous curves, anticipation, rest in silence."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from a2x_core.lipsync.coarticulation import apply_critical, blend
from a2x_core.lipsync.phones import SILENCE, Phone
from a2x_core.lipsync.visemes import load_table, viseme_track
from a2x_core.names import ARKIT_52
from a2x_core.timing import frame_times_s

C = {name: i for i, name in enumerate(ARKIT_52)}


def curves(phones: list[Phone], fps: int = 60) -> tuple[np.ndarray, np.ndarray]:
    table = load_table()
    times = frame_times_s(int(phones[-1].end_s * fps), Fraction(fps))
    track = viseme_track(phones, table)
    weights, _ = blend(times, track, table)
    apply_critical(weights, times, track, table)
    return times, weights


def sequence(*spec: tuple[str, float]) -> list[Phone]:
    phones, t = [], 0.0
    for label, duration in spec:
        phones.append(Phone(label, t, t + duration))
        t += duration
    return phones


def test_isolated_m_closes_the_lips_fully_and_smoothly() -> None:
    phones = sequence((SILENCE, 0.3), ("AA", 0.15), ("M", 0.08), ("AA", 0.15), (SILENCE, 0.3))
    times, w = curves(phones)
    inside = (times >= 0.45) & (times < 0.53)
    target = load_table().targets[load_table().index("bilabial")]
    press = w[:, C["mouthPressLeft"]]
    assert press[inside].max() >= 0.95 * target[C["mouthPressLeft"]]
    assert (w[inside, C["jawOpen"]] - w[inside, C["mouthClose"]] <= 0.01).all()
    # Not a step: the closure builds up over several frames and the jaw moves continuously.
    assert np.abs(np.diff(press)).max() < 0.5 * target[C["mouthPressLeft"]]
    assert np.abs(np.diff(w[:, C["jawOpen"]])).max() < 0.2
    assert ((press > 0.05) & (press < 0.5)).sum() >= 3


def test_vowels_open_the_jaw_and_silence_rests() -> None:
    phones = sequence((SILENCE, 0.5), ("AA", 0.2), (SILENCE, 0.5))
    times, w = curves(phones)
    assert w[(times > 0.55) & (times < 0.65), C["jawOpen"]].max() > 0.4
    rest = (times < 0.3) | (times > 0.95)
    assert np.abs(w[rest]).max() < 0.02


def test_rounding_is_anticipated_across_consonants() -> None:
    # "s t r uw": the lips round during the consonants before the vowel.
    phones = sequence((SILENCE, 0.3), ("S", 0.08), ("T", 0.05), ("UW", 0.2), (SILENCE, 0.3))
    times, w = curves(phones)
    pucker = w[:, C["mouthPucker"]]
    during_t = pucker[(times >= 0.38) & (times < 0.43)].mean()
    assert during_t > 0.2
    assert pucker[(times >= 0.45) & (times < 0.6)].max() > 0.55


def test_labiodental_and_dental_shapes() -> None:
    phones = sequence(
        (SILENCE, 0.3), ("AE", 0.12), ("F", 0.09), ("IY", 0.12), ("TH", 0.09), (SILENCE, 0.3)
    )
    times, w = curves(phones)
    f = (times >= 0.42) & (times < 0.51)
    assert w[f, C["mouthRollLower"]].max() > 0.5 and w[f, C["jawOpen"]].max() < 0.2
    th = (times >= 0.63) & (times < 0.72)
    assert w[th, C["tongueOut"]].max() > 0.5


def test_short_closures_show_at_low_frame_rates() -> None:
    phones = sequence((SILENCE, 0.3), ("AA", 0.12), ("P", 0.03), ("AA", 0.12), (SILENCE, 0.3))
    times, w = curves(phones, fps=24)
    assert w[:, C["mouthPressLeft"]].max() > 0.5
