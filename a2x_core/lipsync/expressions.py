"""Signals beyond the phones: loudness (jaw amplitude), pitch (brow accents) and blinks.

Everything here works on a 100 Hz analysis grid (``HOP`` samples at 16 kHz) and is sampled at
the output frame times by linear interpolation, so results do not depend on the frame rate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..timing import SAMPLE_RATE
from .phones import Phone

HOP = SAMPLE_RATE // 100
ANALYSIS_S = HOP / SAMPLE_RATE


#: Analysis frames computed at a time: bounds the features' memory on clips of any length
#: (a whole hour at once took gigabytes). Small blocks (F0: 512 x 1280 complex values, ~5 MB)
#: reuse the same memory block after block; 4096 touched ~60 MB of fresh pages, whose faults
#: cost more than the FFTs on a loaded machine (the same values either way: frames are
#: independent).
_BLOCK_HOPS = 512


def _padded(samples: np.ndarray, size: int) -> np.ndarray:
    """The samples zero-padded so that a ``size`` frame centred on every hop fits."""
    return np.pad(samples.astype(np.float32, copy=False), (size // 2, size))


def _hop_count(samples: np.ndarray) -> int:
    return max(1, int(np.ceil(len(samples) / HOP)))


def _frames(padded: np.ndarray, size: int, hops: np.ndarray) -> np.ndarray:
    """``[len(hops), size]`` analysis frames centred on ``hops`` (of :func:`_padded` samples)."""
    return padded[hops[:, None] * HOP + np.arange(size)[None, :]]


def _blocks(hops: np.ndarray) -> list[np.ndarray]:
    return [hops[k : k + _BLOCK_HOPS] for k in range(0, len(hops), _BLOCK_HOPS)]


def loudness_db(samples: np.ndarray) -> np.ndarray:
    """Short-time level in dBFS on the 100 Hz grid (25 ms Hann windows)."""
    padded = _padded(samples, 400)
    window = np.hanning(400).astype(np.float32)
    out = np.empty(_hop_count(samples))
    for hops in _blocks(np.arange(len(out))):
        out[hops] = _power_of_frames(_frames(padded, 400, hops) * window)
    return 10.0 * np.log10(out + 1e-12)


def _power_of_frames(windowed: np.ndarray) -> np.ndarray:
    return np.mean(windowed.astype(np.float64) ** 2, axis=1) / 0.375


#: Analysis frame lengths (samples, centred on their hop) of loudness, openness and F0.
LEVEL_SIZE, OPENNESS_SIZE, F0_SIZE = 400, 512, 640


def level_db_of_frames(frames: np.ndarray) -> np.ndarray:
    """:func:`loudness_db` of ``[n, 400]`` analysis frames (for a stream's hops)."""
    return 10.0 * np.log10(_power_of_frames(frames * np.hanning(400).astype(np.float32)) + 1e-12)


def openness_of_frames(frames: np.ndarray) -> np.ndarray:
    """:func:`openness` of ``[n, 512]`` analysis frames (for a stream's hops)."""
    window = np.hanning(512).astype(np.float32)
    freqs = np.fft.rfftfreq(512, 1.0 / SAMPLE_RATE)
    band = (freqs >= 250) & (freqs <= 1100)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    centroid = (power[:, band] @ freqs[band]) / np.maximum(power[:, band].sum(axis=1), 1e-12)
    return np.clip((centroid - 350.0) / 400.0, 0.0, 1.0)


def f0_of_frames(frames: np.ndarray) -> np.ndarray:
    """F0 before the median filter of ``[n, 640]`` analysis frames (for a stream's hops)."""
    return _f0_of_frames(frames)


def normalised_loudness(db: np.ndarray, range_db: float = 30.0) -> np.ndarray:
    """Loudness in [0, 1]: 1 at the clip's speech peak level (98th percentile), 0 at
    ``range_db`` below it, so that quiet and loud recordings open the jaw alike."""
    if len(db) == 0:
        return db
    peak = float(np.percentile(db, 98))
    if peak < -70.0:  # silent clip
        return np.zeros_like(db)
    return np.clip((db - (peak - range_db)) / range_db, 0.0, 1.0)


def openness(samples: np.ndarray, level: np.ndarray | None = None) -> np.ndarray:
    """Acoustic mouth openness in [0, 1] on the 100 Hz grid, from the first formant.

    F1 rises with jaw opening (about 300 Hz for /i u/, 700-800 Hz for /a/); the power-weighted
    mean frequency of the 250-1100 Hz band follows F1 without formant tracking. It does not
    depend on recognising the right phones, which makes the jaw robust to recognition errors.
    With ``level`` (normalised loudness), frames quieter than 0.2 are skipped (left at 0).
    """
    count = _hop_count(samples)
    out = np.zeros(count)
    selected = np.arange(count) if level is None else np.flatnonzero(level[:count] > 0.2)
    if len(selected) == 0:
        return out
    padded = _padded(samples, 512)
    for hops in _blocks(selected):
        out[hops] = openness_of_frames(_frames(padded, 512, hops))
    return out


def _f0_of_frames(frames: np.ndarray) -> np.ndarray:
    """F0 in Hz of each 640-sample frame, 0 where unvoiced (see :func:`pitch_hz`)."""
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames, 1280, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :320]
    energy = acf[:, :1]
    nacf = acf / np.maximum(energy, 1e-9) * (640 / (640 - np.arange(320)))[None, :]
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    band = nacf[:, lo:hi]
    best = band.max(axis=1)
    first = np.argmax(band >= 0.9 * best[:, None], axis=1) + lo
    # Climb to the top of the chosen peak, then refine between samples (parabola).
    rows = np.arange(len(first))[:, None]
    near = np.clip(first[:, None] + np.arange(-6, 7)[None, :], 1, 318)
    lag = near[rows[:, 0], np.argmax(nacf[rows, near], axis=1)]
    left, mid, right = (nacf[rows[:, 0], lag + k] for k in (-1, 0, 1))
    curvature = left - 2 * mid + right
    shift = np.where(curvature < 0, 0.5 * (left - right) / np.minimum(curvature, -1e-9), 0.0)
    period = lag + np.clip(shift, -0.5, 0.5)
    return np.where(best > 0.55, SAMPLE_RATE / period, 0.0)


