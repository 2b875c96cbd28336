"""What a Python user meets first on a result: its repr, ``curve()`` by any pose spelling, and
``save()`` through the CLI's writers and overwrite rules."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core import AnimationResult, Animator, InferenceOptions
from a2x_core.errors import A2XError, OutputError
from a2x_core.export.writers import read_a2f_json
from a2x_core.names import ARKIT_52, TONGUE_16
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def spoken() -> AnimationResult:
    """The default model on the first 3 s of the bundled speech sample, at 30 fps."""
    animator = Animator("default", InferenceOptions(fps=30))
    (result,) = animator.animate_many([SAMPLE], end_s=3.0)
    return result


def test_repr_is_one_short_line_with_what_a_user_asks_first(spoken: AnimationResult) -> None:
    text = repr(spoken)
    assert text == (f"AnimationResult(model='default', frames={spoken.num_frames}, fps=30, "
                    "duration_s=3.000, curves=52)")  # fmt: skip
    assert spoken.num_frames == 90 and "\n" not in text and "array" not in text
    tongue = AnimationResult(
        weights=np.zeros((5, 52), np.float32), fps=Fraction(30000, 1001), model="Mark",
        tongue_weights=np.zeros((5, 16), np.float32), tongue_names=TONGUE_16,
        duration_s=0.16, warnings=["clipped audio"],
    )  # fmt: skip
    assert repr(tongue) == ("AnimationResult(model='Mark', frames=5, fps=30000/1001, "
                            "duration_s=0.160, curves=68, warnings=1)")  # fmt: skip


@pytest.mark.parametrize("spelling", ["jawOpen", "JawOpen", "jaw_open", "JAWOPEN", "Face.JawOpen"])
def test_curve_accepts_live_link_and_other_spellings(spoken: AnimationResult, spelling: str) -> None:
    jaw = spoken.weights[:, ARKIT_52.index("jawOpen")]
    assert jaw.max() > 0.2, "the jaw opens in speech"
    np.testing.assert_array_equal(spoken.curve(spelling), jaw)


def test_curve_keeps_sides_and_similar_names_apart(spoken: AnimationResult) -> None:
    for spelling, canon in [("EyeBlinkLeft", "eyeBlinkLeft"), ("eyeBlink_R", "eyeBlinkRight"),
                            ("MouthLeft", "mouthLeft"), ("MouthSmileLeft", "mouthSmileLeft")]:  # fmt: skip
        np.testing.assert_array_equal(spoken.curve(spelling),
                                      spoken.weights[:, ARKIT_52.index(canon)])  # fmt: skip
    with pytest.raises(KeyError, match="'TongueTipUp' is not a pose of this result; poses: eyeBlink"):
        spoken.curve("TongueTipUp")  # the default model has no tongue poses
    with pytest.raises(KeyError, match="jawOpen"):
        spoken.curve("jawClench")


def test_curve_reads_tongue_poses_in_either_casing() -> None:
    tongue = np.arange(5 * 16, dtype=np.float32).reshape(5, 16)
    result = AnimationResult(weights=np.zeros((5, 52), np.float32), fps=Fraction(60),
                             tongue_weights=tongue, tongue_names=TONGUE_16)  # fmt: skip
    np.testing.assert_array_equal(result.curve("TongueTipUp"), tongue[:, 0])
    np.testing.assert_array_equal(result.curve("tongueNarrow"), tongue[:, 15])


def test_save_writes_every_format_and_keeps_an_existing_file(
    spoken: AnimationResult, tmp_path: Path
) -> None:
    path = spoken.save(tmp_path / "line.json")
    assert path == tmp_path / "line.json"
    names, weights, fps = read_a2f_json(path)
    assert names == list(ARKIT_52) and fps == 30.0
    np.testing.assert_allclose(weights, spoken.weights, atol=1e-6)
    for suffix in (".csv", ".npz"):
        assert spoken.save(tmp_path / f"line{suffix}").stat().st_size > 1000
    with np.load(tmp_path / "line.npz") as arrays:
        np.testing.assert_array_equal(arrays["weights"], spoken.weights)

    before = path.read_bytes()
    other = AnimationResult(weights=np.zeros((3, 52), np.float32), fps=Fraction(30))
    with pytest.raises(OutputError, match="already exists") as error:
        other.save(path)
    assert str(path) in str(error.value) and "overwrite" in str(error.value)
    assert path.read_bytes() == before, "an existing file is never replaced without overwrite"
    other.save(path, overwrite=True)
    assert read_a2f_json(path)[1].shape == (3, 52)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.csv", "line.json", "line.npz"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("line.txt", "unknown output format .txt"), ("missing/line.json", "does not exist"),
     ("line", "unknown output format")],
)  # fmt: skip
def test_save_refuses_bad_paths_with_a_typed_error(
    spoken: AnimationResult, tmp_path: Path, name: str, message: str
) -> None:
    with pytest.raises(A2XError, match=message):
        spoken.save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []
