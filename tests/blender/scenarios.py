"""Scenarios that run inside Blender (a Python with ``bpy``), one per process.

Usage: ``python scenarios.py <scenario> '<json args>'`` with ``BLENDER_USER_RESOURCES`` set to
a private folder where the ``install`` scenario has installed the extension. Each scenario
prints ``A2X_RESULT {json}`` last; a failed assertion exits non-zero with its traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
import types
import wave

import bpy
import numpy as np

MODULE = "bl_ext.user_default.a2x"
ARGS: dict = {}


# --------------------------------------------------------------------------- helpers


def addon():  # noqa: ANN201 - the add-on's package
    return sys.modules[MODULE]


def enable() -> None:
    bpy.ops.preferences.addon_enable(module=MODULE)
    assert MODULE in bpy.context.preferences.addons, "the a2x extension is not enabled"


def styled_names() -> dict[str, str]:
    """ARKit-52 → a rig name in one of five naming styles (AK_17_JawOpen, Face.jawOpen, ...)."""
    from a2x_core.names import ARKIT_52

    out = {}
    for i, name in enumerate(ARKIT_52):
        pascal = name[0].upper() + name[1:]
        style = i % 5
        if style == 0:
            out[name] = f"AK_{i:02d}_{pascal}"
        elif style == 1:
            out[name] = f"Face.{name}"
        elif style == 2:
            side = re.search(r"(Left|Right)$", name)
            if side:
                out[name] = f"{name[: side.start()]}_{side.group(1)[0]}"
            else:
                out[name] = re.sub(r"([A-Z])", r"_\1", name).lower()
        elif style == 3:
            out[name] = pascal
        else:
            out[name] = f"blendShape1.{pascal}"
    return out


def make_face(name: str = "Face") -> bpy.types.Object:
    """A small mesh with Basis, 52 ARKit shapes in mixed styles, a second jaw target and one
    shape that matches nothing."""
    mesh = bpy.data.meshes.new(name)
    verts = [(x * 0.1, y * 0.1, 0.0) for x in range(4) for y in range(4)]
    mesh.from_pydata(verts, [], [])
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for shape in [*styled_names().values(), "Teeth.jawOpen", "custom_wrinkle"]:
        obj.shape_key_add(name=shape, from_mix=False)
    bpy.context.view_layer.objects.active = obj
    return obj


def write_wav(path: str, seconds: float, rate: int = 16000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with wave.open(path, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def synthetic_result(frames: int, fps, emotions: bool = False):  # noqa: ANN001, ANN201
    """Known curves; with ``emotions``, an Audio2Face-like result: emotion input and detected
    emotions per frame (emotion ``e`` at frame ``i``: ``(i + e) / 1000`` and half of it)."""
    from a2x_core import AnimationResult
    from a2x_core.models.emotion_input import A2F_EMOTIONS
    from a2x_core.names import ARKIT_52

    f = np.arange(frames)[:, None]
    j = np.arange(len(ARKIT_52))[None, :]
    weights = (0.5 + 0.4 * np.sin(2 * np.pi * f / (20.0 + j))).astype(np.float32)
    result = AnimationResult(weights=weights, fps=fps, duration_s=float(frames / fps))
    if emotions:
        used = ((f + np.arange(10)[None, :]) / 1000.0).astype(np.float32)
        result.emotions, result.detected_emotions = used, used / 2
        result.emotion_names = A2F_EMOTIONS
    return result


def set_fps(fps: int, fps_base: float = 1.0) -> None:
    bpy.context.scene.render.fps = fps
    bpy.context.scene.render.fps_base = fps_base


def prime_cache(audio: str, result_frames: int | None = None, emotions: bool = False):  # noqa: ANN201
    """Put a synthetic result where the bake operator looks for a finished inference."""
    ops = addon().session
    settings = bpy.context.scene.a2x
    use_nla, settings.use_nla = settings.use_nla, True  # the artist-Action check comes later
    request = ops.gather_request(bpy.context, None)
    settings.use_nla = use_nla
    frames = result_frames or int(round(2.0 * float(request.fps)))
    result = synthetic_result(frames, request.fps, emotions)
    ops._RESULTS[request.cache_key()] = [result]
    return result, request


def fcurves_of(key: bpy.types.Key, action: bpy.types.Action | None = None) -> list:
    action = action or key.animation_data.action
    return addon().bake._fcurves_of(action)


def owned_actions() -> list[str]:
    return sorted(a.name for a in bpy.data.actions if a.get("a2x_owner") == "a2x")


def keys_of(fcurve) -> np.ndarray:  # noqa: ANN001
    co = np.zeros(len(fcurve.keyframe_points) * 2, dtype=np.float32)
    fcurve.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def path_of(shape: str) -> str:
    return f'key_blocks["{shape}"].value'


def artist_keys(key: bpy.types.Key, shape: str) -> None:
    block = key.key_blocks[shape]
    for frame, value in ((1, 0.0), (10, 1.0), (20, 0.25)):
        block.value = value
        block.keyframe_insert("value", frame=frame)


def expect_error(call, text: str) -> str:  # noqa: ANN001
    try:
        call()
    except RuntimeError as error:
        assert text in str(error), f"expected {text!r} in {error}"
        return str(error)
    raise AssertionError(f"expected an error mentioning {text!r}")


# --------------------------------------------------------------------------- scenarios


def scenario_install() -> dict:
    zip_path = ARGS["zip"]
    began = time.perf_counter()
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    import a2x_core

    home = os.environ["BLENDER_USER_RESOURCES"]
    assert os.path.realpath(a2x_core.__file__).startswith(os.path.realpath(home)), (
        f"a2x_core must come from the extension's wheels, not {a2x_core.__file__}"
    )
    for op in ("bake", "cancel", "sound_strip", "clear", "mapping_auto", "target_add", "model_info"):
        assert hasattr(bpy.ops.a2x, op), op
    assert hasattr(bpy.types.Scene, "a2x") and hasattr(bpy.types.WindowManager, "a2x_job")
    import scipy  # noqa: F401 - the bundled wheels work under Blender's numpy
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    return {
        "enabled": MODULE in bpy.context.preferences.addons,
        "a2x_core": a2x_core.__file__,
        "install_s": time.perf_counter() - began,
    }


def scenario_register_cycle() -> dict:
    """Disable and enable again (Reload Scripts path) without leftovers."""
    bpy.ops.preferences.addon_disable(module=MODULE)
    assert not hasattr(bpy.types.Scene, "a2x")
    assert not hasattr(bpy.types, "A2X_OT_bake") and not hasattr(bpy.types, "A2X_PT_main")
    enable()
    assert hasattr(bpy.types.Scene, "a2x")
    return {}


def scenario_bake_synthetic() -> dict:

    fps, fps_base, start = ARGS.get("fps", 30), ARGS.get("fps_base", 1.0), ARGS.get("start", 1)
    set_fps(fps, fps_base)
    obj = make_face()
    key = obj.data.shape_keys
    scene = bpy.context.scene
    settings = scene.a2x
    tmp = tempfile.mkdtemp()
    audio = write_wav(os.path.join(tmp, "line.wav"), 2.0)
    settings.audio_path = audio
    settings.targets.add().object = obj

    # the mapping table: every style matched, one shape per curve, the unmatched shape listed
    assert bpy.ops.a2x.mapping_auto() == {"FINISHED"}
    names = styled_names()
    rows = {r.target: r for r in settings.mapping}
    assert len(rows) == 52, sorted(rows)
    for canon, shape in names.items():
        assert rows[shape].source == canon, (shape, rows[shape].source, canon)
    assert [n.name for n in settings.unmatched_shapes] == ["custom_wrinkle"]
    assert len(settings.unused_sources) == 0
    # a second jaw shape is left out (shapes add up) and listed; the artist adds it on purpose
    assert [(c.name, c.source) for c in settings.candidates] == [("Teeth.jawOpen", "jawOpen")]
    assert bpy.ops.a2x.mapping_add_candidate(target="Teeth.jawOpen") == {"FINISHED"}
    rows = {r.target: r for r in settings.mapping}
    assert rows["Teeth.jawOpen"].source == "jawOpen" and len(settings.candidates) == 0
    expect_error(lambda: bpy.ops.a2x.mapping_add_candidate(target="custom_wrinkle"),
                 "not among the other matching shapes")  # fmt: skip
    assert bpy.ops.a2x.mapping_auto() == {"FINISHED"}  # keeps the row the artist added
    assert "Teeth.jawOpen" in {r.target for r in settings.mapping}
    assert len(settings.candidates) == 0
    jaw = names["jawOpen"]
    rows[jaw].multiplier, rows[jaw].offset = 0.5, 0.1
    rows[names["cheekPuff"]].enabled = False

    settings.start_frame = start
    result, request = prime_cache(audio)
    assert bpy.ops.a2x.bake(object_name=obj.name, start_frame=start) == {"FINISHED"}

    ad = key.animation_data
    action = ad.action
    assert action is not None and action.get("a2x_owner") == "a2x"
    if hasattr(ad, "action_slot"):
        assert ad.action_slot is not None and ad.action_slot.target_id_type == "KEY"
    curves = {fc.data_path: fc for fc in fcurves_of(key)}
    expected_paths = {path_of(s) for c, s in names.items() if c != "cheekPuff"}
    expected_paths.add(path_of("Teeth.jawOpen"))
    assert set(curves) == expected_paths, set(curves) ^ expected_paths
    n = result.num_frames
    for canon, shape in names.items():
        if canon == "cheekPuff":
            continue
        co = keys_of(curves[path_of(shape)])
        assert co.shape == (n, 2), (shape, co.shape)
        assert np.allclose(co[:, 0], start + np.arange(n)), (shape, co[:3, 0])
        want = result.curve(canon) * (0.5 if canon == "jawOpen" else 1.0)
        want = want + (0.1 if canon == "jawOpen" else 0.0)
        assert np.allclose(co[:, 1], want, atol=1e-6), shape
        points = curves[path_of(shape)].keyframe_points
        assert {p.interpolation for p in points} == {"LINEAR"}
    teeth = keys_of(curves[path_of("Teeth.jawOpen")])
    assert np.allclose(teeth[:, 1], result.curve("jawOpen"), atol=1e-6)
    groups = {fc.group.name for fc in curves.values() if fc.group}
    assert {"Eyes", "Mouth", "Jaw", "Brows"} <= groups, groups

    # what plays is what was baked
    scene.frame_set(start + 7)
    assert math.isclose(key.key_blocks[names["eyeBlinkLeft"]].value,
                        float(result.curve("eyeBlinkLeft")[7]), abs_tol=1e-5)  # fmt: skip
    # the sound strip: one, at the start frame, playing the file, scene long enough
    strips = [s for s in addon().bake.sound_strips(scene)]
    assert len(strips) == 1 and strips[0].get("a2x_owner") == "a2x"
    assert int(strips[0].frame_start) == start
    assert os.path.samefile(bpy.path.abspath(strips[0].sound.filepath), audio)
    assert scene.frame_end >= start + n - 1
    assert scene.sync_mode == "AUDIO_SYNC"
    settings.start_frame = start + 12  # the strip follows the start frame
    assert int(strips[0].frame_start) == start + 12
    return {
        "channels": len(curves),
        "keys": n,
        "range": [float(keys_of(next(iter(curves.values())))[0, 0]), float(start + n - 1)],
        "fps": str(request.fps),
        "action": action.name,
    }


def scenario_artist_action() -> dict:
    obj = make_face()
    key = obj.data.shape_keys
    settings = bpy.context.scene.a2x
    audio = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 2.0)
    settings.audio_path = audio
    jaw = styled_names()["jawOpen"]
    artist_keys(key, jaw)
    mine = key.animation_data.action
    mine_name = mine.name
    before = [keys_of(fc).tolist() for fc in fcurves_of(key, mine)]
    result, _ = prime_cache(audio)

    message = expect_error(lambda: bpy.ops.a2x.bake(object_name=obj.name), "never modifies")
    assert mine_name in message
    assert key.animation_data.action == mine
    assert owned_actions() == [], owned_actions()

    assert bpy.ops.a2x.bake(object_name=obj.name, use_nla=True, start_frame=5) == {"FINISHED"}
    ad = key.animation_data
    assert ad.action == mine, "the artist's Action must stay active"
    assert [keys_of(fc).tolist() for fc in fcurves_of(key, mine)] == before
    tracks = [t for t in ad.nla_tracks if t.name == "a2x"]
    assert len(tracks) == 1 and len(tracks[0].strips) == 1
    strip = tracks[0].strips[0]
    assert strip.action.get("a2x_owner") == "a2x" and int(strip.frame_start) == 5
    assert strip.frame_end == 5 + result.num_frames - 1, strip.frame_end
    first = owned_actions()

    assert bpy.ops.a2x.bake(object_name=obj.name, use_nla=True, start_frame=5) == {"FINISHED"}
    assert len([t for t in ad.nla_tracks if t.name == "a2x"]) == 1
    assert len(owned_actions()) == 1 and owned_actions() != [] and first
    assert bpy.ops.a2x.clear(object_name=obj.name) == {"FINISHED"}
    assert owned_actions() == [] and not [t for t in ad.nla_tracks if t.name == "a2x"]
    assert ad.action == mine and mine_name in bpy.data.actions
    assert [keys_of(fc).tolist() for fc in fcurves_of(key, mine)] == before
    return {"artist_action": mine_name}


def scenario_rebake_undo() -> dict:
    obj = make_face()
    key = obj.data.shape_keys
    settings = bpy.context.scene.a2x
    audio = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 2.0)
    settings.audio_path = audio
    spare = bpy.data.actions.new("ArtistSpare")
    spare.use_fake_user = True
    result, _ = prime_cache(audio)
    # no undo push by the script: a scripted bake is undoable on its own, the face and the
    # spare Action (made by the script, never pushed) included

    assert bpy.ops.a2x.bake(object_name=obj.name, start_frame=1) == {"FINISHED"}
    first = key.animation_data.action.name
    jaw = styled_names()["jawOpen"]
    assert bpy.ops.a2x.bake(object_name=obj.name, start_frame=11) == {"FINISHED"}
    second = key.animation_data.action
    assert owned_actions() == [second.name], owned_actions()
    assert first == second.name or first not in bpy.data.actions
    assert keys_of(next(fc for fc in fcurves_of(key) if fc.data_path == path_of(jaw)))[0, 0] == 11
    assert "ArtistSpare" in bpy.data.actions

    bpy.ops.ed.undo()  # back to the first bake
    key = bpy.data.objects["Face"].data.shape_keys
    curve = next(fc for fc in fcurves_of(key) if fc.data_path == path_of(jaw))
    assert keys_of(curve)[0, 0] == 1, keys_of(curve)[0]
    # a scripted bake is two steps, the state before it and after it: the step after the
    # first bake holds the same state
    bpy.ops.ed.undo()
    key = bpy.data.objects["Face"].data.shape_keys
    assert keys_of(next(fc for fc in fcurves_of(key) if fc.data_path == path_of(jaw)))[0, 0] == 1
    bpy.ops.ed.undo()  # back to before any bake
    key = bpy.data.objects["Face"].data.shape_keys
    assert key.animation_data is None or key.animation_data.action is None
    assert owned_actions() == [] and "ArtistSpare" in bpy.data.actions
    bpy.ops.ed.redo()
    key = bpy.data.objects["Face"].data.shape_keys
    assert key.animation_data.action is not None and len(owned_actions()) == 1

    assert bpy.ops.a2x.clear(object_name="Face") == {"FINISHED"}
    key = bpy.data.objects["Face"].data.shape_keys
    assert key.animation_data.action is None and owned_actions() == []
    bpy.context.scene.frame_set(8)
    assert key.key_blocks[jaw].value == 0.0
    bpy.ops.ed.undo()
    key = bpy.data.objects["Face"].data.shape_keys
    assert key.animation_data.action is not None, "undo brings the cleared bake back"
    assert "ArtistSpare" in bpy.data.actions
    return {"undo": True}


def scenario_fractional_fps() -> dict:
    """29.97 fps: the scene rate is exactly 30000/1001 and keys sit on whole frames."""
    from fractions import Fraction

    set_fps(30, 1.001)
    obj = make_face()
    settings = bpy.context.scene.a2x
    audio = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 2.0)
    settings.audio_path = audio
    result, request = prime_cache(audio)
    assert request.fps == Fraction(30000, 1001), request.fps
    assert request.options.fps == Fraction(30000, 1001)
    assert bpy.ops.a2x.bake(object_name=obj.name, start_frame=101) == {"FINISHED"}
    co = keys_of(fcurves_of(obj.data.shape_keys)[0])
    assert np.allclose(co[:, 0], 101 + np.arange(result.num_frames))
    return {"fps": str(request.fps), "keys": int(co.shape[0])}


def scenario_sound_strip() -> dict:
    scene = bpy.context.scene
    settings = scene.a2x
    tmp = tempfile.mkdtemp()
    a = write_wav(os.path.join(tmp, "a.wav"), 2.0)
    b = write_wav(os.path.join(tmp, "b.wav"), 3.0)
    artist = write_wav(os.path.join(tmp, "artist.wav"), 1.0)
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    mine = strips.new_sound("music", artist, 1, 1)
    settings.audio_path, settings.start_frame = a, 20
    assert bpy.ops.a2x.sound_strip() == {"FINISHED"}
    assert bpy.ops.a2x.sound_strip() == {"FINISHED"}
    bake = addon().bake
    owned = [s for s in bake.sound_strips(scene) if s.get("a2x_owner") == "a2x"]
    assert len(owned) == 1 and int(owned[0].frame_start) == 20 and owned[0].channel == 2
    settings.start_frame = 35
    assert int(bake.owned_sound_strip(scene).frame_start) == 35
    settings.audio_path = b
    assert bpy.ops.a2x.sound_strip() == {"FINISHED"}
    owned = [s for s in bake.sound_strips(scene) if s.get("a2x_owner") == "a2x"]
    assert len(owned) == 1 and os.path.samefile(bpy.path.abspath(owned[0].sound.filepath), b)
    assert mine.name in [s.name for s in bake.all_strips(scene)]
    assert int(mine.frame_start) == 1 and mine.channel == 1

    # audio from the artist's strip: the bake starts where that strip starts, no new strip
    obj = make_face()
    mine.frame_start = 40
    settings.audio_source, settings.sound_strip = "STRIP", mine.name
    prime_cache(artist, result_frames=30)
    assert bpy.ops.a2x.bake(object_name=obj.name) == {"FINISHED"}
    co = keys_of(fcurves_of(obj.data.shape_keys)[0])
    assert co[0, 0] == 40, co[0]
    assert len(bake.sound_strips(scene)) == 2
    return {"strips": len(bake.sound_strips(scene))}


def scenario_errors() -> dict:
    """Problems are reported as one clear message, never a traceback."""
    settings = bpy.context.scene.a2x
    obj = make_face()
    plain = bpy.data.objects.new("Plain", bpy.data.meshes.new("Plain"))
    bpy.context.scene.collection.objects.link(plain)
    audio = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 1.0)
    expect_error(lambda: bpy.ops.a2x.bake(object_name=obj.name), "no audio file chosen")
    expect_error(lambda: bpy.ops.a2x.bake(audio_path="/nope.wav", object_name=obj.name),
                 "audio file not found")  # fmt: skip
    expect_error(lambda: bpy.ops.a2x.bake(audio_path=audio, object_name="Plain"), "no shape keys")
    expect_error(lambda: bpy.ops.a2x.bake(audio_path=audio, object_name="Nobody"),
                 "no object named")  # fmt: skip
    expect_error(lambda: bpy.ops.a2x.bake(audio_path=audio, object_name=obj.name,
                                          model="/nowhere/model.json"), "model.json")  # fmt: skip
    settings.audio_path = audio
    # the poll messages of greyed-out buttons
    assert not bpy.ops.a2x.cancel.poll()
    return {}


def scenario_session() -> dict:
    """The modal operator's engine: progress arrives while the job runs, Cancel stops it."""
    from a2x_core import AnimationResult
    from a2x_core.errors import CancelledError
    from a2x_core.jobs import Progress

    class SlowModel:
        name, version, kind, emotion_names = "slow", "1", "default", ()

        def info(self) -> dict:
            return {}

        def animate(self, tracks, options, progress=None, cancel=None):  # noqa: ANN001
            for step in range(60):
                if cancel is not None:
                    cancel.check()
                if progress is not None:
                    progress(Progress(step / 60, "thinking"))
                time.sleep(0.01)
            frames = int(tracks[0].duration_s * float(options.fps))
            return [AnimationResult(weights=synthetic_result(frames, options.fps).weights,
                                    fps=options.fps)]  # fmt: skip

    class SlowAnimator:
        def __init__(self) -> None:
            self.model = SlowModel()

        def animate_many(self, sources, options, progress=None, cancel=None):  # noqa: ANN001
            from a2x_core.audio.decode import decode_audio

            tracks = [decode_audio(s) for s in sources]
            return self.model.animate(tracks, options, progress, cancel)

    ops = addon().session
    obj = make_face()
    settings = bpy.context.scene.a2x
    settings.audio_path = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 1.0)
    request = ops.gather_request(bpy.context, None)
    ops._ANIMATORS[(request.model, request.options.backend, request.options.threads)] = (
        SlowAnimator()
    )

    session = ops.BakeSession(request).start()
    seen = []
    while (p := session.poll()) is not None and len(seen) < 5:
        seen.append(p.fraction)
        time.sleep(0.02)
    session.cancel()
    try:
        session.wait()
        raise AssertionError("cancel did not stop the job")
    except CancelledError:
        pass
    assert seen, "no progress arrived"
    session = ops.BakeSession(request).start()
    fractions = []
    while (p := session.poll()) is not None:
        fractions.append(p.fraction)
        time.sleep(0.01)
    lines = session.apply()
    assert fractions and max(fractions) > 0.5, fractions
    assert obj.data.shape_keys.animation_data.action is not None
    assert any("keys" in text for _, text in lines), lines
    return {"progress_updates": len(fractions)}


