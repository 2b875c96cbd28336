"""Emotion input of Audio2Face-3D regression networks, and its CLI/file parsers.

The network's ``emotion`` input is 26 values per frame: the 16-d *implicit* emotion (one row of
``implicit_emo_db.npz``, chosen by ``source_shot``/``source_frame`` and held constant, spec §1.3)
followed by the 10 *explicit* emotions (spec §2). Explicit emotions come from keys
``(time_s, {name: value})``: one key is a constant; several form a curve sampled at every frame's
target sample like the SDK's ``EmotionAccumulator`` (spec §3): clamped to the first key before it
and to the last key after it, linear in between.

Key times are seconds of the source audio file (the timeline of ``AnimationResult.times_s``);
a key's missing emotions take the model's ``default_emotion`` (zeros for shipped models).
"""

from __future__ import annotations

import csv
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..inputs import loads_json, read_text_file
from ..options import MAX_TIME_S, EmotionKey
from ..timing import SAMPLE_RATE

#: The 10 explicit emotions of every Audio2Face-3D model, in network order (spec §1.3, A.4).
A2F_EMOTIONS: tuple[str, ...] = (
    "amazement", "anger", "cheekiness", "disgust", "fear", "grief", "joy", "outofbreath",
    "pain", "sadness",
)  # fmt: skip


def _squash(name: str) -> str:
    # "out_of_breath" (the NIM spelling, A.4), "OutOfBreath" and "outofbreath" are one name
    return re.sub(r"[^0-9a-z]", "", name.lower())


def resolve_emotion_name(
    name: str, names: Sequence[str] = A2F_EMOTIONS, *, source: str = ""
) -> str:
    """The canonical emotion name ``name`` stands for (case and ``_`` insensitive).

    Raises:
        ParameterError: unknown name, listing the valid ones.
    """
    table = {_squash(n): n for n in names}
    canon = table.get(_squash(name))
    if canon is None:
        where = f"{source}: " if source else ""
        raise ParameterError(
            f"{where}unknown emotion {name!r}", hint=f"use one of: {', '.join(names)}"
        )
    return canon


def _as_float(value: Any) -> float | None:
    """A real number as a float; None for non-numbers and integers too large for a float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _check_value(name: str, value: Any, source: str) -> float:
    number = _as_float(value)
    if number is None:
        raise ParameterError(f"{source}: emotion {name} must be a number in 0..1, found "
                             f"{_short(value)}")  # fmt: skip
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ParameterError(f"{source}: emotion {name}={_short(value)} is out of range",
                             hint="use 0..1")  # fmt: skip
    return number


def _check_time(value: Any, source: str) -> float:
    number = _as_float(value)
    if number is None or not math.isfinite(number):
        raise ParameterError(f"{source}: key time {_short(value)} is not a number of seconds",
                             hint=f"use seconds in 0..{MAX_TIME_S:g}")  # fmt: skip
    if number < 0:
        raise ParameterError(f"{source}: key time {value} is negative", hint="use seconds >= 0")
    if number > MAX_TIME_S:
        raise ParameterError(f"{source}: key time {_short(value)} is out of range",
                             hint=f"use seconds in 0..{MAX_TIME_S:g}")  # fmt: skip
    return number


def _short(value: Any) -> str:
    """``repr`` of a user value, cut to a readable length (a 400-digit number, a long text)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}…{text[-10:]} ({len(text)} characters)"


def normalize_keys(
    keys: Sequence[EmotionKey], names: Sequence[str] = A2F_EMOTIONS, *, source: str = "emotions"
) -> tuple[EmotionKey, ...]:
    """Keys sorted by time with canonical names and checked values (0..1, finite).

    Raises:
        ParameterError: unknown names, values out of range, two keys at the same time.
    """
    out: list[EmotionKey] = []
    for time_s, values in keys:
        if not isinstance(values, Mapping):
            raise ParameterError(f"{source}: a key must map emotion names to values")
        checked = {
            resolve_emotion_name(n, names, source=source): _check_value(n, v, source)
            for n, v in values.items()
        }
        out.append((_check_time(time_s, source), checked))
    out.sort(key=lambda key: key[0])
    for (t0, _), (t1, _) in zip(out, out[1:], strict=False):
        if t0 == t1:
            raise ParameterError(
                f"{source}: two keys at {t0} s", hint="merge them or give them different times"
            )
    return tuple(out)


