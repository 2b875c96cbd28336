"""Head and eyes from the voice: prosody-driven head rotation and gaze for any result.

A face whose lips move while the head stays locked looks switched on, not alive. This module
adds what a speaker's head and eyes do, from the audio alone (issue 17 point 3):

- **nods** on stressed syllables (loudness peaks that rise from a dip) and a slower, deeper
  settle at phrase ends (speech followed by a pause);
- **slow drift** (seeded sums of slow sines, so any frame can be computed on its own) that is
  larger while speaking and dies down to a near-still head in silence;
- **gaze**: fixations with quick saccades between them, many of them at blinks (people shift
  gaze during blinks), both eyes together.

Everything is computed from the 100 Hz normalised loudness (:mod:`.lipsync.expressions`) with
at most :data:`AHEAD_HOPS` of look-ahead and :data:`BEHIND_HOPS` of history, so a stream with
the default model's 300 ms look-ahead computes the same curves as the offline run
(:class:`HeadMotion` is shared by both). Units: ``head_rotations`` are (pitch, yaw, roll) in
radians about ARKit's face-anchor axes (right-handed: x to the face's left, y up, z toward the
viewer): pitch > 0 = chin down (a nod), yaw > 0 = turned to the face's left, roll > 0 =
tilted to the face's right; ``eye_rotations`` use Audio2Face's layout (right eye x, y, 0,
left eye x, y, 0; degrees; x = pitch (> 0 = down), y = yaw).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..lipsync import expressions as ex
from ..options import InferenceOptions

#: Loudness (normalised 0..1) above which a hop counts as speech.
SPEAKING = 0.3
#: Activity (share of speech) is read over this window around a hop (0.6 s back, 0.2 s ahead).
ACTIVITY_BEHIND, ACTIVITY_AHEAD = 60, 20
#: A syllable nucleus is the loudest point (9-hop mean) over 0.25 s back and 0.15 s ahead.
NUCLEUS_BEHIND, NUCLEUS_AHEAD, NUCLEUS_SMOOTH = 25, 15, 4
#: A phrase ends where speech is followed by this many quiet hops (0.25 s).
PAUSE_HOPS = 25
#: Look-ahead and history the event tests need, in hops (the stream keeps these).
AHEAD_HOPS = max(ACTIVITY_AHEAD, NUCLEUS_AHEAD + NUCLEUS_SMOOTH, PAUSE_HOPS + 1)
BEHIND_HOPS = max(ACTIVITY_BEHIND, NUCLEUS_BEHIND + NUCLEUS_SMOOTH, 30)


@dataclass(frozen=True)
class HeadStyle:
    """Amplitudes and timings (degrees, seconds). ``amplitude`` scales head and gaze together.

    The defaults are set so that the statistics fall inside those of real captures
    (``benchmarks/alive_stats.py``; ``docs/quality.md``).
    """

    amplitude: float = 1.0
    nod_deg: float = 3.0
    phrase_nod_deg: float = 4.0
    nod_gap_s: float = 0.5
    #: A nod starts this long after its syllable's loudness peak (heads follow the accent;
    #: a stream knows the peak by then).
    nod_delay_s: float = 0.04
    nod_down_s: float = 0.14
    nod_up_s: float = 0.36
    #: Drift standard deviation (pitch, yaw, roll) while speaking; in silence x ``still``.
    drift_deg: tuple[float, float, float] = (2.0, 2.8, 1.5)
    still: float = 0.3
    #: Quicker motion that goes with speaking only (0.6-1.6 Hz), standard deviation.
    speech_deg: tuple[float, float, float] = (0.5, 0.7, 0.5)
    #: Gaze: fixation spread (pitch, yaw) and mean time between saccades.
    gaze_deg: tuple[float, float] = (3.5, 5.0)
    saccade_interval_s: float = 1.6
    saccade_s: float = 0.045
    blink_shift_p: float = 0.6


#: One nod: (start time, depth in degrees, time down, time back up).
Nod = tuple[float, float, float, float]


def activity(level: np.ndarray) -> np.ndarray:
    """Share of speech hops around each hop (0 in silence, 1 in running speech), in [0, 1]."""
    speech = np.pad((level > SPEAKING).astype(np.float64), (ACTIVITY_BEHIND, ACTIVITY_AHEAD))
    total = np.concatenate([[0.0], np.cumsum(speech)])
    width = ACTIVITY_BEHIND + ACTIVITY_AHEAD + 1
    share = (total[width:] - total[:-width]) / width
    return np.clip(2.5 * share, 0.0, 1.0)[: len(level)]


def find_nods(
    level: np.ndarray, first: int, last: int, hop0: int, previous_s: float, style: HeadStyle
) -> list[Nod]:
    """Nods at hops ``first .. last - 1`` (absolute), given ``level`` of hops ``hop0 ..``
    (covering :data:`BEHIND_HOPS` before ``first`` and :data:`AHEAD_HOPS` after ``last``
    where the audio has them). ``previous_s``: time of the last nod found before ``first``."""
    smooth = ex.moving_mean(level, 2 * NUCLEUS_SMOOTH + 1)
    out: list[Nod] = []
    for hop in range(first, last):
        p = hop - hop0
        if p < 0 or p >= len(level):
            continue
        t = hop * ex.ANALYSIS_S
        if t - previous_s < style.nod_gap_s:
            continue
        behind = smooth[max(0, p - NUCLEUS_BEHIND) : p]
        ahead = smooth[p + 1 : p + NUCLEUS_AHEAD + 1]
        stressed = (
            smooth[p] >= 0.7
            and len(behind) > 0
            and smooth[p] >= behind.max()
            and (len(ahead) == 0 or smooth[p] > ahead.max())
            and smooth[p] - behind.min() >= 0.3
        )
        pause = level[p + 1 : p + 1 + PAUSE_HOPS]
        spoken = level[max(0, p - 30) : p + 1]
        phrase_end = (
            level[p] > SPEAKING
            and len(pause) == PAUSE_HOPS
            and pause.max() < 0.2
            and spoken.mean() > 0.45
        )
        if not (stressed or phrase_end):
            continue
        # Depth varies from nod to nod, fixed by the hop (any order of discovery agrees).
        jitter = 0.65 + 0.35 * _unit(hop, 0x40D)
        start = t + style.nod_delay_s
        if phrase_end:
            out.append((start, style.phrase_nod_deg * jitter, 0.22, 0.6))
        else:
            out.append((start, style.nod_deg * jitter * smooth[p], style.nod_down_s,
                        style.nod_up_s))  # fmt: skip
        previous_s = t
    return out


def _unit(hop: int, salt: int) -> float:
    """A repeatable number in [0, 1) for a hop (hash, not a sequence: order-free)."""
    return float(np.random.default_rng([hop, salt]).random())


def nods_at(times_s: np.ndarray, nods: list[Nod]) -> np.ndarray:
    """Pitch (degrees, > 0 = down) of the nods at ``times_s``: eased down, slower back up."""
    out = np.zeros(len(times_s))
    for start, depth, down, up in nods:
        low = start + down
        lo, hi = np.searchsorted(times_s, [start, low + up])
        t = times_s[lo:hi] - low
        value = np.where(t < 0, np.sin(0.5 * np.pi * (1 + t / down)) ** 2,
                         np.cos(0.5 * np.pi * t / up) ** 2)  # fmt: skip
        out[lo:hi] += depth * value
    return out


class Drift:
    """Seeded wander of (pitch, yaw, roll) in degrees at any time: a sum of sines with random
    frequencies in ``band`` Hz and phases, scaled to ``std_deg`` (no state: a stream and the
    offline run agree on every frame)."""

    def __init__(
        self, seed: int, std_deg: tuple[float, float, float], band: tuple[float, float] = (0.04, 0.3)
    ) -> None:
        rng = np.random.default_rng([seed, 0xD21F7, int(band[1] * 100)])
        self.freq = rng.uniform(*band, (3, 4))
        self.phase = rng.uniform(0, 2 * np.pi, (3, 4))
        weight = rng.uniform(0.5, 1.0, (3, 4))
        # Each sine's variance is weight^2 / 2: normalise the sum to the wanted std.
        self.amp = weight * (np.array(std_deg)[:, None]
                             / np.sqrt(0.5 * (weight**2).sum(axis=1, keepdims=True)))  # fmt: skip

    def at(self, times_s: np.ndarray) -> np.ndarray:
        """``[n, 3]`` degrees."""
        arg = 2 * np.pi * self.freq[None] * times_s[:, None, None] + self.phase[None]
        return (self.amp[None] * np.sin(arg)).sum(axis=2)


#: One fixation: (start of the saccade into it, pitch deg, yaw deg).
Fixation = tuple[float, float, float]


def fixations(seed: int, style: HeadStyle, blinks: Iterator[ex.Blink] | None) -> Iterator[Fixation]:
    """The endless gaze sequence of ``seed``: saccades at gamma-distributed intervals, and
    (with ``style.blink_shift_p``) at the onsets of the blinks of ``blinks``; targets around
    straight ahead (the listener), each drawn from the saccade's own seeded generator."""
    rng = np.random.default_rng([seed, 0x6A2E])
    own = float(rng.gamma(2.0, style.saccade_interval_s / 2.0))
    blink = next(blinks, None) if blinks is not None else None
    count = 0
    while True:
        if blink is not None and blink[0] + 0.5 * blink[1] <= own:
            # Mid-closure of the blink: the eyes move while the lids hide them.
            t = blink[0] + 0.5 * blink[1]
            keep = _unit(int(t * 1000), seed) < style.blink_shift_p
            blink = next(blinks, None) if blinks is not None else None
            if not keep:
                continue
        else:
            t = own
            own += max(0.25, float(rng.gamma(2.0, style.saccade_interval_s / 2.0)))
        draw = np.random.default_rng([seed, 0x5ACC, count])
        count += 1
        pitch, yaw = draw.normal(0.0, 1.0, 2) * np.array(style.gaze_deg)
        yield (t, float(np.clip(pitch, -8, 8)), float(np.clip(yaw, -15, 15)))


