"""The viseme table is data: it must load, cover every phone and keep weights in [0, 1]."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from a2x_core.errors import ModelPackageError
from a2x_core.lipsync.phones import Phone
from a2x_core.lipsync.visemes import ARPABET, DEFAULT_TABLE, load_table, viseme_track
from a2x_core.names import ARKIT_52


def test_default_table_covers_every_phone_with_valid_weights() -> None:
    table = load_table()
    assert set(ARPABET) <= set(table.phones)
    assert table.targets.shape == (len(table.names), len(ARKIT_52))
    assert table.targets.dtype == np.float32
    assert (table.targets >= 0).all() and (table.targets <= 1).all()
    assert (table.dominance > 0).all()
    assert not table.targets[table.index("rest")].any(), "silence must be the neutral pose"


def test_articulatory_targets_are_where_the_phonetics_puts_them() -> None:
    table = load_table()

    def target(phone: str, channel: str) -> float:
        return float(table.targets[table.phones[phone][0][0], ARKIT_52.index(channel)])

    for phone in ("P", "B", "M"):
        assert target(phone, "mouthPressLeft") >= 0.5 and target(phone, "jawOpen") <= 0.05
    for phone in ("F", "V"):
        assert target(phone, "mouthRollLower") >= 0.5 and target(phone, "mouthUpperUpLeft") > 0
    for phone in ("UW", "W"):
        assert target(phone, "mouthPucker") >= 0.5
    for phone in ("TH", "DH"):
        assert target(phone, "tongueOut") >= 0.5
    assert target("AA", "jawOpen") > target("IY", "jawOpen")


def test_diphthongs_split_into_two_segments() -> None:
    table = load_table()
    track = viseme_track([Phone("AY", 0.0, 0.2)], table)
    assert len(track.viseme) == 2
    assert track.start_s[0] == 0.0 and track.end_s[-1] == pytest.approx(0.2)
    assert track.end_s[0] == pytest.approx(track.start_s[1])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["visemes"]["open"]["targets"].update(jawOpen=1.5), "jawOpen"),
        (lambda d: d["visemes"]["open"]["targets"].update(jawOpn=0.5), "jawOpn"),
        (lambda d: d["phones"].pop("M"), "no viseme for M"),
        (lambda d: d["phones"].update(AY=[["open", 0.5], ["close_front", 0.4]]), "sum"),
        (lambda d: d["visemes"].pop("rest"), "rest"),
    ],
)
def test_broken_tables_name_the_key_at_fault(tmp_path: Path, edit, message: str) -> None:
    data = json.loads(DEFAULT_TABLE.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "visemes.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelPackageError, match=message):
        load_table(path)
