"""The a2x extension in real Blender (PyPI ``bpy``), one subprocess per scenario.

See ``conftest.py`` for how Blender versions are found and the extension is installed, and
``scenarios.py`` for what each scenario asserts inside Blender.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE, SAMPLE_TRANSCRIPT

pytestmark = pytest.mark.blender


def test_install_and_enable(blender) -> None:
    # installed by the session fixture through extensions.package_install_files
    assert blender.run("register_cycle")["blender"].startswith(blender.version)


def test_panels_draw_with_real_property_and_operator_names(blender) -> None:
    out = blender.run("draw_panels")
    assert out["draws"] == 96 and out["props"] > 150 and out["operators"] > 30


def test_target_and_mapping_rows_add_and_remove(blender) -> None:
    out = blender.run("list_rows")
    assert out["rows"] == 52 and out["candidates"] == 1  # one shape per curve; Teeth.jawOpen


@pytest.mark.parametrize("head", ["Male_Adult_03_facial.fbx", "Female_Adult_02_ARKitDemo.fbx"])
def test_rocketbox_head_drives_each_curve_once(blender, shared_data, head: str) -> None:
    path = shared_data / "head_mesh" / "rocketbox_headbox" / head
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    out = blender.run("rocketbox", fbx=str(path))
    assert out["candidates"] == 11 and out["jaw"] == pytest.approx(1.0, abs=1e-3)


def test_vroid_head_maps_every_exact_name(blender, shared_data) -> None:
    folder = shared_data / "head_mesh" / "voice2motion_vroid_head" / "shape_keys"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    assert blender.run("vroid", folder=str(folder))["shapes"] == 52


def test_bake_channels_keys_values_and_sound_strip(blender) -> None:
    out = blender.run("bake_synthetic", fps=30, start=1)
    assert out["channels"] == 52  # 51 ARKit (cheekPuff disabled) + the second jaw target
    assert out["keys"] == 60 and out["range"] == [1.0, 60.0]


def test_bake_at_an_odd_start_and_rate(blender) -> None:
    out = blender.run("bake_synthetic", fps=24, start=-7)
    assert out["keys"] == 48 and out["range"] == [-7.0, 40.0]


def test_fractional_scene_rate(blender) -> None:
    out = blender.run("fractional_fps")
    assert out["fps"] == "30000/1001"


def test_artist_action_survives_and_nla_option(blender) -> None:
    blender.run("artist_action")


def test_rebake_replaces_only_own_action_clear_and_undo(blender) -> None:
    assert blender.run("rebake_undo")["undo"]


def test_sound_strip_added_once_and_kept_in_sync(blender) -> None:
    blender.run("sound_strip")


def _documented_defaults() -> dict[str, object]:
    """The bake operator's arguments and defaults as docs/blender.md's table states them."""
    text = (REPO / "docs" / "blender.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, re.M)
    return {name: ast.literal_eval(value) for name, value in rows}


def test_script_gets_the_documented_defaults_and_one_undo(blender) -> None:
    out = blender.run("script_defaults")
    documented = _documented_defaults()
    assert len(documented) == 12, documented
    assert out["defaults"] == documented


def test_docs_recipe_for_a_fresh_bpy_process(blender, tmp_path: Path) -> None:
    """docs/blender.md's recipe, verbatim, in a fresh process: enable, open, bake (progress
    printed), save; the saved file holds the bake."""
    import soundfile

    text = (REPO / "docs" / "blender.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (recipe,) = [b for b in blocks if "addon_enable" in b]
    script = tmp_path / "recipe.py"
    script.write_text(recipe)
    samples, rate = soundfile.read(SAMPLE, dtype="float32")
    soundfile.write(tmp_path / "line.wav", samples[: int(2.5 * rate)], rate)
    blender.run("make_scene", path=str(tmp_path / "scene.blend"))
    output = blender.run_script(script, tmp_path, timeout=180)
    progress = re.findall(r"^a2x: (.+) (\d+)%$", output, re.M)
    assert len(progress) >= 3 and progress[-1][1] == "100", output[-2000:]
    baked = blender.run("inspect_baked", path=str(tmp_path / "scene_baked.blend"))
    assert baked["channels"] == 52 and baked["first_frame"] == 1.0
    assert baked["keys"] == 60 and baked["jaw_max"] > 0.2  # 2.5 s of speech at 24 fps
    assert baked["sound_strip"] == 1


def test_errors_are_reports_not_tracebacks(blender) -> None:
    blender.run("errors")


def test_background_session_progress_and_cancel(blender) -> None:
    assert blender.run("session")["progress_updates"] > 3


def test_default_model_end_to_end(blender) -> None:
    out = blender.run("default_model", audio=str(SAMPLE), transcript=SAMPLE_TRANSCRIPT)
    assert out["keys"] == 330  # 11.0 s at 30 fps


def test_a_mandarin_transcript_is_read_through_its_pinyin(blender) -> None:
    from tests.conftest import SHARED

    clip = SHARED / "data" / "speech_non_en" / "zh_aishell_BAC009S0724W0121.wav"
    if not clip.is_file():
        pytest.skip("speech_non_en is absent")
    out = blender.run("mandarin_transcript", audio=str(clip), transcript="广州市房地产中介协会分析")
    assert out["roll_max"] >= 0.3 and out["roll_frames"] >= 2, out  # 房 fáng, 分 fēn


def test_external_runtime_subprocess(blender) -> None:
    import sys

    blender.run("external_runtime", audio=str(SAMPLE), python=sys.executable)


def test_key_emotions_as_custom_properties(blender) -> None:
    assert blender.run("key_emotions")["emotion_curves"] == 20


def test_key_head_motion_on_an_object_and_a_bone(blender) -> None:
    out = blender.run("key_head")
    assert (out["head_curves"], out["bone_curves"]) == (3, 4)


@pytest.fixture(scope="module")
def generated_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A generated Audio2Face-3D regression model, an Audio2Emotion model and a 1.5 s clip."""
    pytest.importorskip("onnx", reason="the test model folders are written with onnx")
    import numpy as np
    import soundfile

    from tests.a2e_folders import make_emotion_folder
    from tests.a2f_folders import make_regression_folder

    root = tmp_path_factory.mktemp("models")
    clip = root / "clip.wav"
    rng = np.random.default_rng(5)
    soundfile.write(clip, (0.3 * rng.standard_normal(24000)).astype(np.float32), 16000)
    return {
        "a2f": str(make_regression_folder(root / "mark").model_json),
        "a2e": str(make_emotion_folder(root / "a2e").model_json),
        "audio": str(clip),
    }