def scenario_default_model() -> dict:
    """End to end with the embedded model: the call a batch script makes."""
    try:
        import a2x_core.lipsync.model  # noqa: F401
    except ImportError as error:
        return {"skip": f"the default model is not in this build yet ({error})"}
    from a2x_core import decode_audio
    from a2x_core.retarget import scene_fps
    from a2x_core.timing import num_frames_for

    set_fps(30)
    obj = make_face()
    audio = ARGS["audio"]
    began = time.perf_counter()
    out = bpy.ops.a2x.bake(audio_path=audio, object_name=obj.name, model="default", start_frame=1,
                           transcript=ARGS.get("transcript", ""))  # fmt: skip
    seconds = time.perf_counter() - began
    assert out == {"FINISHED"}, out
    key = obj.data.shape_keys
    curves = {fc.data_path: fc for fc in fcurves_of(key)}
    assert len(curves) == 52, len(curves)  # one shape per curve: Teeth.jawOpen is left out
    assert path_of("Teeth.jawOpen") not in curves
    expected = num_frames_for(len(decode_audio(audio).samples), scene_fps(30, 1.0))
    jaw = keys_of(curves[path_of(styled_names()["jawOpen"])])
    assert jaw.shape[0] == expected, (jaw.shape, expected)
    assert jaw[0, 0] == 1 and jaw[-1, 0] == expected
    assert jaw[:, 1].max() > 0.2, "the jaw should open during speech"
    strip = addon().bake.owned_sound_strip(bpy.context.scene)
    assert strip is not None and int(strip.frame_start) == 1
    return {"keys": int(jaw.shape[0]), "seconds": seconds, "jaw_max": float(jaw[:, 1].max())}


