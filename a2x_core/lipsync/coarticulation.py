"""Coarticulation: viseme segments → continuous ARKit-52 curves.

Cohen & Massaro (1993): every segment has a dominance function per articulator group, peaking
(at its magnitude) over the middle of the segment and decaying exponentially before
(anticipation) and after (carry-over); a channel's value is the dominance-weighted mean of all
segments' targets. Weighted means never quite reach a short consonant's target, which is the
model's known weakness for closures, so "critical" channels (lips on /p b m/, lower lip on
/f v/, tongue on /th dh/) are then pulled onto their targets with smooth raised-cosine windows.
The same undershoot leaves short open vowels (a 30-110 ms /ah/ in "and", "to", "for") barely
open, so open-vowel nuclei get a floor on the jaw (:func:`open_nuclei`).
"""

from __future__ import annotations

import numpy as np

from .visemes import GROUPS, VisemeTable, VisemeTrack

#: Frames per block; bounds memory to block x nearby-segments for clips of any length.
_BLOCK = 2048
#: Segments farther than this from a block cannot contribute (exp(-1 s / 0.1 s) ~ 5e-5).
_REACH_S = 1.0


def dominance(
    times_s: np.ndarray, track: VisemeTrack, table: VisemeTable, group: int
) -> np.ndarray:
    """``[frames, segments]`` dominance of every segment at every time for one group."""
    centre = 0.5 * (track.start_s + track.end_s)
    half = 0.5 * table.plateau * (track.end_s - track.start_s)
    offset = times_s[:, None] - centre[None, :]
    distance = np.maximum(np.abs(offset) - half[None, :], 0.0)
    tau = np.where(offset < 0, table.anticipation_s[track.viseme], table.carryover_s[track.viseme])
    return table.dominance[track.viseme, group][None, :] * np.exp(-distance / tau)


def blend(
    times_s: np.ndarray, track: VisemeTrack, table: VisemeTable
) -> tuple[np.ndarray, np.ndarray]:
    """Dominance-blended curves.

    Returns:
        ``(weights [frames, 52] float32, viseme_share [frames, V] float32)``: the curves and
        each viseme's share of the lip dominance per frame (for inspection and export).
    """
    frames = len(times_s)
    out = np.zeros((frames, table.targets.shape[1]), np.float32)
    share = np.zeros((frames, len(table.names)), np.float32)
    lips = GROUPS.index("lips")
    for first in range(0, frames, _BLOCK):
        t = times_s[first : first + _BLOCK]
        # Segments are in time order: the nearby ones are one slice (found in log time).
        lo = int(np.searchsorted(track.end_s, t[0] - _REACH_S, side="left"))
        hi = int(np.searchsorted(track.start_s, t[-1] + _REACH_S, side="right"))
        near = slice(lo, max(lo, hi))
        sub = VisemeTrack(track.viseme[near], track.start_s[near], track.end_s[near])
        targets = table.targets[sub.viseme]
        for g in range(len(GROUPS)):
            cols = table.channel_group == g
            d = dominance(t, sub, table, g)
            d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-12)
            out[first : first + len(t), cols] = d @ targets[:, cols]
            if g == lips:
                np.add.at(share[first : first + len(t)].T, sub.viseme, d.T.astype(np.float32))
    return out, share


def _window(
    times_s: np.ndarray, start: float, end: float, ramp_in: float, ramp_out: float
) -> np.ndarray:
    """1 on [start, end], raised-cosine ramps of the given lengths outside it, 0 beyond."""
    w = np.zeros_like(times_s)
    w[(times_s >= start) & (times_s <= end)] = 1.0
    if ramp_in > 0:
        rise = (times_s > start - ramp_in) & (times_s < start)
        w[rise] = 0.5 - 0.5 * np.cos(np.pi * (times_s[rise] - (start - ramp_in)) / ramp_in)
    if ramp_out > 0:
        fall = (times_s > end) & (times_s < end + ramp_out)
        w[fall] = 0.5 + 0.5 * np.cos(np.pi * (times_s[fall] - end) / ramp_out)
    return w