class EmotionCurve:
    """Explicit emotions over time, sampled like the SDK's ``EmotionAccumulator`` (spec §3).

    Keys sit at integer sample timestamps (16 kHz), strictly increasing.
    """

    def __init__(self, timestamps: np.ndarray, values: np.ndarray) -> None:
        self.timestamps = np.asarray(timestamps, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float32)
        if len(self.timestamps) == 0 or np.any(np.diff(self.timestamps) <= 0):
            raise ParameterError("emotion keys must be at strictly increasing times")

    def sample(self, timestamps: np.ndarray) -> np.ndarray:
        """``[n, E]`` float32 values at sample ``timestamps``."""
        ts = np.asarray(timestamps, dtype=np.int64)
        keys, vals = self.timestamps, self.values
        if len(keys) == 1:
            return np.repeat(vals[:1], len(ts), axis=0)
        hi = np.clip(np.searchsorted(keys, ts, side="right"), 1, len(keys) - 1)
        lo = hi - 1
        t = ((ts - keys[lo]).astype(np.float32) / (keys[hi] - keys[lo]).astype(np.float32)).astype(
            np.float32
        )[:, None]
        a, b = vals[lo].astype(np.float64), vals[hi].astype(np.float64)
        t64 = t.astype(np.float64)
        # fma(t, b, fma(-t, a, a)) in float32: each fma rounded once (float64 holds the
        # products of two float32 values exactly).
        inner = (a - t64 * a).astype(np.float32).astype(np.float64)
        out = (t64 * b + inner).astype(np.float32)
        out[ts <= keys[0]] = vals[0]  # before or at the first key: the first key
        out[ts >= keys[-1]] = vals[-1]  # at or after the last key: the last key
        exact = np.isin(ts, keys)
        if exact.any():  # an exact hit copies the key
            out[exact] = vals[np.searchsorted(keys, ts[exact])]
        return out


def explicit_emotion_curve(
    keys: Sequence[EmotionKey],
    names: Sequence[str],
    default: np.ndarray,
    *,
    start_s: float = 0.0,
) -> EmotionCurve:
    """The explicit-emotion curve of one track.

    Args:
        keys: ``(time_s, {name: value})`` in seconds of the source file; () = ``default``.
        names: the model's explicit emotion names, in network order.
        default: the model's ``default_emotion`` (used for missing names and when no keys).
        start_s: where the track's sample 0 sits in the source file.
    """
    default = np.asarray(default, dtype=np.float32)
    if not keys:  # the SDK with no A2E: one vector at timestamp 0, closed (spec §3)
        return EmotionCurve(np.zeros(1, np.int64), default[None, :])
    keys = normalize_keys(keys, names)
    stamps = [round((t - start_s) * SAMPLE_RATE) for t, _ in keys]
    if any(b <= a for a, b in zip(stamps, stamps[1:], strict=False)):
        raise ParameterError(
            "emotion keys are closer than one audio sample", hint="space keys at least 1/16000 s"
        )
    values = np.repeat(default[None, :], len(keys), axis=0)
    index = {n: i for i, n in enumerate(names)}
    for row, (_, mapping) in enumerate(keys):
        for name, value in mapping.items():
            values[row, index[name]] = value
    return EmotionCurve(np.asarray(stamps, dtype=np.int64), values)


