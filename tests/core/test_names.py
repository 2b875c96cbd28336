"""Pose-name tables and the one name matcher both DCC adapters use."""

from __future__ import annotations

import csv

import pytest

from a2x_core.names import (
    ARKIT_52,
    LIVE_LINK_FACE_52,
    TONGUE_16,
    map_names,
    match_name,
    missing_sources,
)


def test_tables_have_the_sdk_sizes_and_anchors() -> None:
    assert len(ARKIT_52) == 52 and len(set(ARKIT_52)) == 52
    # indices the SDK's tests confirm (spec §1.5)
    assert ARKIT_52[0] == "eyeBlinkLeft" and ARKIT_52[38] == "mouthLowerDownRight"
    assert ARKIT_52[51] == "tongueOut" and ARKIT_52[17] == "jawOpen"
    assert len(TONGUE_16) == 16 and TONGUE_16[0] == "tongueTipUp" and TONGUE_16[15] == "tongueNarrow"
    assert TONGUE_16[6] == "tongueRollLeft"


def test_live_link_order_matches_a_real_take(shared_data) -> None:
    with open(shared_data / "arkit_capture_no_audio" / "livelinkface_alex_rom_3.csv") as handle:
        header = next(csv.reader(handle))
    assert tuple(header[2:54]) == LIVE_LINK_FACE_52
    assert sorted(n.lower() for n in LIVE_LINK_FACE_52) == sorted(n.lower() for n in ARKIT_52)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AK_17_JawOpen", "jawOpen"),
        ("Face.jawOpen", "jawOpen"),
        ("blendShape1.JawOpen", "jawOpen"),
        ("jaw_open", "jawOpen"),
        ("JAWOPEN", "jawOpen"),
        ("EyeBlink_L", "eyeBlinkLeft"),
        ("eyeBlink.R", "eyeBlinkRight"),
        ("mouth_smile_l", "mouthSmileLeft"),
        ("mouthSmileLeft", "mouthSmileLeft"),
        ("MouthLeft", "mouthLeft"),
        ("CTRL:brow_inner_up", "browInnerUp"),
        ("head|face|cheekPuff", "cheekPuff"),
        ("Basis", None),
        ("smile", None),
        ("", None),
    ],
)
def test_match_name_tolerates_prefixes_separators_and_sides(name: str, expected: str | None) -> None:
    assert match_name(name) == expected


def test_longest_match_wins_so_smile_never_maps_to_mouth_left() -> None:
    assert match_name("AK_23_MouthSmileLeft") == "mouthSmileLeft"
    assert match_name("AK_21_MouthLeft") == "mouthLeft"


def test_every_canonical_name_matches_itself_in_every_style() -> None:
    for name in ARKIT_52:
        assert match_name(name) == name
        assert match_name(name.upper()) == name
        assert match_name(f"Face.{name[0].upper()}{name[1:]}") == name
    for name in TONGUE_16:
        assert match_name(name, TONGUE_16) == name


def test_map_names_reports_unmatched_and_missing() -> None:
    mapping, unmatched = map_names(["Basis", "AK_17_JawOpen", "jaw_open_copy", "Face.jawOpen"])
    assert mapping == {"AK_17_JawOpen": "jawOpen", "Face.jawOpen": "jawOpen"}
    assert unmatched == ["Basis", "jaw_open_copy"]
    assert "eyeBlinkLeft" in missing_sources(mapping) and "jawOpen" not in missing_sources(mapping)