def gaze_at(times_s: np.ndarray, fixes: list[Fixation], saccade_s: float) -> np.ndarray:
    """``[n, 2]`` (pitch, yaw) degrees: hold each fixation, move to the next in ``saccade_s``
    (smoothstep: a saccade's fast, bell-shaped velocity)."""
    out = np.zeros((len(times_s), 2))
    previous = np.zeros(2)
    for start, pitch, yaw in fixes:
        target = np.array([pitch, yaw])
        u = np.clip((times_s - start) / saccade_s, 0.0, 1.0)[:, None]
        blend = u * u * (3 - 2 * u)
        after = times_s >= start
        out[after] = (previous + (target - previous) * blend)[after]
        previous = target
    return out


def eye_layout(gaze: np.ndarray, amplitude: float) -> np.ndarray:
    """``[n, 6]`` float32 Audio2Face eye rotations (right x, y, 0, left x, y, 0) of a gaze."""
    out = np.zeros((len(gaze), 6), np.float32)
    out[:, 0] = out[:, 3] = amplitude * gaze[:, 0]
    out[:, 1] = out[:, 4] = amplitude * gaze[:, 1]
    return out


def head_style(options: InferenceOptions) -> HeadStyle:
    """The head and gaze style of ``options`` (``head_motion`` scales both; 0 = still)."""
    return HeadStyle(amplitude=options.head_motion)


