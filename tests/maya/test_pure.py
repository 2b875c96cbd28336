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
    model_parameter_names,
    track_key,
)
from a2x_maya.timeunits import fps_of_rate, fps_of_unit, frame_of_seconds, inference_fps
from a2x_maya.track import Track, to_maya_matrices

from a2x_core.errors import ParameterError
from a2x_core.models.regression_folder import ANIMATOR_RANGES
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


def test_diffusion_model_defaults_per_identity() -> None:
    # a diffusion model's info lists its parameters per identity (DiffusionModel.info)
    info = {"identities": ["Claire", "Mark"],
            "parameters": {"Claire": {"skin_strength": 1.0, "identity": "Claire", "constant_noise": True},
                           "Mark": {"skin_strength": 1.1, "tongue_strength": 1.2}}}  # fmt: skip
    assert model_parameter_names(info) == ["skin_strength", "identity", "constant_noise",
                                           "tongue_strength"]  # fmt: skip
    assert attribute_defaults_for_model(info) == {"skinStrength": 1.0}  # the first identity
    assert attribute_defaults_for_model(info, "mark") == {"skinStrength": 1.1, "tongueStrength": 1.2}
    with pytest.raises(ParameterError, match="Claire, Mark"):
        attribute_defaults_for_model(info, "James")
    flat = {"identities": [], "parameters": {"skin_strength": 1.1}}  # other models: flat
    assert model_parameter_names(flat) == ["skin_strength"]
    assert attribute_defaults_for_model(flat, "ignored") == {"skinStrength": 1.1}


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


# ----------------------------------------------------------------------------- emotions


def test_emotion_and_identity_attributes() -> None:
    sources = {name: (kind, default) for name, _short, kind, default in A.SOURCE_ATTRS}
    assert sources["emotionModelPath"] == ("string", "") and sources["identity"] == ("string", "")
    mix = A.scalar_by_name("emotionMix")
    assert mix.kind == "enum" and mix.choices == ("blend", "override") and mix.default == 0
    window = A.scalar_by_name("emotionWindow")
    assert (window.kind, window.default, window.min, window.max) == ("int", 60000, 2, 960000)
    assert A.OUTPUT_DETECTED_EMOTIONS.aliases()[6] == ("detected_joy", "outputDetectedEmotions[6]")
    assert A.OUTPUT_DETECTED_EMOTIONS in A.OUTPUT_ARRAYS


def test_language_reaches_the_default_model_and_the_cache_key(wav: Path) -> None:
    """The player's ``language`` (the default model's spoken language) is an inference input:
    it reaches the options and a change starts a new track; empty means auto."""
    sources = {name: (kind, default) for name, _short, kind, default in A.SOURCE_ATTRS}
    assert sources["language"] == ("string", "auto")
    assert _inputs(wav).options(None).language == "auto"
    assert _inputs(wav, language="").options(None).language == "auto"
    assert _inputs(wav, language="de").options(None).language == "de"
    assert track_key(_inputs(wav, language="de")) != track_key(_inputs(wav))


def test_transcript_reaches_the_default_model_and_the_cache_key(wav: Path) -> None:
    """The player's ``transcript`` (the default model's exact words) is an inference input:
    it reaches the options (empty: recognised) and a change starts a new track."""
    sources = {name: (kind, default) for name, _short, kind, default in A.SOURCE_ATTRS}
    assert sources["transcript"] == ("string", "")
    assert _inputs(wav).options(None).transcript is None
    assert _inputs(wav, transcript="  ").options(None).transcript is None
    words = "And so my fellow Americans"
    assert _inputs(wav, transcript=words).options(None).transcript == words
    assert track_key(_inputs(wav, transcript=words)) != track_key(_inputs(wav))


def test_emotion_inputs_validate(wav: Path, tmp_path: Path) -> None:
    a2e = tmp_path / "a2e" / "model.json"
    a2e.parent.mkdir()
    a2e.write_text("{}")
    _inputs(wav, emotionModelPath=str(a2e)).validate()
    with pytest.raises(ParameterError, match="emotion model not found; fix emotionModelPath"):
        _inputs(wav, emotionModelPath=str(tmp_path / "nope.json")).validate()
    with pytest.raises(ParameterError, match="emotionStrength=1.5 is out of range with an emotion"):
        _inputs(wav, emotionModelPath=str(a2e), emotionStrength=1.5).validate()
    _inputs(wav, emotionStrength=1.5).validate()  # explicit emotions may be stronger
    with pytest.raises(ParameterError, match="emotionWindow=1000.5 must be a whole number"):
        _inputs(wav, emotionWindow=1000.5).validate()
    with pytest.raises(ParameterError, match=r"emotionSkip=-1.0 is out of range"):
        _inputs(wav, emotionSkip=-1).validate()