def scenario_mandarin_transcript() -> dict:
    """A Mandarin transcript baked in Blender: the extension carries pypinyin, so the
    characters are read through their pinyin and the lower lip rolls in for the /f/ of 房 and
    分 (one neutral syllable per character before)."""
    from a2x_core.lipsync import language, mandarin

    assert mandarin.available(), "the extension's wheels should carry pypinyin"
    assert language.transcript_note("zh", True) == "Transcript read by zh pinyin (pypinyin)"
    set_fps(60)
    obj = make_face()
    out = bpy.ops.a2x.bake(audio_path=ARGS["audio"], object_name=obj.name, model="default",
                           start_frame=1, transcript=ARGS["transcript"], language="zh")  # fmt: skip
    assert out == {"FINISHED"}, out
    curves = {fc.data_path: fc for fc in fcurves_of(obj.data.shape_keys)}
    roll = keys_of(curves[path_of(styled_names()["mouthRollLower"])])
    return {"roll_max": float(roll[:, 1].max()), "roll_frames": int((roll[:, 1] >= 0.3).sum())}


def scenario_external_runtime() -> dict:
    """Inference in another interpreter through ``python -m a2x_core.worker``."""
    try:
        import a2x_core.lipsync.model  # noqa: F401
    except ImportError as error:
        return {"skip": f"the default model is not in this build yet ({error})"}
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.external_python = ARGS["python"]
    set_fps(25)
    obj = make_face()
    out = bpy.ops.a2x.bake(audio_path=ARGS["audio"], object_name=obj.name, model="default")
    assert out == {"FINISHED"}
    curves = fcurves_of(obj.data.shape_keys)
    assert len(curves) == 52
    prefs.external_python = "/no/such/python"
    expect_error(lambda: bpy.ops.a2x.bake(audio_path=ARGS["audio"], object_name=obj.name,
                                          model="default", transcript="other words"),
                 "external runtime")  # fmt: skip
    return {"keys": len(curves[0].keyframe_points)}


class RecordingLayout:
    """Stands in for ``UILayout`` when a panel draws headless: checks every property and
    operator name the draw code uses against Blender's real RNA, and counts them."""

    def __init__(self, counts: dict) -> None:
        self.__dict__["counts"] = counts

    def __setattr__(self, name: str, value: object) -> None:  # active, enabled, scale_y, ...
        assert name in bpy.types.UILayout.bl_rna.properties, f"UILayout has no {name!r}"

    def _check(self, data: object, prop: str) -> None:
        assert prop in data.bl_rna.properties, f"{type(data).__name__} has no property {prop!r}"
        self.counts["props"] += 1

    def __getattr__(self, name: str):  # noqa: ANN204
        assert name in bpy.types.UILayout.bl_rna.functions, f"UILayout has no {name}()"
        counts = self.counts

        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if name == "prop":
                self._check(args[0], args[1])
            elif name == "prop_search":
                self._check(args[0], args[1])
                self._check(args[2], args[3])
            elif name == "template_list":
                self._check(args[2], args[3])
                self._check(args[4], args[5])
            elif name == "operator":
                module, op = args[0].split(".")
                assert hasattr(getattr(bpy.ops, module), op), args[0]
                counts["operators"] += 1
                return types.SimpleNamespace()
            elif name == "panel":
                return RecordingLayout(counts), RecordingLayout(counts)
            return RecordingLayout(counts)

        return call


