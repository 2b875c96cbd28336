"""Pure decisions of the Maya plug-in: tables, units, parameters, cache keys, lookup, names."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from a2x_maya import attributes as A
from a2x_maya import modfile
from a2x_maya.bake import audio_start_frame, plan_frames, plan_keys
from a2x_maya.connect import Link, parse_alias_list, plan_connections
from a2x_maya.parameters import (
    PlaybackControls,
    PlayerInputs,
    attribute_defaults_for_model,
    model_parameter_defaults,
    track_key,
)
from a2x_maya.timeunits import fps_of_rate, fps_of_unit, frame_of_seconds, inference_fps
from a2x_maya.track import Track, to_maya_matrices

from a2x_core.errors import ParameterError
from a2x_core.model_package import ANIMATOR_RANGES
from a2x_core.version import __version__

from .conftest import make_result


def test_mod_file_matches_the_version_source() -> None:
    # GIVEN the single version source WHEN the .mod is rendered THEN the file matches it
    assert modfile.MOD_PATH.read_text(encoding="utf-8") == modfile.render_mod(__version__)
    assert modfile.main(["--check"]) == 0
    assert modfile.render_mod("9.9.9").splitlines()[0] == "+ a2x 9.9.9 ."


def test_attribute_tables_are_consistent_with_the_core() -> None:
    aliases = [alias for alias, _ in A.all_aliases()]
    assert len(aliases) == len(set(aliases))
    assert len(A.OUTPUT_POSES) == 68 and A.OUTPUT_WEIGHTS.aliases()[17] == ("out_jawOpen", "outputWeights[17]")
    shorts = [s for _, s, *_ in A.SOURCE_ATTRS] + [a.short for a in A.PARAMETER_ATTRS + A.EMOTION_ATTRS]
    shorts += [a.short for a in A.INPUT_ARRAYS + A.OUTPUT_ARRAYS]
    assert len(shorts) == len(set(shorts))
    for attr in A.PARAMETER_ATTRS:  # Maya-ACE's hard ranges are the SDK's validator ranges
        assert ANIMATOR_RANGES[attr.core_key] == (attr.min, attr.max), attr.name
        assert attr.min <= attr.default <= attr.max
    assert all(a.keyable for a in A.INPUT_ARRAYS[:4]) and not any(a.keyable for a in A.PARAMETER_ATTRS)
    with pytest.raises(KeyError, match="lowerFaceStrength"):
        A.scalar_by_name("nope")


@pytest.mark.parametrize(
    ("unit", "fps"),
    [("film", Fraction(24)), ("ntsc", Fraction(30)), ("29.97fps", Fraction(30000, 1001)),
     ("29.97df", Fraction(30000, 1001)), ("23.976fps", Fraction(24000, 1001)),
     ("120fps", Fraction(120)), ("ntscf", Fraction(60)), ("sec", None)],
)  # fmt: skip
def test_maya_time_units_are_exact(unit: str, fps: Fraction | None) -> None:
    assert fps_of_unit(unit) == fps
    assert inference_fps(unit) == (fps or Fraction(60))


def test_time_conversions() -> None:
    assert fps_of_rate(29.97002997002997) == Fraction(30000, 1001)
    assert fps_of_rate(24.0) == 24
    assert frame_of_seconds(1001 / 30000 * 90, Fraction(30000, 1001)) == pytest.approx(90)
    with pytest.raises(ParameterError, match="unknown"):
        fps_of_unit("fortnight")


def _inputs(path: Path, **changes: object) -> PlayerInputs:
    values = {"audioFile": str(path), "modelPath": "default", **changes}
    return PlayerInputs.from_values(values, Fraction(24))


def test_player_inputs_validate_and_name_the_fix(wav: Path) -> None:
    _inputs(wav).validate()
    with pytest.raises(ParameterError, match="no audio file; set audioFile"):
        PlayerInputs.from_values({}, Fraction(24)).validate()
    with pytest.raises(ParameterError, match="not found"):
        _inputs(wav.with_name("missing.wav")).validate()
    with pytest.raises(ParameterError, match=r"lowerFaceStrength=2.5 is out of range; use a value in \[0.0, 2.0\]"):
        _inputs(wav, lowerFaceStrength=2.5).validate()
    with pytest.raises(ParameterError, match="audioEnd"):
        _inputs(wav, audioStart=1.0, audioEnd=0.5).validate()
    with pytest.raises(ParameterError, match="preferred_joy"):
        _inputs(wav, preferredEmotions={6: 1.5}).validate()


def test_options_pass_only_what_the_model_takes(wav: Path) -> None:
    inputs = _inputs(wav, lowerFaceStrength=1.5, audioStart=0.25, preferredEmotions={6: 1.0})
    default = inputs.options(accepted_parameters=None)
    assert dict(default.parameters) == {} and default.emotions == () and default.fps == 24
    assert default.start_s == 0.25 and default.end_s is None
    a2f = inputs.options(["lower_face_strength", "skin_strength"], ("amazement", "joy"))
    assert dict(a2f.parameters) == {"lower_face_strength": 1.5, "skin_strength": 1.0}
    assert a2f.emotions == ((0.0, {"joy": pytest.approx(0.6 * 0.5)}),)
    disabled = _inputs(wav, enablePreferredEmotion=0.0, preferredEmotions={6: 1.0})
    assert disabled.options(None, ("joy",)).emotions == ()


def test_cache_key_tracks_inference_inputs_only(wav: Path) -> None:
    key = track_key(_inputs(wav))
    assert track_key(_inputs(wav, audioOffset=3.0)) == key  # offset shifts playback only
    assert track_key(_inputs(wav, faceMultipliers={17: 2.0})) == key  # applied at playback
    assert track_key(_inputs(wav, skinStrength=0.5)) != key
    assert track_key(_inputs(wav, modelPath="/m/model.json")) != key
    os.utime(wav, ns=(1, 1))  # re-recorded file
    assert track_key(_inputs(wav)) != key


def test_model_defaults_from_info() -> None:
    info = {"parameters": {"skin_strength": 1.1, "lower_face_strength": {"default": 1.4},
                           "source_shot": "x", "flag": True}}  # fmt: skip
    assert model_parameter_defaults(info) == {"skin_strength": 1.1, "lower_face_strength": 1.4}
    assert attribute_defaults_for_model(info) == {"skinStrength": 1.1, "lowerFaceStrength": 1.4}
    assert model_parameter_defaults({}) == {}
    with pytest.raises(ParameterError):
        attribute_defaults_for_model({"parameters": {"skin_strength": 9.0}})


def test_track_lookup_interpolates_clamps_and_applies_controls() -> None:
    track = Track(make_result(frames=30, fps=Fraction(30)), offset_s=1.0)
    at = track.sample(1.0 + 2.5 / 30)  # halfway between frames 2 and 3
    assert at.weights[0] == pytest.approx(0.025) and at.weights[17] == pytest.approx(0.195)
    assert track.sample(0.0).weights[0] == 0.0  # before the audio: held at frame 0
    assert track.sample(100.0).weights[0] == pytest.approx(0.29)  # after: last frame
    assert at.weights[52:] == (0.0,) * 16  # no tongue from this model
    controls = PlaybackControls.from_values({"faceMultipliers": {17: 2.0}, "faceOffsets": {17: 0.1}})
    assert track.sample(1.0 + 2 / 30, controls).weights[17] == pytest.approx(0.19 * 2 + 0.1)
    assert at.jaw == tuple(np.eye(4).ravel()) and at.right_eye == (0.0, 0.0, 0.0)


def test_track_layout_of_audio2face_outputs() -> None:
    result = make_result(frames=4, tongue=True)
    jaw = np.tile(np.eye(4), (4, 1, 1))
    jaw[:, :3, 3] = (0.0, -1.0, 2.0)  # column-vector convention
    result.jaw_transforms = jaw
    result.eye_rotations = np.tile([1.0, 2.0, 0.0, 3.0, 4.0, 0.0], (4, 1))
    result.emotions, result.emotion_names = np.full((4, 2), 0.3), ("joy", "anger")
    frame = Track(result).sample(0.0)
    assert frame.weights[52:] == (0.5,) * 16
    assert frame.jaw[12:15] == (0.0, -1.0, 2.0)  # Maya: translation in the last row
    assert frame.right_eye == (1.0, 2.0, 0.0) and frame.left_eye == (3.0, 4.0, 0.0)
    assert frame.emotions[A.EMOTIONS.index("joy")] == 0.3 and frame.emotions[0] == 0.0
    maya_layout = to_maya_matrices(to_maya_matrices(jaw))  # already row-vector: kept
    assert np.array_equal(maya_layout[:, 3, :3], jaw[:, :3, 3])


def test_alias_list_and_name_matching_never_wires_by_index() -> None:
    flat = ["AK_17_JawOpen", "weight[4]", "EyeBlink_L", "weight[0]", "Basis", "weight[1]",
            "custom", "envelope"]  # fmt: skip
    weights = parse_alias_list(flat)
    assert weights == {0: "EyeBlink_L", 1: "Basis", 4: "AK_17_JawOpen"}
    plan = plan_connections({"bs1": weights}, connected=["bs1.weight[0]"])
    assert [(lk.index, lk.source) for lk in plan.links] == [(4, "jawOpen")]
    assert plan.unmatched == ["bs1.Basis"] and plan.skipped == ["bs1.EyeBlink_L"]
    assert "left unconnected: bs1.Basis" in plan.report()[0] and "-force" in plan.report()[1]
    forced = plan_connections({"bs1": weights}, connected=["bs1.weight[0]"], force=True)
    assert [lk.source_attr for lk in forced.links] == ["outputWeights[0]", "outputWeights[17]"]
    assert "jawOpen" not in forced.unused_sources and "eyeBlinkRight" in forced.unused_sources


def test_bake_keys_land_on_scene_frames() -> None:
    result = make_result(frames=61, fps=Fraction(60))  # 1 s at 60 fps
    links = [Link("bs1", 3, "jawOpen", "jawOpen"), Link("bs1", 0, "tongueOut", "tongueOut"),
             Link("bs1", 5, "tongueTipUp", "tongueTipUp")]  # fmt: skip
    offset_s = 10 / 24  # the sound starts at frame 10
    plan, curves = plan_keys(result, links, Fraction(24), offset_s)
    assert plan.frames[0] == pytest.approx(10) and plan.frames[-1] == pytest.approx(34)
    assert np.allclose(plan.frames, np.round(plan.frames))
    jaw = curves[0]
    assert jaw.plug == "bs1.weight[3]"
    assert jaw.values[24] == pytest.approx((60 + 17) / 100, abs=1e-6)  # 1 s in: frame 60
    assert plan.missing_sources == ["tongueTipUp"] and len(curves) == 2
    assert np.array_equal(plan_frames(result, Fraction(24), offset_s), jaw.frames)
    ramp = np.linspace(1.0, 2.0, jaw.frames.size)
    _, scaled = plan_keys(result, links[:1], Fraction(24), offset_s, {"jawOpen": (ramp, 0.5)})
    assert np.allclose(scaled[0].values, jaw.values * ramp + 0.5)
    assert audio_start_frame(1.0, 0.5, Fraction(24)) == pytest.approx(12)