def test_options_with_an_emotion_model_follow_the_sdk(wav: Path) -> None:
    from a2x_core.models.emotion_input import A2F_EMOTIONS

    a2e = {"emotionModelPath": "/m/a2e/model.json", "emotionWindow": 32000, "emotionSkip": 2}
    blend = _inputs(wav, **a2e, preferredEmotions={6: 1.0, 1: 0.25}, identity="Claire")
    options = blend.options(None, A2F_EMOTIONS)
    assert options.emotion_mix == "blend" and options.identity == "Claire"
    assert (options.emotion_window, options.emotion_skip) == (32000, 2)
    assert dict(options.emotion_parameters) == {"emotion_strength": 0.6,
                                                "preferred_emotion_strength": 0.5}  # fmt: skip
    (time_s, preferred), = options.emotions
    assert time_s == 0.0 and len(preferred) == 10  # all ten: the SDK's preferred vector
    assert preferred["joy"] == 1.0 and preferred["anger"] == 0.25 and preferred["fear"] == 0.0
    for quiet in (_inputs(wav, **a2e), _inputs(wav, **a2e, enablePreferredEmotion=0.0,
                                               preferredEmotions={6: 1.0})):  # fmt: skip
        options = quiet.options(None, A2F_EMOTIONS)  # detected emotions play unchanged
        assert options.emotions == ()
        assert options.emotion_parameters["enable_preferred_emotion"] is False
    override = _inputs(wav, **a2e, emotionMix=1.0, preferredEmotions={6: 1.0})
    options = override.options(None, A2F_EMOTIONS)
    assert options.emotion_mix == "override"
    assert options.emotions == ((0.0, {"joy": pytest.approx(0.6 * 0.5)}),)
    plain = _inputs(wav, emotionWindow=32000, identity="James").options(None, A2F_EMOTIONS)
    assert plain.emotion_window == 60000 and plain.emotion_parameters == {}  # no emotion model
    assert plain.identity == "James" and _inputs(wav).options(None).identity is None


def test_cache_key_follows_emotion_model_identity_and_mix(wav: Path, tmp_path: Path) -> None:
    a2e = tmp_path / "model.json"
    a2e.write_text("{}")
    key = track_key(_inputs(wav))
    with_model = track_key(_inputs(wav, emotionModelPath=str(a2e)))
    assert with_model != key
    for change in ({"emotionMix": 1.0}, {"emotionWindow": 16000}, {"emotionSkip": 1},
                   {"identity": "Mark"}):  # fmt: skip
        assert track_key(_inputs(wav, emotionModelPath=str(a2e), **change)) != with_model
    os.utime(a2e, ns=(1, 1))  # a replaced emotion model
    assert track_key(_inputs(wav, emotionModelPath=str(a2e))) != with_model


def test_track_plays_emotion_input_and_detected_emotions() -> None:
    from a2x_maya.track import rest_frame

    frame = Track(make_result(frames=10, emotions=True)).sample(4 / 30)
    joy = A.EMOTIONS.index("joy")
    assert frame.emotions[joy] == pytest.approx((4 + 6) / 1000)
    assert frame.detected[joy] == pytest.approx((4 + 6) / 2000)
    assert Track(make_result(frames=10)).sample(0.1).detected == (0.0,) * 10
    assert rest_frame().detected == (0.0,) * 10


def test_emotion_keys_land_on_the_weight_frames() -> None:
    from a2x_maya.bake import emotion_attribute_curves, plan_emotion_keys

    result = make_result(frames=61, fps=Fraction(60), emotions=True)
    offset_s = 10 / 24
    keys = plan_emotion_keys(result, Fraction(24), offset_s)
    names = [k.plug for k in keys]
    assert names[:10] == [f"a2x_emotion_{e}" for e in A.EMOTIONS]
    assert names[10:] == [f"a2x_emotion_detected_{e}" for e in A.EMOTIONS]
    joy = keys[A.EMOTIONS.index("joy")]
    assert np.array_equal(joy.frames, plan_frames(result, Fraction(24), offset_s))
    assert joy.values[24] == pytest.approx((60 + 6) / 1000, abs=1e-6)  # 1 s in: frame 60
    assert plan_emotion_keys(make_result(frames=10), Fraction(24), 0.0) == []
    only_input = make_result(frames=5, emotions=True)
    only_input.detected_emotions = None
    assert list(emotion_attribute_curves(only_input)) == [f"a2x_emotion_{e}" for e in A.EMOTIONS]


def test_emotion_mix_flag_and_emotion_node_choice() -> None:
    from a2x_maya.commands import emotion_mix_index, emotion_target

    assert emotion_mix_index("Override") == 1 and emotion_mix_index("blend") == 0
    with pytest.raises(ParameterError, match="use blend or override"):
        emotion_mix_index("mix")
    links = [Link("faceBS", 0, "jawOpen", "jawOpen")]
    assert emotion_target("p1", links, "", delete_player=True) == "faceBS"
    assert emotion_target("p1", links, "head", delete_player=False) == "head"
    assert emotion_target("p1", links, "p1", delete_player=False) == "p1"
    with pytest.raises(ParameterError, match="would be deleted with -deletePlayer"):
        emotion_target("p1", links, "p1", delete_player=True)