def scenario_draw_panels() -> dict:
    """Every panel and list draws in every state, with real property and operator names."""
    package = addon()
    context = bpy.context
    obj = make_face()
    settings = context.scene.a2x
    settings.audio_path = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 1.0)
    assert bpy.ops.a2x.mapping_auto() == {"FINISHED"}
    settings.emotions.add().name = "joy"
    for name in ("Claire", "James"):
        settings.identities.add().name = name
    settings.model_path = "//claire/model.json"
    counts = {"props": 0, "operators": 0, "draws": 0}
    states = [
        {"audio_source": "FILE", "model": "DEFAULT", "live_source": "FILE"},
        {"audio_source": "STRIP", "model": "FOLDER", "live_source": "MICROPHONE"},
        {"audio_source": "FILE", "model": "FILE"},
        {"model": "FILE", "model_kind": "diffusion", "emotion_model_path": "//a2e/model.json",
         "model_info_for": bpy.path.abspath("//claire/model.json")},
        {"model_info_for": "another/model.json"},  # identities of another model: a hint
        {"transcript": "bonjour", "language": "fr"},  # what reads the transcript: a note
    ]
    for state in states:
        for name, value in state.items():
            setattr(settings, name, value)
        for running in (False, True):
            context.window_manager.a2x_job.running = running
            context.window_manager.a2x_live.running = running
            settings.live_record = running
            for cls in package.panels.classes:
                holder = types.SimpleNamespace(layout=RecordingLayout(counts), filter_name="")
                if issubclass(cls, bpy.types.UIList):
                    for item in settings.targets if "targets" in cls.__name__ else settings.mapping:
                        cls.draw_item(
                            holder, context, holder.layout, settings, item, 0, None, "", 0
                        )
                else:
                    if hasattr(cls, "draw_header"):
                        cls.draw_header(holder, context)
                    cls.draw(holder, context)
                counts["draws"] += 1
    prefs = context.preferences.addons[MODULE].preferences
    prefs.model_folders.add().path = tempfile.mkdtemp()

    class PrefsView:  # the real preferences, drawn into the recording layout
        layout = RecordingLayout(counts)

        def __getattr__(self, name: str) -> object:
            return getattr(prefs, name)

    package.preferences.A2XPreferences.draw(PrefsView(), context)
    context.window_manager.a2x_job.running = False
    context.window_manager.a2x_live.running = False
    # a greyed-out button explains itself; from a script the bake stays available
    assert not bpy.ops.a2x.cancel.poll() and bpy.ops.a2x.bake.poll()
    assert obj.name
    return counts


def emotion_fcurves(obj: bpy.types.Object) -> dict:
    """``["a2x_emotion_*"]`` F-curves that animate ``obj`` (active Action or a2x NLA strip)."""
    ad = obj.animation_data
    actions = [ad.action] if ad.action is not None else []
    actions += [s.action for t in ad.nla_tracks if t.name == "a2x" for s in t.strips]
    curves = {}
    for action in actions:
        for fcurve in fcurves_of(obj.data.shape_keys, action):
            if fcurve.data_path.startswith('["a2x_emotion_'):
                curves[fcurve.data_path[2:-2]] = fcurve
    return curves


def emotion_props(obj: bpy.types.Object) -> list[str]:
    return sorted(p for p in obj.keys() if p.startswith("a2x_emotion_"))


def a2x_strips(obj: bpy.types.Object) -> list:
    ad = obj.animation_data
    return [] if ad is None else [s for t in ad.nla_tracks if t.name == "a2x" for s in t.strips]


def scenario_key_emotions() -> dict:
    """'Key Emotions': the emotion curves become keyed custom properties of the target object
    (an add-on-owned Action on the object's NLA track "a2x"), drive a shape, are replaced by
    a re-bake, removed by Clear, undoable; the artist's object keys are never touched."""
    from a2x_core.models.emotion_input import A2F_EMOTIONS

    set_fps(30)
    obj = make_face()
    key = obj.data.shape_keys
    scene = bpy.context.scene
    settings = scene.a2x
    settings.audio_path = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 2.0)
    settings.targets.add().object = obj
    settings.key_emotions = True
    result, _ = prime_cache(settings.audio_path, emotions=True)
    assert bpy.ops.a2x.bake(start_frame=5, key_emotions=True) == {"FINISHED"}

    wanted = sorted([f"a2x_emotion_{n}" for n in A2F_EMOTIONS]
                    + [f"a2x_emotion_detected_{n}" for n in A2F_EMOTIONS])  # fmt: skip
    assert emotion_props(obj) == wanted, emotion_props(obj)
    ui = obj.id_properties_ui("a2x_emotion_joy").as_dict()
    assert (ui["min"], ui["max"]) == (0.0, 1.0) and "joy" in ui["description"]
    action = key.animation_data.action
    assert owned_actions() == sorted([action.name, f"{action.name}_emotions"]), owned_actions()
    assert obj.animation_data.action is None, "the object's active Action is left alone"
    (strip,) = a2x_strips(obj)
    assert strip.action.name == f"{action.name}_emotions" and strip.action.get("a2x_owner") == "a2x"
    if hasattr(strip, "action_slot"):
        assert strip.action_slot.target_id_type == "OBJECT"
    n = result.num_frames
    assert (strip.frame_start, strip.frame_end) == (5, 5 + n - 1)
    curves = emotion_fcurves(obj)
    assert sorted(curves) == wanted
    joy = A2F_EMOTIONS.index("joy")
    co = keys_of(curves["a2x_emotion_joy"])
    assert np.allclose(co[:, 0], 5 + np.arange(n)) and np.allclose(co[:, 1], result.emotions[:, joy])
    detected = keys_of(curves["a2x_emotion_detected_joy"])
    assert np.allclose(detected[:, 1], result.detected_emotions[:, joy])
    assert {fc.group.name for fc in curves.values()} == {"Emotions", "Detected Emotions"}
    # an animator drives a shape from an emotion
    driver = key.key_blocks["custom_wrinkle"].driver_add("value").driver
    variable = driver.variables.new()
    variable.targets[0].id = obj
    variable.targets[0].data_path = '["a2x_emotion_joy"]'
    driver.expression = variable.name
    scene.frame_set(5 + 7)
    assert math.isclose(obj["a2x_emotion_joy"], float(result.emotions[7, joy]), abs_tol=1e-6)
    assert math.isclose(key.key_blocks["custom_wrinkle"].value, obj["a2x_emotion_joy"],
                        abs_tol=1e-6)  # fmt: skip

    # re-bake: new Actions replace the old ones; the driver keeps working
    assert bpy.ops.a2x.bake(start_frame=11, key_emotions=True) == {"FINISHED"}
    action = key.animation_data.action
    (strip,) = a2x_strips(obj)
    assert owned_actions() == sorted([action.name, strip.action.name]), owned_actions()
    assert keys_of(emotion_fcurves(obj)["a2x_emotion_fear"])[0, 0] == 11
    scene.frame_set(11 + 3)
    assert math.isclose(key.key_blocks["custom_wrinkle"].value, float(result.emotions[3, joy]),
                        abs_tol=1e-6)  # fmt: skip
    # re-bake without 'Key Emotions' (the operator's default, whatever the panel says): the
    # object loses the a2x strip and the properties
    assert settings.key_emotions
    assert bpy.ops.a2x.bake(start_frame=11) == {"FINISHED"}
    assert a2x_strips(obj) == [] and emotion_props(obj) == []
    assert owned_actions() == [key.animation_data.action.name]
    bpy.ops.ed.undo()  # back to the second bake with emotions
    obj = bpy.data.objects["Face"]
    assert emotion_props(obj) == wanted and len(a2x_strips(obj)) == 1
    for _ in range(4):  # each scripted bake is two undo steps: before it and after it
        bpy.ops.ed.undo()  # back to before any bake
    obj = bpy.data.objects["Face"]
    assert emotion_props(obj) == [] and owned_actions() == [] and a2x_strips(obj) == []
    bpy.ops.ed.redo()
    obj, scene = bpy.data.objects["Face"], bpy.context.scene
    key = obj.data.shape_keys
    assert emotion_props(obj) == wanted and len(owned_actions()) == 2

    # the artist keys the object afterwards: those keys play on top of the strip and survive
    # re-bakes and Clear (Blender 4.4+ files them into the shape keys' a2x Action as a new
    # slot; an Action something still plays is never deleted)
    obj.location.x = 1.0
    obj.keyframe_insert("location", index=0, frame=1)
    mine = obj.animation_data.action
    assert mine is not None and not mine.name.endswith("_emotions")
    for start in (1, 3):
        assert bpy.ops.a2x.bake(start_frame=start, key_emotions=True) == {"FINISHED"}
        assert obj.animation_data.action == mine and len(a2x_strips(obj)) == 1
    assert "location" in [fc.data_path for fc in fcurves_of(key, mine)]
    scene.frame_set(3 + 20)
    assert math.isclose(obj["a2x_emotion_joy"], float(result.emotions[20, joy]), abs_tol=1e-6)
    assert math.isclose(obj.location.x, 1.0), "the artist's keys still play"

    assert bpy.ops.a2x.clear(object_name="Face") == {"FINISHED"}
    assert emotion_props(obj) == [] and a2x_strips(obj) == []
    assert obj.animation_data.action == mine and mine.name in bpy.data.actions
    assert "location" in [fc.data_path for fc in fcurves_of(key, mine)]

    # a model without emotions: a warning, the shapes are still baked
    plain = addon().session
    request = plain.gather_request(bpy.context, None)
    session = plain.BakeSession(request)
    session.results = [synthetic_result(20, request.fps)]
    lines = session.apply()
    assert any("no emotion curves" in text for level, text in lines if level == "WARNING"), lines
    assert emotion_props(obj) == [] and key.animation_data.action is not None
    return {"emotion_curves": len(wanted), "keys": n}