def track_emotion_keys(
    track_emotions: Sequence[Sequence[EmotionKey]] | None,
    default: Sequence[EmotionKey],
    count: int,
) -> list[Sequence[EmotionKey]]:
    """The emotion keys of each of ``count`` tracks: ``track_emotions[k]`` (an animate call's
    per-track keys, e.g. each clip's detected emotions), or ``default`` (``options.emotions``)
    for every track without them. The keys themselves are checked where the curve is built
    (:func:`explicit_emotion_curve`); here only their shape.

    Raises:
        ParameterError: ``track_emotions`` is not a sequence of one key sequence per track.
    """
    if track_emotions is None:
        return [default] * count
    if isinstance(track_emotions, str | bytes | Mapping) or not isinstance(
        track_emotions, Sequence
    ):
        raise ParameterError(
            f"track_emotions must be a sequence of emotion keys per track, found "
            f"{_short(track_emotions)}",
            hint="pass one tuple of (time_s, {name: value}) keys per track, or None",
        )
    if len(track_emotions) != count:
        raise ParameterError(
            f"track_emotions has {len(track_emotions)} entries for {count} tracks",
            hint="pass one tuple of emotion keys per track, in the tracks' order",
        )
    for number, keys in enumerate(track_emotions):
        if isinstance(keys, str | bytes | Mapping) or not isinstance(keys, Sequence):
            raise ParameterError(
                f"track_emotions[{number}] must be a sequence of (time_s, {{name: value}}) "
                f"keys, found {_short(keys)}"
            )
        for key in keys:
            if (
                not isinstance(key, tuple | list)
                or len(key) != 2
                or not isinstance(key[1], Mapping)
            ):
                raise ParameterError(
                    f"track_emotions[{number}] has the key {_short(key)}; a key is "
                    "(time_s, {name: value})"
                )
    return list(track_emotions)


# ----------------------------------------------------------------------------- CLI helpers


def parse_emotion_args(values: Sequence[str]) -> tuple[EmotionKey, ...]:
    """Parse ``--emotion`` flags into emotion keys.

    Each flag is ``NAME=VALUE`` (a constant), ``T:NAME=VALUE`` (a key at T seconds of the source
    audio), and may hold several comma-separated pairs (``T:joy=0.7,anger=0.2``). Flags with the
    same time form one key. Constants (no ``T:``) hold for the whole clip: with timed flags they
    are added to every key that does not set that emotion. Values are in 0..1.

    Example: ``--emotion joy=0.7 --emotion anger=0.2`` or
    ``--emotion 0:joy=0 --emotion 2.5:joy=1``.

    Raises:
        ParameterError: malformed flag, unknown emotion, value out of range.
    """
    constant: dict[str, float] = {}
    timed: dict[float, dict[str, float]] = {}
    for raw in values:
        text = raw.strip()
        time_s: float | None = None
        head, sep, tail = text.partition(":")
        if sep and "=" not in head:
            try:
                time_s = float(head)
            except ValueError:
                raise ParameterError(
                    f"--emotion {raw!r}: {head!r} is not a time in seconds",
                    hint="write --emotion joy=0.7 or --emotion 2.5:joy=0.7",
                ) from None
            text = tail
        target = constant if time_s is None else timed.setdefault(time_s, {})
        for pair in filter(None, (p.strip() for p in text.split(","))):
            name, eq, value = pair.partition("=")
            if not eq or not name.strip():
                raise ParameterError(
                    f"--emotion {raw!r} is not NAME=VALUE", hint="write e.g. --emotion joy=0.7"
                )
            try:
                number = float(value)
            except ValueError:
                raise ParameterError(
                    f"--emotion {raw!r}: {value!r} is not a number", hint="use a value in 0..1"
                ) from None
            canon = resolve_emotion_name(name.strip(), source=f"--emotion {raw!r}")
            target[canon] = _check_value(canon, number, f"--emotion {raw!r}")
    if not timed:
        return ((0.0, constant),) if constant else ()
    keys = [(t, {**constant, **mapping}) for t, mapping in timed.items()]
    return normalize_keys(keys, source="--emotion")


