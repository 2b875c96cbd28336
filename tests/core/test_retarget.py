"""Mapping table, scene frame rates and key placement (``a2x_core.retarget``), no DCC needed."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from a2x_core import AnimationResult
from a2x_core.errors import ParameterError
from a2x_core.names import ARKIT_52
from a2x_core.retarget import (
    ShapeTarget,
    auto_map,
    format_fps,
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


def test_auto_map_mixed_styles_and_one_source_to_many() -> None:
    names = ["Basis", "AK_17_JawOpen", "Face.eyeBlinkLeft", "eyeBlink_R", "blendShape1.MouthClose",
             "Teeth.jawOpen", "wrinkle_extra"]  # fmt: skip
    found = auto_map(names)
    table = {t.target: t.source for t in found.targets}
    assert table == {
        "AK_17_JawOpen": "jawOpen", "Face.eyeBlinkLeft": "eyeBlinkLeft",
        "eyeBlink_R": "eyeBlinkRight", "blendShape1.MouthClose": "mouthClose",
        "Teeth.jawOpen": "jawOpen",
    }  # fmt: skip
    assert found.unmatched_targets == ("Basis", "wrinkle_extra")
    assert "jawOpen" not in found.unused_sources and "cheekPuff" in found.unused_sources
    assert len(found.unused_sources) == 52 - 4


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