def scenario_key_head() -> dict:
    """'Key Head Motion' (off by default): the head rotations become keys on the Head object
    (delta rotation, on top of the artist's keyed rotation) or on a head bone (in its rotation
    mode), in an add-on-owned Action on the NLA track "a2x"; a re-bake replaces only that;
    a missing bone is a clear error."""
    from mathutils import Euler

    set_fps(30)
    obj = make_face()
    scene = bpy.context.scene
    settings = scene.a2x
    assert not settings.key_head, "off by default"
    settings.audio_path = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 2.0)
    settings.targets.add().object = obj
    head = bpy.data.objects.new("Head", None)
    scene.collection.objects.link(head)
    head.rotation_euler = (0.1, 0.0, 0.0)
    head.keyframe_insert("rotation_euler", frame=1)  # the artist's own Action
    mine = head.animation_data.action
    settings.key_head, settings.head_object = True, head
    ops = addon().session
    request = ops.gather_request(bpy.context, None)
    assert request.head_object == "Head" and request.options.head_motion == 1.0
    session = ops.BakeSession(request)
    result = synthetic_result(40, request.fps)
    t = np.arange(40) / 30.0
    result.head_rotations = np.stack([0.05 * np.sin(3 * t), 0.1 * np.cos(2 * t), 0.02 * t],
                                     axis=1).astype(np.float32)  # fmt: skip
    session.results = [result]
    lines = session.apply()
    assert any("head motion" in text for _, text in lines), lines
    (strip,) = a2x_strips(head)
    assert strip.action.get("a2x_part") == "head" and strip.action.get("a2x_owner") == "a2x"
    assert head.animation_data.action == mine, "the artist's Action stays active"
    start = request.start_frame
    for k in (0, 7, 30):
        scene.frame_set(start + k)
        pitch, yaw, roll = result.head_rotations[k]
        assert np.allclose(head.delta_rotation_euler[:], (pitch, -roll, yaw), atol=1e-5), k
        assert math.isclose(head.rotation_euler.x, 0.1, abs_tol=1e-6)
    session.apply()  # re-bake: one head strip, the old Action gone
    assert len(a2x_strips(head)) == 1 and len([a for a in owned_actions() if "head" in a]) == 1

    # a head bone in quaternion mode
    armature = bpy.data.armatures.new("Rig")
    rig = bpy.data.objects.new("Rig", armature)
    scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    bone = armature.edit_bones.new("head")
    bone.head, bone.tail = (0.0, 0.0, 1.5), (0.0, 0.0, 1.7)
    bpy.ops.object.mode_set(mode="OBJECT")
    settings.head_object, settings.head_bone = rig, "head"
    session = ops.BakeSession(ops.gather_request(bpy.context, None))
    session.results = [result]
    session.apply()
    scene.frame_set(start + 7)
    want = Euler(tuple(float(v) for v in result.head_rotations[7]), "XYZ").to_quaternion()
    got = rig.pose.bones["head"].rotation_quaternion
    assert abs(abs(want.dot(got)) - 1.0) < 1e-5, (want, got)

    from a2x_core.errors import ParameterError

    settings.head_bone = "neck"
    for text in ("no bone 'neck'", "no Head object"):
        try:
            ops.gather_request(bpy.context, None)
        except ParameterError as error:
            assert text in str(error), error
        else:
            raise AssertionError(f"expected an error mentioning {text!r}")
        settings.head_bone, settings.head_object = "", None
    return {"head_curves": 3, "bone_curves": 4}


def _a2f_scene(args: dict) -> tuple:
    """A face, the panel on a generated Audio2Face-3D model.json and Audio2Emotion model."""
    set_fps(30)
    obj = make_face()
    settings = bpy.context.scene.a2x
    settings.audio_path = args["audio"]
    settings.model, settings.model_path = "FILE", args["a2f"]
    settings.targets.add().object = obj
    return obj, settings


def scenario_emotion_model() -> dict:
    """The emotion model, mix, window and skip reach the core, in Blender and through the
    external runtime, and the detected emotions are keyed."""
    from a2x_core.models.emotion_input import A2F_EMOTIONS

    ops = addon().session
    obj, settings = _a2f_scene(ARGS)
    assert bpy.ops.a2x.model_info() == {"FINISHED"}  # the real model, loaded in Blender
    assert [e.name for e in settings.emotions] == list(A2F_EMOTIONS)
    assert settings.model_kind == "regression" and len(settings.identities) == 0
    settings.use_emotions = True
    settings.emotions["joy"].value = 0.7
    settings.emotion_model_path = ARGS["a2e"]
    settings.emotion_mix, settings.emotion_window, settings.emotion_skip = "OVERRIDE", 16000, 1
    settings.key_emotions = True

    request = ops.gather_request(bpy.context, None)
    options = request.options
    assert request.emotion_model == ARGS["a2e"]
    assert (options.emotion_window, options.emotion_skip, options.emotion_mix) == (
        16000, 1, "override")  # fmt: skip
    (_, sliders), = options.emotions  # override: only the sliders above 0
    assert list(sliders) == ["joy"] and math.isclose(sliders["joy"], 0.7, abs_tol=1e-6)
    assert options.identity is None
    assert bpy.ops.a2x.bake(key_emotions=True) == {"FINISHED"}
    (local,) = ops._RESULTS[request.cache_key()]
    joy = list(local.emotion_names).index("joy")
    assert local.detected_emotions is not None and local.detected_emotions.shape[1] == 10
    assert np.allclose(local.emotions[:, joy], 0.7, atol=1e-6), "override: joy is the slider's"
    anger = list(local.emotion_names).index("anger")
    assert np.allclose(local.emotions[:, anger], local.detected_emotions[:, anger], atol=1e-6)
    assert local.parameters["audio2emotion"]["model"] == ARGS["a2e"]
    curves = emotion_fcurves(obj)
    assert len(curves) == 20
    co = keys_of(curves["a2x_emotion_detected_anger"])
    assert co.shape[0] == local.num_frames
    assert np.allclose(co[:, 1], local.detected_emotions[:, 1], atol=1e-6)
    action = obj.data.shape_keys.animation_data.action
    assert action.get("a2x_emotion_model") == ARGS["a2e"]

    # the same settings through the external runtime give the same curves
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.external_python = ARGS["python"]
    request = ops.gather_request(bpy.context, None)
    assert bpy.ops.a2x.bake() == {"FINISHED"}
    (remote,) = ops._RESULTS[request.cache_key()]
    assert remote is not local
    for name in ("weights", "emotions", "detected_emotions"):
        assert np.allclose(getattr(remote, name), getattr(local, name), atol=1e-5), name
    prefs.external_python = ""

    # blend: all the sliders are the preferred emotion, so joy differs from the override
    settings.emotion_mix = "BLEND"
    assert len(ops.gather_request(bpy.context, None).options.emotions[0][1]) == 10
    assert bpy.ops.a2x.bake() == {"FINISHED"}
    (blend,) = ops._RESULTS[ops.gather_request(bpy.context, None).cache_key()]
    assert not np.allclose(blend.emotions[:, joy], 0.7)
    # the emotion model is ignored with the default model (its panel is hidden)
    settings.model = "DEFAULT"
    assert ops.gather_request(bpy.context, None).emotion_model == ""
    settings.model = "FILE"
    # a missing emotion model is one clear report
    expect_error(lambda: bpy.ops.a2x.bake(emotion_model="/nowhere/a2e/model.json"), "model.json")
    return {"frames": local.num_frames}