def test_emotion_model_settings_reach_the_core(blender, generated_models) -> None:
    import sys

    out = blender.run("emotion_model", python=sys.executable, **generated_models)
    assert out["frames"] == 45  # 1.5 s at 30 fps


@pytest.fixture(scope="module")
def live_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """2 s of real speech (JFK), which Live plays at real-time pace."""
    import soundfile

    from a2x_core.audio.decode import decode_audio

    clip = tmp_path_factory.mktemp("live") / "speech.wav"
    soundfile.write(clip, decode_audio(SAMPLE, start_s=0.3, end_s=2.3).samples, 16000)
    return str(clip)


def test_live_preview_drives_shape_keys_and_record_bakes_the_take(
    blender, generated_models, live_clip
) -> None:
    out = blender.run("live", a2f=generated_models["a2f"], audio=live_clip)
    assert out["frames"] == 60 and out["shown"] > 10  # 2.0 s at 30 fps


def _alsa_microphone(home: Path, clip: str) -> str | None:
    """A HOME whose ``.asoundrc`` makes ALSA device ``a2xmic`` read ``clip`` (float32 at the
    device's 44.1 kHz; not paced, zeros after it): a microphone for PortAudio without one.
    None when this Python has no sounddevice/PortAudio (the worker would have none)."""
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        return None
    import numpy as np
    import soxr

    from a2x_core.audio.decode import decode_audio

    raw = home / "mic.raw"
    samples = soxr.resample(decode_audio(clip).samples, 16000, 44100).astype("<f4")
    raw.write_bytes(np.ascontiguousarray(samples).tobytes())
    (home / ".asoundrc").write_text(
        f'pcm.a2xmic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; '
        'format "raw" }\n', encoding="utf-8",
    )  # fmt: skip
    return str(home)


def test_live_through_the_external_runtime_file_and_microphone(
    blender, generated_models, live_clip, tmp_path: Path
) -> None:
    import sys

    out = blender.run("live_external", a2f=generated_models["a2f"], audio=live_clip,
                      python=sys.executable, repo=str(REPO),
                      mic_home=_alsa_microphone(tmp_path, live_clip))  # fmt: skip
    assert out["frames"] == 60


@pytest.fixture(scope="module")
def diffusion_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A generated Audio2Face-3D v3.0 diffusion folder (Claire, James, Mark) and a 1 s clip."""
    pytest.importorskip("onnx", reason="the test model folders are written with onnx")
    import numpy as np
    import soundfile

    from tests.diffusion_folders import make_diffusion_folder

    root = tmp_path_factory.mktemp("diffusion")
    clip = root / "clip.wav"
    rng = np.random.default_rng(7)
    soundfile.write(clip, (0.3 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return {"model": str(make_diffusion_folder(root / "claire").model_json), "audio": str(clip)}


def test_diffusion_identity_reaches_the_model(blender, diffusion_model) -> None:
    import sys

    out = blender.run("identity", python=sys.executable, **diffusion_model)
    assert out["identities"] == 3 and out["frames"] == 30  # 1.0 s at 30 fps
