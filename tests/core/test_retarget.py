"""Mapping table, scene frame rates and key placement (``a2x_core.retarget``), no DCC needed."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core import AnimationResult
from a2x_core.errors import ParameterError
from a2x_core.names import ARKIT_52, TONGUE_16
from a2x_core.retarget import (
    ShapeTarget,
    auto_map,
    format_fps,
    frame_values,
    plan_bake,
    region_of,
    scene_fps,
    seconds_to_frames,
    targets_from_rows,
)


@pytest.mark.parametrize(
    ("fps", "base", "expected"),
    [
        (30, 1.001, Fraction(30000, 1001)),
        (24, 1.001, Fraction(24000, 1001)),
        (60, 1.001, Fraction(60000, 1001)),
        (30, np.float32(1.001), Fraction(30000, 1001)),  # Blender stores fps_base as float32
        (25, 1.0, Fraction(25)),
        (120, 1.0, Fraction(120)),
        (24, 2.0, Fraction(12)),
    ],
)
def test_scene_fps_is_exact(fps, base, expected) -> None:
    assert scene_fps(fps, base) == expected


def test_scene_fps_rejects_nonsense() -> None:
    with pytest.raises(ParameterError, match="fps_base"):
        scene_fps(30, 0.0)
    with pytest.raises(ParameterError):
        scene_fps(0, 1.0)


def test_format_fps() -> None:
    assert format_fps(Fraction(24)) == "24"
    assert format_fps(Fraction(30000, 1001)) == "30000/1001 (29.970)"


def test_auto_map_mixed_styles_one_shape_per_source_and_the_others_as_candidates() -> None:
    names = ["Basis", "AK_17_JawOpen", "Face.eyeBlinkLeft", "eyeBlink_R", "blendShape1.MouthClose",
             "Teeth.jawOpen", "wrinkle_extra"]  # fmt: skip
    found = auto_map(names)
    table = {t.target: t.source for t in found.targets}
    assert table == {
        "AK_17_JawOpen": "jawOpen", "Face.eyeBlinkLeft": "eyeBlinkLeft",
        "eyeBlink_R": "eyeBlinkRight", "blendShape1.MouthClose": "mouthClose",
    }  # fmt: skip
    assert found.candidates == (ShapeTarget("Teeth.jawOpen", "jawOpen"),)
    assert found.candidates_for("jawOpen") == ("Teeth.jawOpen",)
    assert found.candidates_for("eyeBlinkLeft") == ()
    assert found.unmatched_targets == ("Basis", "wrinkle_extra")
    assert "jawOpen" not in found.unused_sources and "cheekPuff" in found.unused_sources
    assert len(found.unused_sources) == 52 - 4
    # on purpose: one source drives every shape that matches it
    every = auto_map(names, every_match=True)
    assert {t.target: t.source for t in every.targets} == {**table, "Teeth.jawOpen": "jawOpen"}
    assert every.candidates == ()


@pytest.mark.parametrize(
    ("names", "best"),
    [
        (["AK_25_JawOpen", "jawOpen", "JawOpen"], "jawOpen"),  # the exact ARKit name first
        (["AK_25_JawOpen", "Face.jaw_open", "JawOpen"], "JawOpen"),  # then the Live Link casing
        (["SR_21_Jaw_Open", "AK_25_JawOpen"], "AK_25_JawOpen"),  # then the ARKit spelling
        (["Teeth.jawOpen", "jaw_open", "eyeBlink_L", "mouth_close"], "jaw_open"),  # larger family
    ],
)
def test_auto_map_picks_the_best_shape_for_a_source(names: list[str], best: str) -> None:
    found = auto_map(names)
    assert [t.target for t in found.targets if t.source == "jawOpen"] == [best]
    assert set(found.candidates_for("jawOpen")) == set(names) - {best} - {"eyeBlink_L", "mouth_close"}


def fbx_shape_names(path: Path) -> list[str]:
    """Shape key names of a binary FBX file, in file order: the names of its blend-shape
    ``Geometry`` records (``<name>\\x00\\x01Geometry``; the mesh's own record is unnamed)."""
    names = re.findall(rb"([A-Za-z0-9_.|]+)\x00\x01Geometry", path.read_bytes())
    return [n.decode() for n in names]


@pytest.mark.parametrize("head", ["Male_Adult_03_facial.fbx", "Female_Adult_02_ARKitDemo.fbx"])
def test_auto_map_on_a_rocketbox_head_maps_only_its_arkit_set(shared_data: Path, head: str) -> None:
    """A Rocketbox head carries ARKit (AK_*), SRanipal (SR_*), Headbox (HB_*), FACS (AU_*) and
    viseme (AA_*) shapes. Each ARKit curve drives its AK_* shape alone: SR_21_Jaw_Open beside
    AK_25_JawOpen would open the jaw again (2.4x as far on this head)."""
    path = shared_data / "head_mesh" / "rocketbox_headbox" / head
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    names = fbx_shape_names(path)
    assert "AK_25_JawOpen" in names and "SR_21_Jaw_Open" in names and len(names) > 150
    found = auto_map(names)
    arkit = {t.source: t.target for t in found.targets if t.source in ARKIT_52}
    assert len(arkit) == 52 and found.unused_sources == ()
    assert all(target.startswith("AK_") for target in arkit.values()), arkit
    assert arkit["jawOpen"] == "AK_25_JawOpen" and arkit["mouthLeft"] == "AK_33_MouthLeft"
    sources = [t.source for t in found.targets]
    assert len(sources) == len(set(sources)), "one shape per source"
    assert not [t for t in found.targets if t.target.startswith(("SR_", "AU_", "AA_"))]
    left_out = {c.target: c.source for c in found.candidates}
    assert left_out["SR_21_Jaw_Open"] == "jawOpen" and left_out["HB_08_TongueOut"] == "tongueOut"
    assert left_out["SR_34_Mouth_Smile_Left"] == "mouthSmileLeft"
    assert found.candidates_for("jawOpen") == ("SR_21_Jaw_Open",)
    assert all(c.target.startswith(("SR_", "HB_")) for c in found.candidates), left_out
    assert "AU_26_JawDrop" in found.unmatched_targets and "_Neutral" in found.unmatched_targets


def test_auto_map_on_the_vroid_head_takes_every_exact_name(shared_data: Path) -> None:
    folder = shared_data / "head_mesh" / "voice2motion_vroid_head" / "shape_keys"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    names = sorted(p.stem for p in folder.glob("*.obj"))
    found = auto_map(names)
    assert {t.target: t.source for t in found.targets} == {n: n for n in ARKIT_52}
    assert found.candidates == () and found.unmatched_targets == ("_neutral",)


def test_region_of() -> None:
    assert region_of("mouthSmileLeft") == "Mouth"
    assert region_of("eyeBlinkLeft") == "Eyes"
    assert region_of("tongueOut") == "Tongue"


def _ramp_result(frames: int, fps: Fraction, start_s: float = 0.0) -> AnimationResult:
    weights = np.tile(np.linspace(0, 1, frames, dtype=np.float32)[:, None], (1, 52))
    weights[:, ARKIT_52.index("jawOpen")] = 0.5
    return AnimationResult(weights=weights, fps=fps, start_s=start_s)


def test_plan_bake_places_keys_and_shapes_values() -> None:
    result = _ramp_result(10, Fraction(30))
    rows = [
        ShapeTarget("Jaw", "jawOpen", multiplier=0.5, offset=0.1),
        ShapeTarget("Teeth", "jawOpen"),
        ShapeTarget("Off", "cheekPuff", enabled=False),
        ShapeTarget("TongueTip", "tongueTipUp"),
    ]
    plan = plan_bake(result, rows, Fraction(30), start_frame=5)
    assert np.array_equal(plan.frames, 5 + np.arange(10))
    assert set(plan.channels) == {"Jaw", "Teeth"}
    assert np.allclose(plan.channels["Jaw"], 0.35) and np.allclose(plan.channels["Teeth"], 0.5)
    assert plan.missing_sources == ["tongueTipUp"]
    assert plan.frame_range == (5.0, 14.0)
    flat = plan.interleaved("Jaw")
    assert flat.dtype == np.float32 and flat[0] == 5 and np.isclose(flat[1], 0.35)


def test_a_live_frame_gets_the_value_a_bake_keys_for_it() -> None:
    from a2x_core.audio.accumulator import StreamFrame

    rng = np.random.default_rng(3)
    result = AnimationResult(weights=rng.random((6, 52), dtype=np.float32), fps=Fraction(30),
                             tongue_weights=rng.random((6, 16), dtype=np.float32),
                             tongue_names=TONGUE_16)  # fmt: skip
    rows = [ShapeTarget("Jaw", "jawOpen", multiplier=0.5, offset=0.1), ShapeTarget("Teeth", "jawOpen"),
            ShapeTarget("Off", "cheekPuff", enabled=False), ShapeTarget("Tip", "tongueTipUp")]  # fmt: skip
    plan = plan_bake(result, rows, Fraction(30), start_frame=1)
    for i in range(6):
        frame = StreamFrame(index=i, time_s=i / 30, weights=result.weights[i],
                            tongue_weights=result.tongue_weights[i], jaw_transform=np.eye(4),
                            eye_rotations=np.zeros(6), emotions=np.zeros(10))  # fmt: skip
        values = frame_values(frame, rows)
        assert set(values) == {"Jaw", "Teeth", "Tip"}
        assert all(values[t] == float(plan.channels[t][i]) for t in values)
    with pytest.raises(ParameterError, match="not a pose name"):
        frame_values(frame, [ShapeTarget("x", "smirk")])


def test_plan_bake_unknown_source_is_an_error() -> None:
    with pytest.raises(ParameterError, match="not a pose name"):
        plan_bake(_ramp_result(4, Fraction(30)), [ShapeTarget("x", "smirk")], Fraction(30), 1)


def test_plan_bake_resamples_onto_whole_scene_frames() -> None:
    result = _ramp_result(61, Fraction(60))  # 1 s of a 0..1 ramp at 60 fps
    scene = Fraction(30000, 1001)
    plan = plan_bake(result, [ShapeTarget("B", "browInnerUp")], scene, start_frame=1)
    assert np.array_equal(plan.frames, 1 + np.arange(plan.frames.size))  # whole frames
    assert plan.frames.size == 30  # frames 0..29 at 29.97 lie inside the 1 s clip
    times = np.arange(30) * 1001 / 30000
    assert np.allclose(plan.channels["B"], times, atol=1e-6)  # the ramp is time itself


def test_plan_bake_honours_the_clip_start_time() -> None:
    result = _ramp_result(24, Fraction(24), start_s=1.0)  # animated from 1 s into the audio
    plan = plan_bake(result, [ShapeTarget("J", "jawOpen")], Fraction(24), start_frame=10)
    assert plan.frames[0] == 10 + 24 and plan.frames[-1] == 10 + 24 + 23


def test_targets_from_rows_and_seconds_to_frames() -> None:
    rows = targets_from_rows([{"target": "A", "source": "jawOpen", "multiplier": 2}])
    assert rows == [ShapeTarget("A", "jawOpen", 2.0, 0.0, True)]
    assert seconds_to_frames(11.0, Fraction(30000, 1001)) == 330
    assert seconds_to_frames(1.0, Fraction(24)) == 24