def load_emotion_track(path: str | Path) -> tuple[EmotionKey, ...]:
    """Read an emotion track file (``--emotion-track``) as emotion keys.

    JSON (``.json``)::

        {"keys": [{"time_s": 0.0, "emotions": {"joy": 0.0}},
                  {"time_s": 2.5, "emotions": {"joy": 1.0, "anger": 0.2}}]}

    (a bare list of the key objects is accepted too).

    CSV (``.csv``): a header ``time_s,<emotion>,<emotion>...`` then one row per key; an empty
    cell leaves that emotion at the model default (0); ``#`` lines are comments::

        time_s,joy,anger
        0.0,0.0,0.0
        2.5,1.0,0.2

    Times are seconds of the source audio; values are 0..1; names are the 10 Audio2Face
    emotions (amazement, anger, cheekiness, disgust, fear, grief, joy, outofbreath, pain,
    sadness; ``out_of_breath`` is accepted).

    Raises:
        ParameterError: missing/unreadable file, bad format, unknown emotion, bad value.
    """
    file = Path(path)
    source = str(file)
    text = read_text_file(file, what="emotion track file", flag="--emotion-file")
    suffix = file.suffix.lower()
    if suffix == ".json":
        keys = _keys_from_json(text, source)
    elif suffix == ".csv":
        keys = _keys_from_csv(text, source)
    else:
        raise ParameterError(
            f"{source}: unknown emotion track format {suffix!r}", hint="use a .json or .csv file"
        )
    if not keys:
        raise ParameterError(f"{source}: has no keys", hint="add at least one key")
    return normalize_keys(keys, source=source)


def _keys_from_json(text: str, source: str) -> list[EmotionKey]:
    try:
        data = loads_json(text, source)
    except ValueError as error:
        raise ParameterError(f"{source}: is not valid JSON ({error})") from None
    items = data.get("keys") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ParameterError(
            f'{source}: expected {{"keys": [...]}} or a list of keys',
            hint='write {"keys": [{"time_s": 0, "emotions": {"joy": 0.5}}]}',
        )
    keys: list[EmotionKey] = []
    for number, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or "time_s" not in item
            or not isinstance(item.get("emotions"), dict)
        ):
            raise ParameterError(
                f'{source}: key {number} needs "time_s" and an "emotions" object',
                hint='write {"time_s": 0, "emotions": {"joy": 0.5}}',
            )
        keys.append((item["time_s"], item["emotions"]))
    return keys


def _keys_from_csv(text: str, source: str) -> list[EmotionKey]:
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    try:
        rows = list(csv.reader(lines))
    except csv.Error as error:  # e.g. a field beyond the csv module's 131,072-character limit
        raise ParameterError(
            f"{source}: not a readable CSV ({error})", hint="header: time_s,joy,anger,..."
        ) from None
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    if not header or header[0] != "time_s":
        raise ParameterError(
            f"{source}: the first column must be 'time_s'", hint="header: time_s,joy,anger,..."
        )
    names = [resolve_emotion_name(h, source=source) for h in header[1:]]
    keys: list[EmotionKey] = []
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ParameterError(
                f"{source}: row {line_number} has {len(row)} cells, the header has {len(header)}"
            )
        try:
            time_s = float(row[0])
            values = {n: float(c) for n, c in zip(names, row[1:], strict=True) if c.strip()}
        except ValueError:
            raise ParameterError(
                f"{source}: row {line_number} has a cell that is not a number"
            ) from None
        keys.append((time_s, values))
    return keys


def parse_parameter_args(values: Sequence[str], *, flag: str = "--param") -> dict[str, Any]:
    """Parse ``--param KEY=VALUE`` flags into ``InferenceOptions.parameters`` (``flag`` names
    the flag in messages: ``--emotion-param`` fills ``emotion_parameters`` the same way).

    VALUE is read as JSON when it parses (``1.2``, ``true``, ``[1, 0, 1]``,
    ``{"jawOpen": 1.2}``), else as comma-separated numbers (``1,0,1``), else as a string
    (``source_shot=cp1_neutral``). Keys are checked later against the model
    (``a2x info --model ...`` lists them).

    Raises:
        ParameterError: a flag without ``=``, an empty key, or the same key twice.
    """
    out: dict[str, Any] = {}
    example = "emotion_strength=1.0" if flag == "--emotion-param" else "input_strength=1.0"
    for raw in values:
        key, eq, text = raw.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ParameterError(
                f"{flag} {raw!r} is not KEY=VALUE", hint=f"write e.g. {flag} {example}"
            )
        if key in out:
            raise ParameterError(f"{flag} {key} is given twice", hint="keep one of them")
        text = text.strip()
        label = f"{flag} {key}"
        try:
            value: Any = loads_json(text, label)
        except ValueError:
            value = text
            if "," in text:
                try:
                    value = [loads_json(part, label) for part in text.split(",")]
                except ValueError:
                    value = text
        out[key] = value
    return out
