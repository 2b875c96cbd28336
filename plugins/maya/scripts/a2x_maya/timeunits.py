"""Maya time units as exact frame rates, and scene time <-> frame conversion.

``cmds.currentUnit(q=True, time=True)`` answers a unit name ("film", "ntsc", "29.97fps",
"29.97df", "120fps"...); each maps to an exact :class:`~fractions.Fraction` so that 29.97 is
30000/1001 and keys land on whole frames at any rate. The node itself reads time in seconds
(``MTime.asUnits(MTime.kSeconds)``), so only baking needs the rate.
"""

from __future__ import annotations

import re
from fractions import Fraction

from a2x_core.errors import ParameterError
from a2x_core.timing import parse_fps

#: Named Maya time units -> frames per second (Maya's ``currentUnit -time`` names).
_NAMED: dict[str, Fraction] = {
    "game": Fraction(15), "film": Fraction(24), "pal": Fraction(25), "ntsc": Fraction(30),
    "show": Fraction(48), "palf": Fraction(50), "ntscf": Fraction(60),
    "23.976fps": Fraction(24000, 1001), "29.97fps": Fraction(30000, 1001),
    "29.97df": Fraction(30000, 1001), "47.952fps": Fraction(48000, 1001),
    "59.94fps": Fraction(60000, 1001), "119.88fps": Fraction(120000, 1001),
}  # fmt: skip
#: Clock units: not frame rates; the player then infers at 60 fps and bakes in seconds.
_CLOCK = {"hour", "min", "sec", "millisec"}
_FPS = re.compile(r"^(\d+(?:\.\d+)?)fps$")

#: Inference rate when the scene's unit is a clock unit (and Maya-ACE's A2F sample rate).
FALLBACK_FPS = Fraction(60)


def fps_of_unit(unit: str) -> Fraction | None:
    """Exact frames per second of a Maya time unit, or None for clock units (sec, min...).

    Raises:
        ParameterError: a unit Maya does not have.
    """
    name = unit.strip().lower()
    if name in _NAMED:
        return _NAMED[name]
    if name in _CLOCK:
        return None
    match = _FPS.match(name)
    if match:
        return parse_fps(match.group(1), parameter="time unit")
    raise ParameterError(f"Maya time unit {unit!r} is unknown", hint="use film, ntsc, 30fps...")


def inference_fps(unit: str) -> Fraction:
    """The rate to run the model at: the scene's frame rate, or 60 for clock units."""
    return fps_of_unit(unit) or FALLBACK_FPS


def frame_of_seconds(seconds: float, fps: Fraction) -> float:
    """Scene frame of a time in seconds (frame 0 at time 0, as ``MTime``)."""
    return seconds * fps.numerator / fps.denominator


def seconds_of_frame(frame: float, fps: Fraction) -> float:
    """Time in seconds of a scene frame."""
    return frame * fps.denominator / fps.numerator


def fps_of_rate(frames_per_second: float) -> Fraction:
    """Exact rate from a float (``MTime(1, kSeconds).asUnits(uiUnit)``): 29.97002997 ->
    30000/1001."""
    return parse_fps(Fraction(frames_per_second).limit_denominator(1001), parameter="time unit")