def pitch_hz(samples: np.ndarray, level: np.ndarray) -> np.ndarray:
    """F0 in Hz on the 100 Hz grid (0 where unvoiced), by normalised autocorrelation.

    Search range 60-400 Hz; the peak at the shortest lag within 90 % of the best one wins
    (prevents sub-octave errors), refined by a parabola; a 5-point median removes isolated
    octave jumps.
    """
    f0 = np.zeros(len(level))
    # Only loud frames can be voiced; skipping the rest halves the work on typical speech.
    selected = np.flatnonzero(level > 0.35)
    if len(selected) == 0:
        return f0
    padded = _padded(samples, 640)
    for hops in _blocks(selected):
        f0[hops] = _f0_of_frames(_frames(padded, 640, hops))
    voiced = f0 > 0
    padded_f0 = np.pad(f0, 2, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded_f0, 5)
    med = np.median(windows, axis=1)
    return np.where(voiced, med, 0.0)


def moving_mean(signal: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of the same length as ``signal`` (any length, even < width)."""
    full = np.convolve(signal, np.ones(width) / width, mode="full")
    start = (width - 1) // 2
    return full[start : start + len(signal)]


def at_times(signal: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """Sample a 100 Hz signal at arbitrary times (linear interpolation)."""
    grid = np.arange(len(signal)) * ANALYSIS_S
    return np.interp(times_s, grid, signal).astype(np.float32)


# --- blinks ---------------------------------------------------------------------------------


#: One blink: (onset_s, close_s, hold_s, open_s, depth).
Blink = tuple[float, float, float, float, float]


@dataclass(frozen=True)
class BlinkStyle:
    """Blink statistics (Doughty 2001; Bentivoglio 1997: ~17 blinks/min in conversation).

    Attributes:
        mean_interval_s: mean time between blink onsets (3.6 s → ~16.7 per minute).
        shape: gamma shape of the intervals (>1: fewer very short gaps than a Poisson process).
        min_interval_s: no blink starts sooner than this after the previous one.
        double_p: chance that a blink is followed by a second one (a "double blink").
        close_s, hold_s, open_s: (low, high) ranges of the phases; totals 160-240 ms.
    """

    mean_interval_s: float = 3.6
    shape: float = 2.5
    min_interval_s: float = 0.8
    double_p: float = 0.12
    close_s: tuple[float, float] = (0.06, 0.08)
    hold_s: tuple[float, float] = (0.01, 0.03)
    open_s: tuple[float, float] = (0.09, 0.13)


def blink_onsets(duration_s: float, seed: int, style: BlinkStyle = BlinkStyle()) -> list[Blink]:
    """Blink events ``(onset_s, close_s, hold_s, open_s, depth)``, repeatable per seed."""
    return list(itertools.takewhile(lambda e: e[0] < duration_s, blink_events(seed, style)))


def blink_events(seed: int, style: BlinkStyle = BlinkStyle()) -> Iterator[Blink]:
    """The endless blink sequence of ``seed`` in onset order (a stream draws from it as it
    goes; :func:`blink_onsets` cuts it at a clip's end, with the same events)."""
    rng = np.random.default_rng([seed, 0xB11])
    t = float(rng.uniform(0.3, style.mean_interval_s))
    scale = style.mean_interval_s / style.shape
    while True:
        close, hold, opening = (
            float(rng.uniform(*r)) for r in (style.close_s, style.hold_s, style.open_s)
        )
        depth = float(rng.uniform(0.9, 1.0))
        yield (t, close, hold, opening, depth)
        if rng.random() < style.double_p:
            # A double blink that would start past a clip's end is cut there by blink_onsets;
            # the next single blink starts after it (min_interval_s) so it is past the end too.
            t = t + close + hold + opening + float(rng.uniform(0.05, 0.12))
            yield (t, close, hold, opening, depth * float(rng.uniform(0.8, 1.0)))
        t += max(style.min_interval_s, float(rng.gamma(style.shape, scale)))


def blink_curve(times_s: np.ndarray, seed: int, style: BlinkStyle = BlinkStyle()) -> np.ndarray:
    """eyeBlink weight at ``times_s`` (seconds from the clip start): fast ease-in close, short
    hold, slower ease-out open."""
    duration = float(times_s[-1]) + 1e-3 if len(times_s) else 0.0
    return blinks_at(times_s, blink_onsets(duration, seed, style))


def blinks_at(times_s: np.ndarray, events: Iterable[Blink]) -> np.ndarray:
    """eyeBlink weight at ``times_s`` of the given blink events."""
    out = np.zeros(len(times_s), np.float32)
    for onset, close, hold, opening, depth in events:
        # Only the frames of this blink (linear in the clip's length, not blinks x frames).
        lo, hi = np.searchsorted(times_s, [onset, onset + close + hold + opening])
        t = times_s[lo:hi] - onset
        closing = (t >= 0) & (t < close)
        held = (t >= close) & (t < close + hold)
        rising = (t >= close + hold) & (t < close + hold + opening)
        value = np.zeros(len(t))
        value[closing] = np.sin(0.5 * np.pi * t[closing] / close) ** 2
        value[held] = 1.0
        u = (t[rising] - close - hold) / opening
        value[rising] = 1.0 - u * u * (3 - 2 * u)
        out[lo:hi] = np.maximum(out[lo:hi], (depth * value).astype(np.float32))
    return out


# --- brows ----------------------------------------------------------------------------------


def pitch_accents(f0: np.ndarray, level: np.ndarray) -> list[tuple[float, float]]:
    """Pitch accents ``(time_s, excursion in semitones)``: F0 peaks at least 1.5 semitones
    above the speaker's median, rising 2 semitones above the lowest point within 0.4 s on
    both sides, on loud syllables, at least 0.4 s apart (the highest wins)."""
    voiced = f0 > 0
    if voiced.sum() < 20:
        return []
    semitones = np.zeros_like(f0)
    median = float(np.median(f0[voiced]))
    semitones[voiced] = 12.0 * np.log2(f0[voiced] / median)
    # Bridge short unvoiced gaps so that a peak's prominence is measured against its phrase.
    grid = np.arange(len(f0))
    filled = np.interp(grid, grid[voiced], semitones[voiced])
    smooth = np.convolve(filled, np.hanning(9) / np.hanning(9).sum(), mode="same")
    reach = int(0.4 / ANALYSIS_S)
    padded = np.pad(smooth, reach, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1)
    is_max = smooth >= windows.max(axis=1)
    left_min = windows[:, :reach].min(axis=1)
    right_min = windows[:, reach + 1 :].min(axis=1)
    prominent = smooth - np.maximum(left_min, right_min) >= 2.0
    peaks = np.flatnonzero(is_max & prominent & (smooth >= 1.5) & voiced & (level[: len(f0)] > 0.6))
    accents: list[tuple[float, float]] = []
    for p in peaks:
        if accents and p * ANALYSIS_S - accents[-1][0] < 0.4:
            continue
        accents.append((p * ANALYSIS_S, float(smooth[p])))
    return accents


def brow_curve(times_s: np.ndarray, accents: list[tuple[float, float]]) -> np.ndarray:
    """Brow raise at ``times_s``: a bump per accent (rise 150 ms before the F0 peak, hold
    100 ms, relax over 400 ms), its height growing with the excursion (0.15-0.45)."""
    out = np.zeros(len(times_s), np.float32)
    for peak, excursion in accents:
        height = float(np.clip(0.15 + 0.06 * (excursion - 1.5), 0.15, 0.45))
        lo, hi = np.searchsorted(times_s, [peak - 0.15, peak + 0.5])
        t = times_s[lo:hi] - (peak - 0.15)
        value = np.zeros(len(t))
        rise = (t >= 0) & (t < 0.15)
        value[rise] = np.sin(0.5 * np.pi * t[rise] / 0.15) ** 2
        value[(t >= 0.15) & (t < 0.25)] = 1.0
        fall = (t >= 0.25) & (t < 0.65)
        value[fall] = np.cos(0.5 * np.pi * (t[fall] - 0.25) / 0.4) ** 2
        out[lo:hi] = np.maximum(out[lo:hi], (height * value).astype(np.float32))
    return out


# --- phone timing from the sound (fast mode) --------------------------------------------------

#: Phones whose lips must be seen at the right moment and whose sound is clearly quieter than
#: their neighbours': a stop's closure is silent. (/m f v/ are weak too, but not enough: moving
#: them by loudness cost as many hits as it won on speech_en.)
QUIET_PHONES = frozenset({"P", "B"})
#: How far such a phone may move from where its word's typical durations put it.
SNAP_REACH_S = 0.12
#: Loudness (normalised, 0-1) traded for each second of moving: keeps a phone in place
#: unless a clearly quieter stretch lies nearby.
SNAP_COST_PER_S = 1.5
#: Every other phone of the word keeps at least this long.
SNAP_MIN_S = 0.02


def snap_quiet_phones(phones: list[Phone], level: np.ndarray) -> list[Phone]:
    """Move each /p b/ inside a word onto the quietest stretch of its own length nearby.

    Fast mode spreads a recognised word's phones over the word by typical durations (no
    phone alignment pass), which puts a short closure tens of milliseconds off: a "clubs"
    whose /z/ is long has its /b/ drawn over the /z/. The sound says where the lips meet: a
    stop's closure is silent. Each such phone between two phones of its word keeps its length
    and order; those neighbours stretch or shrink (to at least :data:`SNAP_MIN_S`), and a
    move costs :data:`SNAP_COST_PER_S` per second against the loudness it saves.
    ``level``: normalised loudness on the 100 Hz grid.
    """
    out = list(phones)
    grid_s = ANALYSIS_S
    # Mean loudness of any span from cumulative sums (once: long clips have many phones).
    cum = np.concatenate([[0.0], np.cumsum(level)])
    for k, phone in enumerate(out):
        if phone.label not in QUIET_PHONES or not phone.word:
            continue
        # Only inside a word (the word's edges are the decoder's, and more exact): between two
        # phones of the same word, into them but never past them.
        inside = 0 < k < len(out) - 1 and out[k - 1].word == phone.word == out[k + 1].word
        if not inside:
            continue
        low, high = out[k - 1].start_s + SNAP_MIN_S, out[k + 1].end_s - SNAP_MIN_S
        length = phone.end_s - phone.start_s
        low = max(low, phone.start_s - SNAP_REACH_S)
        high = min(high, phone.end_s + SNAP_REACH_S)
        if high - low <= length + 1e-9:
            continue
        starts = np.arange(low, high - length + 1e-9, grid_s)
        first = np.clip(np.round(starts / grid_s).astype(int), 0, len(level))
        last = np.clip(np.round((starts + length) / grid_s).astype(int), 0, len(level))
        loud = (cum[last] - cum[first]) / np.maximum(last - first, 1)
        cost = loud + SNAP_COST_PER_S * np.abs(starts - phone.start_s)
        start = float(starts[int(np.argmin(cost))])
        if abs(start - phone.start_s) < 0.5 * grid_s:
            continue
        end = start + length
        out[k] = Phone(phone.label, start, end, phone.word)
        out[k - 1] = Phone(out[k - 1].label, out[k - 1].start_s, start, out[k - 1].word)
        out[k + 1] = Phone(out[k + 1].label, end, out[k + 1].end_s, out[k + 1].word)
    return out