def scenario_identity() -> dict:
    """A generated Audio2Face-3D v3.0 diffusion folder (identities Claire, James, Mark): Load
    Model Info fills the Identity enum, the choice reaches the model in Blender and through
    the external runtime, and the keys are James's (an independent core run), not Claire's."""
    from dataclasses import replace

    from a2x_core import Animator
    from a2x_core.models.emotion_input import A2F_EMOTIONS
    from a2x_core.names import ARKIT_52

    ops = addon().session
    set_fps(30)
    obj = make_face()
    key = obj.data.shape_keys
    settings = bpy.context.scene.a2x
    settings.audio_path = ARGS["audio"]
    settings.model, settings.model_path = "FILE", ARGS["model"]
    settings.targets.add().object = obj
    assert settings.identity == "NONE" and settings.model_kind == ""  # nothing loaded yet
    assert ops.gather_request(bpy.context, None).options.identity is None
    assert bpy.ops.a2x.model_info() == {"FINISHED"}  # the real folder, loaded in Blender
    assert [i.name for i in settings.identities] == ["Claire", "James", "Mark"]
    assert settings.model_kind == "diffusion" and settings.identity == "Claire"
    assert [e.name for e in settings.emotions] == list(A2F_EMOTIONS)
    try:  # the enum offers exactly the model's identities
        settings.identity = "Nobody"
        raise AssertionError("the Identity enum took an identity the model lacks")
    except TypeError as error:
        assert "('Claire', 'James', 'Mark')" in str(error), error
    settings.identity = "James"
    settings.key_emotions = True  # a diffusion result's emotion input is keyed too
    request = ops.gather_request(bpy.context, None)
    assert request.options.identity == "James" and not request.warnings, request.warnings
    assert bpy.ops.a2x.bake(key_emotions=True) == {"FINISHED"}
    (james,) = ops._RESULTS[request.cache_key()]
    assert james.parameters["identity"] == "James" and james.model.endswith("(James)")
    assert key.animation_data.action.get("a2x_identity") == "James"

    # the keys: the add-on's result, equal to an independent core run for James, not Claire
    names = styled_names()
    curves = {fc.data_path: fc for fc in fcurves_of(key)}
    keyed = np.stack([keys_of(curves[path_of(names[c])])[:, 1] for c in ARKIT_52], axis=1)
    assert keyed.shape == (30, 52), keyed.shape  # 1.0 s at 30 fps
    assert np.allclose(keyed, james.weights, atol=1e-6)
    core = Animator(ARGS["model"])
    want = core.animate_many([ARGS["audio"]], request.options)[0]
    claire = core.animate_many([ARGS["audio"]], replace(request.options, identity="Claire"))[0]
    assert claire.parameters["identity"] == "Claire"
    assert np.allclose(keyed, want.weights, atol=1e-6)
    assert not np.allclose(keyed, claire.weights, atol=1e-3), "James and Claire differ"
    emotions = emotion_fcurves(obj)
    assert "a2x_emotion_joy" in emotions and len(emotions) == len(A2F_EMOTIONS), sorted(emotions)

    # the operator's argument wins (case-insensitive); an unknown one is one clear report
    assert bpy.ops.a2x.bake(identity="mark") == {"FINISHED"}
    assert key.animation_data.action.get("a2x_identity") == "Mark"
    message = expect_error(lambda: bpy.ops.a2x.bake(identity="Nobody"), "Nobody")
    assert "Claire, James, Mark" in message, message
    assert bpy.ops.a2x.model_info() == {"FINISHED"}  # reloading keeps the choice
    assert settings.identity == "James"

    # the external runtime: Load Model Info and the bake in another interpreter, same keys
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.external_python = ARGS["python"]
    spec = settings.model_path
    addon().operators.load_model_info(bpy.context, {"kind": "regression"}, spec)  # one face
    assert len(settings.identities) == 0 and settings.model_kind == "regression"
    assert ops.gather_request(bpy.context, None).options.identity is None
    assert bpy.ops.a2x.model_info() == {"FINISHED"}
    assert [i.name for i in settings.identities] == ["Claire", "James", "Mark"]
    assert settings.model_kind == "diffusion" and settings.identity == "Claire"
    settings.identity = "James"
    request = ops.gather_request(bpy.context, None)
    assert bpy.ops.a2x.bake() == {"FINISHED"}
    (remote,) = ops._RESULTS[request.cache_key()]
    assert remote is not james and remote.parameters["identity"] == "James"
    assert np.allclose(remote.weights, james.weights, atol=1e-5)
    assert key.animation_data.action.get("a2x_identity") == "James"
    prefs.external_python = ""

    # the list belongs to another model now: not sent, and the bake says why
    settings.model_path = os.path.join(os.path.dirname(ARGS["model"]), "other", "model.json")
    request = ops.gather_request(bpy.context, None)
    assert request.options.identity is None
    assert any("identity list" in w for w in request.warnings), request.warnings
    return {"identities": len(settings.identities), "frames": james.num_frames}


def scenario_list_rows() -> dict:
    """Target and mapping rows can be added and removed; remove greys out on an empty list."""
    settings = bpy.context.scene.a2x
    face = make_face()
    bpy.context.view_layer.objects.active = face
    face.select_set(True)
    assert bpy.ops.a2x.target_add() == {"FINISHED"} and len(settings.targets) == 1
    assert bpy.ops.a2x.mapping_auto() == {"FINISHED"}
    rows = len(settings.mapping)
    settings.mapping_index = rows - 1
    assert bpy.ops.a2x.mapping_remove() == {"FINISHED"}
    assert len(settings.mapping) == rows - 1 and settings.mapping_index == rows - 2
    assert bpy.ops.a2x.target_remove() == {"FINISHED"} and len(settings.targets) == 0
    assert not bpy.ops.a2x.target_remove.poll()
    return {"rows": rows, "candidates": len(settings.candidates)}


def _evaluated_coords(obj: bpy.types.Object) -> np.ndarray:
    """The object's vertex positions as Blender evaluates them at the current frame."""
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    try:
        co = np.zeros(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        evaluated.to_mesh_clear()
    return co.reshape(-1, 3)


def _shape_coords(key: bpy.types.Key, name: str) -> np.ndarray:
    block = key.key_blocks[name]
    co = np.zeros(len(block.data) * 3, dtype=np.float32)
    block.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def scenario_rocketbox() -> dict:
    """A real Rocketbox head (FBX with ARKit AK_*, SRanipal SR_*, Headbox HB_*, FACS AU_* and
    viseme shapes): Match Names drives each ARKit curve's AK_* shape alone and lists the
    SR_/HB_ look-alikes; baked, the face moves exactly as the AK_* shapes say (SR_21_Jaw_Open
    would open the jaw again); added on purpose, a look-alike is driven too."""
    from a2x_core.names import ARKIT_52

    set_fps(30)
    assert bpy.ops.import_scene.fbx(filepath=ARGS["fbx"]) == {"FINISHED"}
    face = max((o for o in bpy.data.objects if getattr(o.data, "shape_keys", None)),
               key=lambda o: len(o.data.shape_keys.key_blocks))  # fmt: skip
    key = face.data.shape_keys
    assert len(key.key_blocks) > 150, len(key.key_blocks)
    for modifier in face.modifiers:  # the skeleton's pose is not under test: shapes alone
        modifier.show_viewport = False
    settings = bpy.context.scene.a2x
    settings.audio_path = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 2.0)
    settings.targets.add().object = face

    assert bpy.ops.a2x.mapping_auto() == {"FINISHED"}
    rows = {r.target: r.source for r in settings.mapping}
    arkit = {source: target for target, source in rows.items() if source in ARKIT_52}
    assert len(arkit) == 52 and all(t.startswith("AK_") for t in arkit.values()), arkit
    assert len(set(rows.values())) == len(rows), "one shape per source curve"
    assert arkit["jawOpen"] == "AK_25_JawOpen"
    candidates = {c.name: c.source for c in settings.candidates}
    assert candidates["SR_21_Jaw_Open"] == "jawOpen" and candidates["HB_08_TongueOut"] == "tongueOut"
    assert candidates["SR_34_Mouth_Smile_Left"] == "mouthSmileLeft"
    assert all(n.startswith(("SR_", "HB_")) for n in candidates), candidates
    assert len(settings.unused_sources) == 0

    # only the jaw opens (0.8): the evaluated face is Basis + 0.8 x AK_25_JawOpen's offsets
    result, _ = prime_cache(settings.audio_path)
    result.weights[:] = 0.0
    result.weights[:, ARKIT_52.index("jawOpen")] = 0.8
    basis = _shape_coords(key, key.reference_key.name)
    jaw = _shape_coords(key, "AK_25_JawOpen") - basis
    look_alike = _shape_coords(key, "SR_21_Jaw_Open") - basis
    assert np.abs(look_alike).max() > 0.3 * np.abs(jaw).max(), "SR_21 opens the jaw too"

    def jaw_opening() -> float:
        """How far the evaluated face moved, as a multiple of 0.8 x AK_25_JawOpen."""
        bpy.context.scene.frame_set(10)
        moved = np.linalg.norm(_evaluated_coords(face) - basis, axis=1).max()
        return float(moved / (0.8 * np.linalg.norm(jaw, axis=1).max()))

    assert bpy.ops.a2x.bake(object_name=face.name, add_sound_strip=False) == {"FINISHED"}
    assert key.key_blocks["SR_21_Jaw_Open"].value == 0.0
    assert math.isclose(key.key_blocks["AK_25_JawOpen"].value, 0.8, abs_tol=1e-6)
    assert np.allclose(_evaluated_coords(face), basis + 0.8 * jaw, atol=1e-5)
    mapped = jaw_opening()
    assert math.isclose(mapped, 1.0, abs_tol=1e-3), mapped

    # the artist adds the look-alike on purpose: both shapes play, the jaw opens further
    assert bpy.ops.a2x.mapping_add_candidate(target="SR_21_Jaw_Open") == {"FINISHED"}
    assert bpy.ops.a2x.bake(object_name=face.name, add_sound_strip=False) == {"FINISHED"}
    assert np.allclose(_evaluated_coords(face), basis + 0.8 * (jaw + look_alike), atol=1e-5)
    both = jaw_opening()
    assert both > 1.5, both
    return {"mapped": len(rows), "candidates": len(candidates), "jaw": mapped, "both": both}