def apply_critical(
    weights: np.ndarray,
    times_s: np.ndarray,
    track: VisemeTrack,
    table: VisemeTable,
    frame_s: float | None = None,
) -> None:
    """Pull critical channels onto their targets during their segments (in place).

    Ramps take ``table.ramp_s`` but at most half of the neighbouring segment, so that a short
    vowel between two closures still opens. ``frame_s``: the frame period (default: read off
    ``times_s``; a stream passes it, as it runs a frame or two at a time).
    """
    durations = track.end_s - track.start_s
    # At low frame rates a short closure can fall between two frames: widen its core to one
    # frame period so that some frame always shows it.
    if frame_s is None:
        frame_s = float(times_s[1] - times_s[0]) if len(times_s) > 1 else 0.0
    for s in np.flatnonzero(table.critical[track.viseme].any(axis=1)):
        v = track.viseme[s]
        before = durations[s - 1] if s > 0 else table.ramp_s
        after = durations[s + 1] if s + 1 < len(durations) else table.ramp_s
        ramp_in, ramp_out = min(table.ramp_s, 0.5 * before), min(table.ramp_s, 0.5 * after)
        pad = max(0.0, 0.5 * (frame_s - durations[s]))
        lo = np.searchsorted(times_s, track.start_s[s] - pad - ramp_in)
        hi = np.searchsorted(times_s, track.end_s[s] + pad + ramp_out, side="right")
        if hi <= lo:
            continue
        centre, half = (
            0.5 * (track.start_s[s] + track.end_s[s]),
            max(0.5 * durations[s], 0.5 * frame_s),
        )
        w = _window(times_s[lo:hi], centre - half, centre + half, ramp_in, ramp_out)[:, None]
        cols = table.critical[v]
        weights[lo:hi, cols] = (1 - w) * weights[lo:hi, cols] + w * table.targets[v, cols]


def open_nuclei(
    jaw: np.ndarray,
    times_s: np.ndarray,
    track: VisemeTrack,
    table: VisemeTable,
    per_target: np.ndarray,
    acoustic: np.ndarray,
    frame_s: float | None = None,
) -> None:
    """Open every open-vowel nucleus visibly, however short the vowel (in place).

    A short unstressed vowel between consonants is outweighed by its neighbours' dominance
    and reached 75-96 % of a clear vowel's opening, often too little to read as a syllable.
    Each segment whose viseme is flagged ``nucleus`` raises the jaw to at least
    ``table.nucleus_share`` of the jaw its viseme's target gives: the target x ``per_target``
    (the frames' gain on phone targets, loudness included) + ``acoustic`` (the frames' acoustic
    part of the jaw), over the middle of the vowel, easing to nothing at most half a
    neighbour outside it. It only raises, and hardly ever a long vowel (whose blend already
    reaches that share); closures are applied afterwards.
    """
    if not table.nucleus_share or len(times_s) == 0:
        return
    durations = track.end_s - track.start_s
    if frame_s is None:
        frame_s = float(times_s[1] - times_s[0]) if len(times_s) > 1 else 0.0
    jaw_target = table.targets[:, table.channel_index("jawOpen")]
    for s in np.flatnonzero(table.nucleus[track.viseme]):
        before = durations[s - 1] if s > 0 else table.ramp_s
        after = durations[s + 1] if s + 1 < len(durations) else table.ramp_s
        ramp_in, ramp_out = min(table.ramp_s, 0.5 * before), min(table.ramp_s, 0.5 * after)
        lo = np.searchsorted(times_s, track.start_s[s] - ramp_in)
        hi = np.searchsorted(times_s, track.end_s[s] + ramp_out, side="right")
        if hi <= lo:
            continue
        # Full floor over the vowel's middle (its dominance plateau, at least a frame, so
        # that some frame shows it), easing to nothing ramp_in/ramp_out outside the vowel.
        centre = 0.5 * (track.start_s[s] + track.end_s[s])
        half = max(0.5 * table.plateau * durations[s], 0.5 * frame_s)
        ease_in = ramp_in + max(0.0, centre - half - track.start_s[s])
        ease_out = ramp_out + max(0.0, track.end_s[s] - centre - half)
        w = _window(times_s[lo:hi], centre - half, centre + half, ease_in, ease_out)
        long_vowel = jaw_target[track.viseme[s]] * per_target[lo:hi] + acoustic[lo:hi]
        floor = table.nucleus_share * w * long_vowel
        jaw[lo:hi] = np.maximum(jaw[lo:hi], floor)
