"""The viseme table (``data/visemes.json``): phone → viseme(s) → ARKit-52 targets and dominance.

The table is data so that animators can retune shapes without touching code; this module
only loads it into arrays and checks it, naming the file and key at fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelPackageError
from ..names import ARKIT_52
from .phones import Phone

DEFAULT_TABLE = Path(__file__).with_name("data") / "visemes.json"
GROUPS = ("jaw", "lips", "tongue")

#: Every phone the en-US acoustic model can emit (CMU set without stress) plus silence.
ARPABET = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW "
    "V W Y Z ZH SIL"
).split()


@dataclass(frozen=True)
class VisemeTable:
    """The viseme table as arrays (V visemes, 52 channels).

    Attributes:
        names: viseme names.
        targets: ``[V, 52]`` target weights in ARKit-52 order.
        dominance: ``[V, 3]`` Cohen-Massaro magnitude per articulator group (jaw, lips, tongue).
        anticipation_s, carryover_s: ``[V]`` decay time constants before/after the segment.
        critical: ``[V, 52]`` channels that must reach their target during the segment.
        channel_group: ``[52]`` group index of every channel.
        phones: phone label → ((viseme index, share of the phone's duration), ...).
        plateau: share of a segment around its centre where dominance stays at its peak.
        ramp_s: length of the ramps into and out of a critical target, in seconds.
        nucleus: ``[V]`` open-vowel visemes whose jaw must open visibly however short the
            vowel (see :func:`.coarticulation.open_nuclei`).
        nucleus_share: share of a long vowel's jaw opening that such a vowel reaches at least.
    """

    names: tuple[str, ...]
    targets: np.ndarray
    dominance: np.ndarray
    anticipation_s: np.ndarray
    carryover_s: np.ndarray
    critical: np.ndarray
    channel_group: np.ndarray
    phones: dict[str, tuple[tuple[int, float], ...]]
    plateau: float
    ramp_s: float
    nucleus: np.ndarray
    nucleus_share: float

    def index(self, name: str) -> int:
        return self.names.index(name)

    @staticmethod
    def channel_index(name: str) -> int:
        """Column of an ARKit-52 pose in ``targets``."""
        return ARKIT_52.index(name)


def _fail(path: Path, message: str) -> ModelPackageError:
    return ModelPackageError(message, path=path, hint="fix the viseme table or reinstall a2x")


def _weight(path: Path, where: str, value: object, low: float = 0.0, high: float = 1.0) -> float:
    if not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise _fail(path, f"{where} = {value!r} must be a number in [{low}, {high}]")
    return float(value)


@lru_cache(maxsize=4)
def load_table(path: Path = DEFAULT_TABLE) -> VisemeTable:
    """Load and validate a viseme table.

    Raises:
        ModelPackageError: unreadable JSON, an unknown ARKit name, a weight outside [0, 1],
            a phone without a viseme, or shares that do not sum to 1.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _fail(path, f"cannot be read as JSON ({error})") from None
    groups = data.get("groups", {})
    channel_group = np.full(len(ARKIT_52), GROUPS.index("lips"), dtype=np.int64)
    for group, channels in groups.items():
        if group not in GROUPS:
            raise _fail(path, f"groups.{group} is not one of {', '.join(GROUPS)}")
        for channel in channels:
            if channel not in ARKIT_52:
                raise _fail(path, f"groups.{group} names {channel!r}, not an ARKit-52 pose")
            channel_group[ARKIT_52.index(channel)] = GROUPS.index(group)
    visemes = data.get("visemes", {})
    if "rest" not in visemes:
        raise _fail(path, "visemes.rest (the silence pose) is missing")
    names = tuple(visemes)
    count = len(names)
    targets = np.zeros((count, len(ARKIT_52)), np.float32)
    dominance = np.zeros((count, len(GROUPS)), np.float64)
    anticipation = np.zeros(count)
    carryover = np.zeros(count)
    critical = np.zeros((count, len(ARKIT_52)), bool)
    nucleus = np.zeros(count, bool)
    for v, (name, spec) in enumerate(visemes.items()):
        nucleus[v] = spec.get("nucleus", False) is True
        for channel, value in spec.get("targets", {}).items():
            if channel not in ARKIT_52:
                raise _fail(path, f"visemes.{name}.targets names {channel!r}, not an ARKit-52 pose")
            targets[v, ARKIT_52.index(channel)] = _weight(path, f"visemes.{name}.{channel}", value)
        for g, group in enumerate(GROUPS):
            where = f"visemes.{name}.dominance.{group}"
            dominance[v, g] = _weight(path, where, spec.get("dominance", {}).get(group), 1e-3, 10)
        anticipation[v] = _weight(
            path, f"visemes.{name}.anticipation_s", spec.get("anticipation_s"), 1e-3, 1
        )
        carryover[v] = _weight(
            path, f"visemes.{name}.carryover_s", spec.get("carryover_s"), 1e-3, 1
        )
        for channel in spec.get("critical", ()):
            if channel not in ARKIT_52:
                raise _fail(
                    path, f"visemes.{name}.critical names {channel!r}, not an ARKit-52 pose"
                )
            critical[v, ARKIT_52.index(channel)] = True
    phones: dict[str, tuple[tuple[int, float], ...]] = {}
    for phone, spec in data.get("phones", {}).items():
        parts = [(spec, 1.0)] if isinstance(spec, str) else [tuple(p) for p in spec]
        for viseme, _ in parts:
            if viseme not in visemes:
                raise _fail(path, f"phones.{phone} names viseme {viseme!r}, which is not defined")
        shares = [_weight(path, f"phones.{phone} share", share) for _, share in parts]
        if abs(sum(shares) - 1.0) > 1e-6:
            raise _fail(path, f"phones.{phone} shares sum to {sum(shares)}, not 1")
        phones[phone] = tuple((names.index(v), s) for (v, _), s in zip(parts, shares, strict=True))
    missing = [p for p in ARPABET if p not in phones]
    if missing:
        raise _fail(path, f"phones has no viseme for {', '.join(missing)}")
    return VisemeTable(
        names, targets, dominance, anticipation, carryover, critical, channel_group, phones,
        _weight(path, "plateau", data.get("plateau", 0.5)),
        _weight(path, "ramp_s", data.get("ramp_s", 0.05), 0.0, 0.5),
        nucleus, _weight(path, "nucleus_share", data.get("nucleus_share", 0.0)),
    )  # fmt: skip


@dataclass(frozen=True)
class VisemeTrack:
    """Viseme segments in time order: ``viseme[s]`` spans ``[start_s[s], end_s[s])``."""

    viseme: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray


def viseme_track(phones: list[Phone], table: VisemeTable) -> VisemeTrack:
    """Split phones into viseme segments (diphthongs become two) in time order."""
    rest = ((table.index("rest"), 1.0),)
    viseme, start, end = [], [], []
    for phone in phones:
        t = phone.start_s
        duration = phone.end_s - phone.start_s
        # Labels outside the table (none with the en-US model) are treated as silence.
        for v, share in table.phones.get(phone.label, rest):
            viseme.append(v)
            start.append(t)
            t += share * duration
            end.append(t)
    return VisemeTrack(np.array(viseme, np.int64), np.array(start), np.array(end))