def _obj_vertices(path: str) -> np.ndarray:
    with open(path, encoding="utf-8") as handle:
        rows = [line.split()[1:4] for line in handle if line.startswith("v ")]
    return np.asarray(rows, dtype=np.float32)


def scenario_vroid() -> dict:
    """The VRoid head (one OBJ per ARKit shape, same vertex order): exact ARKit names, every
    one mapped to itself, nothing left out; the bake keys all 52 and the face follows them."""
    from a2x_core.names import ARKIT_52

    folder = ARGS["folder"]
    faces = []
    with open(os.path.join(folder, "_neutral.obj"), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("f "):
                faces.append([int(part.split("/")[0]) - 1 for part in line.split()[1:]])
    neutral = _obj_vertices(os.path.join(folder, "_neutral.obj"))
    mesh = bpy.data.meshes.new("VRoidFace")
    mesh.from_pydata(neutral.tolist(), [], faces)
    face = bpy.data.objects.new("VRoidFace", mesh)
    bpy.context.scene.collection.objects.link(face)
    face.shape_key_add(name="Basis")
    for name in sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".obj") and n[0] != "_"):
        block = face.shape_key_add(name=name, from_mix=False)
        block.data.foreach_set("co", _obj_vertices(os.path.join(folder, f"{name}.obj")).ravel())
    bpy.context.view_layer.objects.active = face
    settings = bpy.context.scene.a2x
    settings.audio_path = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 2.0)
    assert bpy.ops.a2x.mapping_auto() == {"FINISHED"}
    assert {r.target: r.source for r in settings.mapping} == {n: n for n in ARKIT_52}
    assert len(settings.candidates) == 0 and len(settings.unmatched_shapes) == 0

    set_fps(30)
    result, _ = prime_cache(settings.audio_path)
    assert bpy.ops.a2x.bake(add_sound_strip=False) == {"FINISHED"}
    key = face.data.shape_keys
    assert len(fcurves_of(key)) == 52
    bpy.context.scene.frame_set(1 + 7)
    basis = _shape_coords(key, "Basis")
    want = basis + sum(float(result.curve(n)[7]) * (_shape_coords(key, n) - basis) for n in ARKIT_52)
    assert np.allclose(_evaluated_coords(face), want, atol=1e-4)
    return {"vertices": len(neutral), "shapes": 52}


def scenario_make_scene() -> dict:
    """A .blend with the test face, for a script to open."""
    obj = make_face()
    bpy.ops.wm.save_as_mainfile(filepath=ARGS["path"])
    return {"object": obj.name}


def scenario_inspect_baked() -> dict:
    """What a script's bake left in a saved file: the a2x Action, its keys, the sound strip."""
    bpy.ops.wm.open_mainfile(filepath=ARGS["path"])
    key = bpy.data.objects["Face"].data.shape_keys
    action = key.animation_data.action
    assert action is not None and action.get("a2x_owner") == "a2x"
    jaw = next(fc for fc in fcurves_of(key) if fc.data_path == path_of(styled_names()["jawOpen"]))
    co = keys_of(jaw)
    strip = addon().bake.owned_sound_strip(bpy.context.scene)
    return {"channels": len(fcurves_of(key)), "first_frame": float(co[0, 0]),
            "keys": int(co.shape[0]), "jaw_max": float(co[:, 1].max()),
            "sound_strip": None if strip is None else int(strip.frame_start)}  # fmt: skip


def scenario_script_defaults() -> dict:
    """A script gets the operator's documented defaults, not the panel's values; the panel's
    Bake button (invoke) gets the panel's; a scripted bake is undone by one ed.undo()."""
    from types import SimpleNamespace

    ops = addon()
    rna = bpy.ops.a2x.bake.get_rna_type().properties
    defaults = {p.identifier: p.default for p in rna if p.identifier != "rna_type"}

    set_fps(30)
    obj = make_face()
    key = obj.data.shape_keys
    scene = bpy.context.scene
    settings = scene.a2x
    settings.audio_path = write_wav(os.path.join(tempfile.mkdtemp(), "line.wav"), 2.0)
    # the panel shows other values than the operator's defaults
    settings.add_sound_strip, settings.use_nla, settings.key_emotions = False, True, True
    settings.start_frame = 50
    result, _ = prime_cache(settings.audio_path, emotions=True)
    frame_end = scene.frame_end = 20

    assert bpy.ops.a2x.bake(object_name=obj.name) == {"FINISHED"}
    action = key.animation_data.action  # use_nla=False: the a2x Action is the active one
    assert action is not None and action.get("a2x_owner") == "a2x"
    co = keys_of(fcurves_of(key)[0])
    assert co[0, 0] == 1, co[0]  # start_frame=1
    strip = ops.bake.owned_sound_strip(scene)  # add_sound_strip=True
    assert strip is not None and int(strip.frame_start) == 1
    assert emotion_props(obj) == [], "key_emotions=False"
    assert scene.frame_end == result.num_frames

    # one ed.undo() brings back the scene as the script left it before the bake
    bpy.ops.ed.undo()
    scene, obj = bpy.context.scene, bpy.data.objects["Face"]
    key = obj.data.shape_keys
    assert key.animation_data is None or key.animation_data.action is None
    assert owned_actions() == [] and ops.bake.owned_sound_strip(scene) is None
    assert scene.frame_end == frame_end and scene.a2x.start_frame == 50

    # the panel's button: invoke fills the arguments the caller left unset from the panel
    # (background Blender never invokes, so an object with the operator's fields stands in)
    unset = {name: defaults[name] for name in ops.session.VALUE_ARGUMENTS}
    op = SimpleNamespace(**unset, properties=SimpleNamespace(
        is_property_set=lambda name: name == "use_nla"))  # fmt: skip
    ops.operators.take_panel_values(op, scene.a2x)
    assert (op.start_frame, op.add_sound_strip, op.key_emotions, op.use_nla) == (50, False, True,
                                                                                False)  # fmt: skip
    # string arguments: "" = the panel's choice; emotion_model "none" = none
    bpy.context.view_layer.objects.active = obj
    settings = scene.a2x
    settings.model, settings.model_path = "FILE", "//mark/model.json"
    settings.emotion_model_path = "//a2e/model.json"
    strings = {n: "" for n in ("audio_path", "object_name", "model", "transcript", "language",
                               "identity")}  # fmt: skip
    op = SimpleNamespace(**strings, **unset, emotion_model="")
    request = ops.session.gather_request(bpy.context, op)
    assert request.model == bpy.path.abspath("//mark/model.json")
    assert request.emotion_model == bpy.path.abspath("//a2e/model.json")
    assert (request.start_frame, request.add_sound_strip, request.key_emotions) == (1, True, False)
    op.emotion_model = "none"
    assert ops.session.gather_request(bpy.context, op).emotion_model == ""
    # Language: the panel's (Bake and Live), unless the script names one
    assert request.options.language == "auto"
    settings.language = "de"
    assert ops.session.gather_request(bpy.context, op).options.language == "de"
    assert ops.live._live_options(bpy.context, "default", []).language == "de"
    op.language = "ru"
    assert ops.session.gather_request(bpy.context, op).options.language == "ru"
    settings.language = "klingon"
    op.language = ""
    from a2x_core.errors import ParameterError

    try:
        ops.session.gather_request(bpy.context, op)
        raise AssertionError("a bad language passed")
    except ParameterError as error:
        assert "klingon" in str(error), error
    settings.language = "auto"
    # The field suggests the codes the model knows (a string still: stored scenes unchanged).
    search = addon().properties._language_search
    assert ("de", "German") in search(settings, bpy.context, "germ")
    assert search(settings, bpy.context, "")[0][0] == "auto"
    assert search(settings, bpy.context, "klingon") == []
    return {"defaults": {k: v for k, v in defaults.items()}}


def _live_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "a2x-live"]


