"""Pose names (ARKit-52 in Audio2Face order, the 16 tongue poses) and the one name matcher.

Both DCC adapters map the core's canonical names onto whatever their rigs call the shapes
(``AK_17_JawOpen``, ``Face.jawOpen``, ``blendShape1.JawOpen``, ``eyeBlink_L``...) through
:func:`match_name`, so that Blender and Maya agree on every rig.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: ARKit-52 in the order Audio2Face's blendshape solver emits them (SDK spec §1.5).
ARKIT_52: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward",
    "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft",
    "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft",
    "noseSneerRight", "tongueOut",
)  # fmt: skip

#: The 16 tongue poses of Audio2Face's tongue solver (SDK spec §1.5).
TONGUE_16: tuple[str, ...] = (
    "tongueTipUp", "tongueTipDown", "tongueTipLeft", "tongueTipRight", "tongueRollUp",
    "tongueRollDown", "tongueRollLeft", "tongueRollRight", "tongueUp", "tongueDown",
    "tongueLeft", "tongueRight", "tongueIn", "tongueStretch", "tongueWide", "tongueNarrow",
)  # fmt: skip

#: Live Link Face CSV column order: ARKit-52 in PascalCase, but JawRight before JawLeft and
#: MouthRight before MouthLeft, as a real take writes them.
LIVE_LINK_FACE_52: tuple[str, ...] = tuple(
    n[0].upper() + n[1:]
    for n in (
        ARKIT_52[:15] + ("jawRight", "jawLeft") + ARKIT_52[17:21] + ("mouthRight", "mouthLeft")
        + ARKIT_52[23:]
    )
)  # fmt: skip

#: The 9 head and eye rotation columns that follow the 52 blendshapes in Live Link Face CSV.
LIVE_LINK_FACE_ROTATIONS: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip

_SIDE_SUFFIX = re.compile(r"(?i)[._\- ]?(l|r)$")
_SCOPE_SEPARATORS = re.compile(r"[.:|/]")


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _candidate_keys(name: str) -> list[str]:
    """Squashed forms of ``name`` to try: the part after the last scope separator, then the whole.

    A trailing ``_L``/``.R``/``L`` side marker is read as Left/Right (``eyeBlink_L``).
    """
    tail = _SCOPE_SEPARATORS.split(name.strip())[-1]
    keys = []
    for part in (tail, name):
        side = _SIDE_SUFFIX.search(part)
        if side and not part.lower().endswith(("left", "right")):
            word = "left" if side.group(1).lower() == "l" else "right"
            keys.append(_squash(part[: side.start()]) + word)
        keys.append(_squash(part))
    return keys


def match_name(name: str, vocabulary: Sequence[str] = ARKIT_52) -> str | None:
    """The canonical pose name that a rig's shape name stands for, or None.

    Case-insensitive and tolerant of separators and prefixes: ``AK_17_JawOpen``,
    ``Face.jawOpen``, ``blendShape1.JawOpen``, ``jaw_open``, ``EyeBlink_L`` all match.
    The longest canonical name that the (squashed) shape name ends with wins, so that
    ``mouthSmileLeft`` never matches ``mouthLeft``.
    """
    table = {_squash(v): v for v in vocabulary}
    for key in _candidate_keys(name):
        if key in table:
            return table[key]
    best: str | None = None
    for key in _candidate_keys(name):
        for canon_key, canon in table.items():
            if key.endswith(canon_key) and (best is None or len(canon_key) > len(_squash(best))):
                best = canon
        if best is not None:
            return best
    return None


def map_names(
    target_names: Iterable[str], vocabulary: Sequence[str] = ARKIT_52
) -> tuple[dict[str, str], list[str]]:
    """Map every target shape name to a canonical name.

    Returns:
        ``(mapping, unmatched)``: ``mapping`` is target name → canonical name (several
        targets may share one canonical source); ``unmatched`` lists target names in input
        order that matched nothing (``Basis`` and friends included, for the UI to show).
    """
    mapping: dict[str, str] = {}
    unmatched: list[str] = []
    for target in target_names:
        canon = match_name(target, vocabulary)
        if canon is None:
            unmatched.append(target)
        else:
            mapping[target] = canon
    return mapping, unmatched


def missing_sources(mapping: dict[str, str], vocabulary: Sequence[str] = ARKIT_52) -> list[str]:
    """Canonical names that no target shape receives (for "unmatched" lists in the UI)."""
    used = set(mapping.values())
    return [v for v in vocabulary if v not in used]