def head_and_gaze(
    level: np.ndarray, times_s: np.ndarray, seed: int, style: HeadStyle = HeadStyle()
) -> tuple[np.ndarray, np.ndarray]:
    """Offline: ``(head_rotations [n, 3] radians, eye_rotations [n, 6] degrees)`` float32
    at ``times_s`` from the 100 Hz normalised loudness of the whole clip."""
    motion = HeadMotion(seed, style)
    motion.add_hops(level, 0, final=True)
    return motion.at(times_s)


class HeadMotion:
    """Head and gaze, incrementally: feed loudness hops as they arrive (:meth:`add_hops`), read
    frames whose time is at least :data:`AHEAD_HOPS` behind the newest hop (:meth:`at`).
    The offline run feeds the whole clip at once; the results are the same."""

    def __init__(self, seed: int, style: HeadStyle = HeadStyle()) -> None:
        self.seed, self.style = seed, style
        self.drift = Drift(seed, style.drift_deg)
        self.quick = Drift(seed, style.speech_deg, (0.6, 1.6))
        self.nods: list[Nod] = []
        self._tested = 0  # hops tested for a nod
        self._fixes = fixations(seed, style, ex.blink_events(seed))
        self._fixed: list[Fixation] = []
        self._hop0 = 0
        self._level = np.zeros(0)
        self._last_nod_hop_s = -math.inf

    def add_hops(
        self, level: np.ndarray, hop0: int, *, final: bool = False, not_before_s: float = -math.inf
    ) -> None:
        """Loudness of hops ``hop0 ..`` (``level``: all the caller still holds). A stream passes
        its next frame's time as ``not_before_s``: frames out are final, so a nod found late
        starts there (as its brow accents do)."""
        self._hop0, self._level = hop0, np.asarray(level, np.float64)
        end = hop0 + len(level)
        last = end if final else end - AHEAD_HOPS
        if last > self._tested:
            previous = self._last_nod_hop_s
            found = find_nods(self._level, self._tested, last, hop0, previous, self.style)
            if found:
                self._last_nod_hop_s = found[-1][0] - self.style.nod_delay_s
            self.nods += [(max(n[0], not_before_s), *n[1:]) for n in found]
            self._tested = last

    def at(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(head [n, 3] radians, eyes [n, 6] degrees)`` float32 at ``times_s``."""
        if len(times_s) == 0:
            return np.zeros((0, 3), np.float32), np.zeros((0, 6), np.float32)
        style = self.style
        grid = (self._hop0 + np.arange(len(self._level))) * ex.ANALYSIS_S
        active = np.interp(times_s, grid, activity(self._level)) if len(grid) else 0 * times_s
        gain = style.still + (1.0 - style.still) * active
        head = self.drift.at(times_s) * gain[:, None] + self.quick.at(times_s) * active[:, None]
        head[:, 0] += nods_at(times_s, self.nods)
        while not self._fixed or self._fixed[-1][0] <= times_s[-1]:
            self._fixed.append(next(self._fixes))
        gaze = gaze_at(times_s, self._fixed, style.saccade_s)
        # Forget what no later frame needs: fixations but the one in force a second ago.
        settled = [k for k, f in enumerate(self._fixed) if f[0] <= times_s[-1] - 1.0]
        if settled:
            self._fixed = self._fixed[settled[-1] :]
        self.nods = [n for n in self.nods if n[0] + n[2] + n[3] >= times_s[-1] - 1.0]
        head_rad = np.radians(style.amplitude * head).astype(np.float32)
        return head_rad, eye_layout(gaze, style.amplitude)


def add_head_motion(result, samples: np.ndarray, seed: int = 0, amplitude: float = 1.0):  # noqa: ANN001, ANN201
    """Fill ``result.head_rotations`` (and ``eye_rotations`` where the model gave none) from
    the audio ``samples`` (16 kHz, of the result's span): for Audio2Face models and any other
    result. Returns the result."""
    level = ex.normalised_loudness(ex.loudness_db(samples))
    times = result.times_s - result.start_s
    head, eyes = head_and_gaze(level, times, seed, HeadStyle(amplitude=amplitude))
    result.head_rotations = head
    if result.eye_rotations is None:
        result.eye_rotations = eyes
    return result


# --- a face that looks alive (issue 17 point 4) ----------------------------------------------

#: Left/right pairs that real faces move unequally (blinks stay symmetric: a real blink closes
#: both lids; mouthLeft/Right and the eye-look shapes are directions, not sides of one shape).
ASYMMETRIC = ("browDown", "browOuterUp", "cheekSquint", "eyeSquint", "eyeWide", "mouthDimple",
              "mouthFrown", "mouthLowerDown", "mouthPress", "mouthSmile", "mouthStretch",
              "mouthUpperUp", "noseSneer")  # fmt: skip


#: Shapes that move with others in real faces (target, source stems, gain): eyes widen with a
#: raised brow, the chin rises (shrug) and the cheeks fill a little while lips press, the
#: dimples follow the lip corners' stretch, the jaw comes forward for /f v/, the nose and the
#: brows take a little of a squint. Sources named without a side are the mean of both sides.
COUPLINGS: tuple[tuple[str, str, float], ...] = (
    ("eyeWide", "browInnerUp", 0.5),
    ("mouthShrugLower", "mouthPress", 0.6),
    ("cheekPuff", "mouthPress", 0.15),
    ("mouthDimple", "mouthStretch", 0.4),
    ("jawForward", "mouthRollLower", 0.15),
    ("noseSneer", "eyeSquint", 0.3),
    ("browDown", "eyeSquint", 0.2),
)


@dataclass(frozen=True)
class FaceStyle:
    """Amplitudes of :func:`alive_face` (set against real captures: docs/quality.md).

    Attributes:
        asymmetry: typical left/right gain difference (a speaker's constant lean plus slow
            wander; mean-preserving, so the pair's average is unchanged).
        squint: eyeSquint at rest and its rise with loudness (cheekSquint follows at
            ``cheek``): faces squint a little while they speak and emphasise.
        lip_drop: mouthLowerDown per unit of lip parting (jawOpen - mouthClose): the lower
            lip follows the jaw down.
        look_deg: gaze angle that makes an eye-look shape 1.
        lateral: mouth and jaw sideways shift per unit of the left/right lean while speaking.
    """

    asymmetry: float = 0.16
    squint: tuple[float, float] = (0.1, 0.26)
    cheek: float = 0.8
    lip_drop: float = 1.1
    look_deg: float = 25.0
    lateral: float = 0.12


def _col(name: str) -> int:
    from ..names import ARKIT_52

    return ARKIT_52.index(name)


def alive_face(
    weights: np.ndarray,
    times_s: np.ndarray,
    loud: np.ndarray,
    eyes: np.ndarray | None,
    seed: int,
    style: FaceStyle = FaceStyle(),
) -> np.ndarray:
    """``weights`` (ARKit-52, in place and returned) made less switched: left/right differ,
    the lower lip drops with the jaw, eyes squint a little with speech, and the eye-look
    shapes follow the gaze (``eyes``: Audio2Face eye rotations, degrees). Every term is a
    function of the frame's own time, loudness and gaze: a stream computes the same frames.
    The pair means of mouthPress, mouthLowerDown and mouthUpperUp are kept where the lips
    close (what a closure reads), so lip closures stay closures."""
    if len(times_s) == 0:
        return weights
    lean = Drift(seed, (style.asymmetry,) * 3, (0.02, 0.12)).at(times_s)[:, 0]
    bias = style.asymmetry * (2.0 * _unit(seed, 0xA5) - 1.0)
    gain = np.clip(0.6 * bias + 0.8 * lean, -0.45, 0.45)
    jaw, close = weights[:, _col("jawOpen")], weights[:, _col("mouthClose")]
    parted = np.clip(jaw - close, 0.0, 1.0)
    for side in ("Left", "Right"):
        drop = _col(f"mouthLowerDown{side}")
        weights[:, drop] = np.maximum(weights[:, drop], style.lip_drop * parted)
    speaking = np.clip(np.asarray(loud, np.float64), 0.0, 1.0)
    # Gated by the voice: a silent face stays at rest (only the gaze lives on).
    squint = style.squint[0] * np.clip(4.0 * speaking, 0.0, 1.0) + style.squint[1] * speaking
    for side in ("Left", "Right"):
        eye, cheek = _col(f"eyeSquint{side}"), _col(f"cheekSquint{side}")
        weights[:, eye] = np.maximum(weights[:, eye], squint)
        weights[:, cheek] = np.maximum(weights[:, cheek], style.cheek * squint)
    for target, source, factor in COUPLINGS:
        value = factor * _stem_mean(weights, source)
        for column in _stem_columns(target):
            weights[:, column] = np.maximum(weights[:, column], value)
    # The mouth and jaw lean sideways with the speaker's lean, while speaking.
    side = style.lateral * gain * speaking
    for stem, scale in (("mouth", 1.0), ("jaw", 0.5)):
        left, right = _col(f"{stem}Left"), _col(f"{stem}Right")
        weights[:, left] = np.maximum(weights[:, left], scale * np.clip(side, 0.0, 1.0))
        weights[:, right] = np.maximum(weights[:, right], scale * np.clip(-side, 0.0, 1.0))
    for stem in ASYMMETRIC:
        left, right = _col(f"{stem}Left"), _col(f"{stem}Right")
        mean = 0.5 * (weights[:, left] + weights[:, right])
        # At most the headroom of either side, so clipping never changes the pair's mean.
        room = np.minimum(1.0 - mean, mean)
        delta = np.clip(gain * mean, -room, room)
        weights[:, left], weights[:, right] = mean + delta, mean - delta
    if eyes is not None:
        _eye_look(weights, np.asarray(eyes, np.float64), style.look_deg)
    return np.clip(weights, 0.0, 1.0).astype(np.float32)


def _stem_columns(stem: str) -> list[int]:
    """Columns of a shape with sides (``eyeWide`` → both) or without (``cheekPuff``)."""
    from ..names import ARKIT_52

    return [i for i, n in enumerate(ARKIT_52) if n in (stem, f"{stem}Left", f"{stem}Right")]


def _stem_mean(weights: np.ndarray, stem: str) -> np.ndarray:
    return weights[:, _stem_columns(stem)].mean(axis=1)


def _eye_look(weights: np.ndarray, eyes: np.ndarray, full_deg: float) -> None:
    """Eye-look shapes from Audio2Face eye rotations (x = pitch > 0 down, y = yaw > 0 to the
    face's left): each eye looks out on its own side, in on the other."""
    for side, pitch, yaw in (("Right", eyes[:, 0], eyes[:, 1]), ("Left", eyes[:, 3], eyes[:, 4])):
        towards_left = np.clip(yaw / full_deg, 0.0, 1.0)
        towards_right = np.clip(-yaw / full_deg, 0.0, 1.0)
        out, inward = (towards_left, towards_right) if side == "Left" else (towards_right, towards_left)
        pairs = {"Out": out, "In": inward, "Down": np.clip(pitch / full_deg, 0.0, 1.0),
                 "Up": np.clip(-pitch / full_deg, 0.0, 1.0)}  # fmt: skip
        for direction, value in pairs.items():
            column = _col(f"eyeLook{direction}{side}")
            weights[:, column] = np.maximum(weights[:, column], value)


#: The jaw, a heavy articulator, moves at most this fast (jawOpen per second): 0.19 per frame at
#: 30 fps, below the real captures' largest frame-to-frame change, 0.2 (docs/quality.md).
JAW_SPEED = 5.7
#: ... when it opens with nothing to look ahead at (a stream's batch): faster, as a slower
#: causal rise lowered short vowels' peaks (an open-vowel hit lost in
#: benchmarks/lipsync_eval.py).
JAW_RISE_SPEED = 12.0
#: ... when it opens and the frames ahead are known (``ahead=True``, offline): as slow as it
#: closes, reaching each opening in time by starting earlier, so peaks keep their height.
JAW_AHEAD_SPEED = JAW_SPEED


def limit_jaw(
    weights: np.ndarray, frame_s: float, previous: float | None = None, *, ahead: bool = False
) -> float:
    """Limit jawOpen's speed (in place; returns the last frame's jawOpen).

    Closing is at most :data:`JAW_SPEED`, in one causal pass from ``previous`` (the last
    frame's jawOpen, so a stream continues where it stopped). Opening: with ``ahead`` (the
    whole clip is known) the jaw starts opening early enough to reach every peak at
    :data:`JAW_AHEAD_SPEED` (a backward pass that only raises the frames before a rise: an
    opening after a closure used to jump up to 0.4 per 30 fps frame); otherwise a rise is
    capped at :data:`JAW_RISE_SPEED`. Where the lips close (mouthClose > 0) mouthClose moves
    with the jaw, so that jawOpen - mouthClose (lips together) is unchanged."""
    jaw_col, close_col = _col("jawOpen"), _col("mouthClose")
    jaw = weights[:, jaw_col].astype(np.float64)
    if len(jaw) == 0:
        return 0.0 if previous is None else previous
    down, up = JAW_SPEED * frame_s, JAW_RISE_SPEED * frame_s
    target = jaw
    if ahead:
        # z[k] = max over j >= k of jaw[j] - rise * (j - k): the lowest curve at or above the
        # jaw that rises no faster than JAW_AHEAD_SPEED (raising only keeps closures, which
        # read jawOpen - mouthClose, and every peak).
        rise = JAW_AHEAD_SPEED * frame_s
        ramp = rise * np.arange(len(jaw))
        target = np.maximum.accumulate((jaw - ramp)[::-1])[::-1] + ramp
    out = np.empty_like(jaw)
    last = target[0] if previous is None else previous
    for k, value in enumerate(target):
        last = last + min(max(value - last, -down), up)
        out[k] = last
    close = weights[:, close_col].astype(np.float64)
    moved = np.where(close > 0, np.clip(close + out - jaw, 0.0, out), close)
    weights[:, jaw_col], weights[:, close_col] = out, moved
    return float(out[-1])