def _drive_live(live, until, timeout: float = 60.0) -> list:  # noqa: ANN001
    """Run Live's timer function by hand (timers do not tick in background mode) until the
    session reaches the state ``until`` (or ``until(session)`` is true); returns (frame,
    {shape: value}) for every frame shown."""
    shown, last = [], None
    deadline = time.monotonic() + timeout
    done = until if callable(until) else (lambda session: session.state == until)
    while live.active() is not None and not done(live.active().session):
        assert time.monotonic() < deadline, "Live did not get there in time"
        assert live.tick() == live.TICK_S
        frame = live.active()._shown
        if frame is not None and frame is not last:
            key = bpy.data.objects["Face"].data.shape_keys
            shown.append((frame, {b.name: b.value for b in key.key_blocks}))
            last = frame
        time.sleep(0.005)
    assert live.tick() == live.TICK_S  # the last frame (the tail) is shown too
    return shown


def scenario_live() -> dict:
    """Live with the file source: the timer function sets the shape keys to each new frame
    through the mapping, Stop puts the values back; Record bakes the take as an a2x Action
    (undoable), beside an Action of the artist's, which stays untouched."""
    from a2x_core.audio.decode import decode_audio
    from a2x_core.names import ARKIT_52
    from a2x_core.retarget import frame_values
    from a2x_core.timing import num_frames_for

    live = addon().live
    obj, settings = _a2f_scene(ARGS)
    settings.live_source, settings.live_file = "FILE", ARGS["audio"]
    assert bpy.ops.a2x.mapping_auto() == {"FINISHED"}
    row = next(r for r in settings.mapping if r.source == "jawOpen")
    row.multiplier, row.offset = 0.5, 0.1  # the current mapping, not plain names
    key = obj.data.shape_keys
    jaw = row.target
    key.key_blocks[jaw].value = 0.3  # the artist's pose before Live
    key.key_blocks["custom_wrinkle"].value = 0.7
    before = {b.name: b.value for b in key.key_blocks}

    assert bpy.ops.a2x.live_start() == {"FINISHED"}
    assert bpy.context.window_manager.a2x_live.running
    assert not bpy.ops.a2x.live_start.poll() and bpy.ops.a2x.live_stop.poll()
    assert not bpy.ops.a2x.bake.poll(), "no bake while Live drives the keys"
    session = live.active().session
    rows = live.active().rows(settings)[0]
    shown = _drive_live(live, "ended")
    assert len(shown) > 10, len(shown)
    jaw_values = []
    for frame, values in shown:
        expected = frame_values(frame, rows)
        assert abs(values[jaw] - min(1.0, max(0.0, expected[jaw]))) < 1e-6, (values[jaw], expected)
        assert values["custom_wrinkle"] == before["custom_wrinkle"]  # not in the mapping
        jaw_values.append(values[jaw])
    assert max(jaw_values) - min(jaw_values) > 0.01, "the jaw should move with the speech"
    state = bpy.context.window_manager.a2x_live
    assert state.frames == session.stats.frames and state.latency_ms != 0.0
    assert bpy.ops.a2x.live_stop() == {"FINISHED"}
    assert {b.name: b.value for b in key.key_blocks} == before, "Stop puts the values back"
    assert owned_actions() == [] and key.animation_data is None
    assert not _live_threads() and not bpy.app.timers.is_registered(live.tick)
    assert not state.running and "recorded 0" in state.message

    # a source that fails on the session's thread ends Live at the next tick, values restored
    broken = os.path.join(tempfile.mkdtemp(), "broken.wav")
    with open(broken, "wb") as handle:
        handle.write(b"RIFF not really a wave file" * 10)
    settings.live_file = broken
    assert bpy.ops.a2x.live_start() == {"FINISHED"}
    deadline = time.monotonic() + 30
    while live.tick() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert live.active() is None and not state.running and not _live_threads()
    assert "broken.wav" in state.message and state.message.startswith("Live stopped"), state.message
    assert {b.name: b.value for b in key.key_blocks} == before
    assert not bpy.ops.a2x.live_stop.poll() and bpy.ops.a2x.live_start.poll()
    settings.live_file = ARGS["audio"]

    # Record: an Action of the artist's is in the way unless the take goes to an NLA strip
    artist_keys(key, jaw)
    mine = key.animation_data.action
    mine_name = mine.name
    mine_keys = [keys_of(fc).tolist() for fc in fcurves_of(key, mine)]
    settings.live_record = True
    expect_error(lambda: bpy.ops.a2x.live_start(), "never modifies")
    assert live.active() is None and not _live_threads()
    settings.use_nla, settings.start_frame = True, 5
    assert bpy.ops.a2x.live_start() == {"FINISHED"}
    session = live.active().session
    _drive_live(live, "ended")
    assert bpy.ops.a2x.live_stop() == {"FINISHED"}
    take = session.take()
    samples = len(decode_audio(ARGS["audio"]).samples)
    assert take.num_frames == num_frames_for(samples, take.fps) and take.fps == 30
    assert take.num_frames == session.stats.frames
    assert key.animation_data.action == mine, "the artist's Action stays active"
    assert [keys_of(fc).tolist() for fc in fcurves_of(key, mine)] == mine_keys
    strip = next(t for t in key.animation_data.nla_tracks if t.name == "a2x").strips[0]
    assert strip.action.get("a2x_owner") == "a2x" and int(strip.frame_start) == 5
    baked = next(fc for fc in fcurves_of(key, strip.action) if fc.data_path == path_of(jaw))
    keys = keys_of(baked)
    expected = take.weights[:, ARKIT_52.index("jawOpen")] * 0.5 + 0.1
    np.testing.assert_array_equal(keys[:, 0], 5 + np.arange(take.num_frames))
    np.testing.assert_allclose(keys[:, 1], expected, atol=1e-6)
    assert addon().bake.owned_sound_strip(bpy.context.scene) is not None  # a whole file
    assert not _live_threads()

    bpy.ops.ed.undo()  # the take is one undo step
    key = bpy.data.objects["Face"].data.shape_keys
    assert owned_actions() == [], owned_actions()
    assert not [t for t in key.animation_data.nla_tracks if t.name == "a2x"]
    assert key.animation_data.action.name == mine_name
    return {"frames": take.num_frames, "shown": len(shown)}


def scenario_live_external() -> dict:
    """Live through the external runtime, as a bake goes when the preferences name one: a
    file, then that Python's microphone (an ALSA file-plugin device, see test_addon.py)."""
    from a2x_core.names import ARKIT_52

    live = addon().live
    os.environ["PYTHONPATH"] = ARGS["repo"]  # the worker imports this tree's a2x_core
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.external_python = ARGS["python"]
    obj, settings = _a2f_scene(ARGS)
    key = obj.data.shape_keys
    jaw = styled_names()["jawOpen"]
    settings.live_source, settings.live_file, settings.live_record = "FILE", ARGS["audio"], True
    assert bpy.ops.a2x.live_start() == {"FINISHED"}
    session = live.active().session
    assert type(session).__name__ == "WorkerLiveSession"
    shown = _drive_live(live, "ended")
    assert len(shown) > 10 and len({round(v[jaw], 6) for _, v in shown}) > 5
    assert bpy.ops.a2x.live_stop() == {"FINISHED"}
    take = session.take()
    assert take.num_frames == 60 == session.stats.frames, take.num_frames
    curve = next(fc for fc in fcurves_of(key) if fc.data_path == path_of(jaw))
    np.testing.assert_allclose(keys_of(curve)[:, 1], take.weights[:, ARKIT_52.index("jawOpen")],
                               atol=1e-6)  # fmt: skip
    assert not _live_threads() and session.job._proc.returncode == 0
    out = {"frames": take.num_frames}
    if not ARGS.get("mic_home"):
        return out

    os.environ["HOME"] = ARGS["mic_home"]  # where the worker's ALSA finds the .asoundrc
    settings.live_source, settings.live_device = "MICROPHONE", "a2xmic"
    assert bpy.ops.a2x.live_start() == {"FINISHED"}
    session = live.active().session
    shown = _drive_live(live, lambda s: s.stats.frames >= 90 or s.state == "failed")
    assert session.error is None, session.error
    assert bpy.ops.a2x.live_stop() == {"FINISHED"}
    take = session.take()
    assert take.num_frames >= 90 and take.audio_path == ""
    curve = next(fc for fc in fcurves_of(key) if fc.data_path == path_of(jaw))
    keyed = keys_of(curve)
    assert keyed.shape[0] == take.num_frames
    speech = keyed[:60, 1]
    assert speech.max() - speech.min() > 0.01, "the jaw moves with the device's speech"
    out["microphone_frames"] = take.num_frames
    return out


def main() -> int:
    global ARGS
    name = sys.argv[1]
    ARGS = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if name != "install":
        enable()
    try:
        result = globals()[f"scenario_{name}"]()
    except Exception:
        traceback.print_exc()
        return 1
    result.setdefault("blender", bpy.app.version_string)
    print("A2X_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    import multiprocessing

    for child in multiprocessing.active_children():  # the default model's decoder pool
        child.terminate()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip bpy's slow, noisy interpreter teardown
