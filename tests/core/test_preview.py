"""The preview video: a real clip animated and rendered by the CLI, decoded back with PyAV."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core.export.writers import read_result
from a2x_core.names import ARKIT_52
from a2x_core.preview.face2d import draw_face
from a2x_core.preview.raster import YuvImage
from a2x_core.preview.video import layout
from tests.conftest import SAMPLE, run_cli

av = pytest.importorskip("av")

START, END = 1.0, 4.0  # "my fellow Americans": closures, rounding and open vowels


@pytest.fixture(scope="module")
def take(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real run of ``a2x animate --preview`` on three seconds of the sample."""
    folder = tmp_path_factory.mktemp("preview")
    paths = {"json": folder / "take.json", "npz": folder / "take.npz", "mp4": folder / "take.mp4"}
    proc = run_cli("animate", str(SAMPLE), "--start", str(START), "--end", str(END), "-q",
                   "-o", str(paths["json"]), "-o", str(paths["npz"]), "--preview", str(paths["mp4"]))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return paths


def _decode(path: Path) -> tuple[list[np.ndarray], float, float, float, float]:
    """Luma planes of every frame, the video rate, and the video and audio streams' durations
    (from the decoded frames: what a player plays)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        rate = float(video.average_rate)
        lumas = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        samples = 0
        sample_rate = container.streams.audio[0].rate
        first_pts = None
        for frame in container.decode(audio=0):
            if first_pts is None:
                first_pts = float(frame.pts * frame.time_base)
            samples += frame.samples
    return lumas, rate, len(lumas) / rate, samples / sample_rate, first_pts or 0.0


def test_preview_has_both_streams_in_sync_and_the_mouth_follows_jaw_open(take) -> None:
    _assert_synced_and_mouth_moves(take["mp4"], read_result(take["npz"]))


@pytest.mark.slow
def test_demo_command_writes_a_playable_demo_mp4(tmp_path: Path) -> None:
    """``make demo``'s command line (the whole 11 s sample) gives out/demo/demo.mp4 as checked
    above."""
    demo = tmp_path / "demo"
    demo.mkdir()
    proc = run_cli("animate", str(SAMPLE), "--model", "default", "--fps", "60", "--overwrite",
                   "-o", str(demo / "demo.json"), "-o", str(demo / "demo.csv"),
                   "--plot", str(demo / "demo.png"), "--preview", str(demo / "demo.mp4"), "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _assert_synced_and_mouth_moves(demo / "demo.mp4", read_result(demo / "demo.json"))


def _assert_synced_and_mouth_moves(video: Path, result) -> None:
    lumas, rate, video_s, audio_s, audio_start = _decode(video)
    frame_s = 1 / rate
    assert abs(video_s - result.duration_s) <= frame_s, (video_s, result.duration_s)
    # AAC frames hold 1024 samples: the decoded track may end up to one AAC frame late
    assert abs(audio_s - result.duration_s) <= frame_s, (audio_s, result.duration_s)
    assert abs(audio_start) <= frame_s
    # where jawOpen is highest and lowest, the mouth must look different; the brow must not
    times = np.arange(len(lumas)) / rate + result.start_s
    jaw = np.interp(times, result.times_s, result.curve("jawOpen"))
    blink = np.interp(times, result.times_s, result.curve("eyeBlinkLeft"))
    steady = blink < 0.05  # compare frames without a blink, so that the eyes hold still
    open_i = int(np.argmax(np.where(steady, jaw, -1)))
    shut_i = int(np.argmin(np.where(steady, jaw, 2)))
    assert jaw[open_i] - jaw[shut_i] > 0.3
    panel = layout([result], ["take"], lumas[0].shape[1], lumas[0].shape[0])[0]
    (mx0, my0), (mx1, my1) = panel.face.px(np.array([[-0.4, 0.4], [0.4, 0.95]])).astype(int)
    (fx0, fy0), (fx1, fy1) = panel.face.px(np.array([[-0.3, -0.8], [0.3, -0.65]])).astype(int)

    def change(box: tuple[int, int, int, int]) -> float:
        x0, y0, x1, y1 = box
        a = lumas[open_i][y0:y1, x0:x1].astype(np.float32)
        b = lumas[shut_i][y0:y1, x0:x1].astype(np.float32)
        return float(np.mean(np.abs(a - b)))

    mouth, forehead = change((mx0, my0, mx1, my1)), change((fx0, fy0, fx1, fy1))
    assert mouth > 10.0 and forehead < 1.0, (mouth, forehead)


def test_face_responds_to_every_arkit_pose() -> None:
    """Each of the 52 shapes, alone at full weight, changes the picture (over a half-open jaw,
    so that teeth, tongue and the inside of the mouth can move too)."""
    base = np.zeros(len(ARKIT_52))
    base[ARKIT_52.index("jawOpen")] = 0.5

    def render(weights: np.ndarray) -> np.ndarray:
        image = YuvImage(256, 256, (52, 58, 72))
        draw_face(image, weights, 128, 120, 80)
        return image.data.astype(np.int16)

    reference = render(base)
    unchanged = []
    for i, name in enumerate(ARKIT_52):
        weights = base.copy()
        weights[i] = 1.0 if name != "jawOpen" else 0.0
        if np.count_nonzero(np.abs(render(weights) - reference) > 8) < 20:
            unchanged.append(name)
    assert not unchanged


def test_preview_cli_compares_two_takes_side_by_side(take, tmp_path: Path) -> None:
    """``a2x preview RESULT --compare OTHER``: two faces, sound from the first take's clip
    (its relative path is found again from the result's folder)."""
    other = tmp_path / "other.json"
    data = json.loads(take["json"].read_text())
    data["weightMat"] = (np.asarray(data["weightMat"]) * 0.2).tolist()  # a much weaker take
    other.write_text(json.dumps(data))
    video = tmp_path / "compare.mp4"
    proc = run_cli("preview", str(take["npz"]), "--compare", str(other), "-o", str(video),
                   "--size", "640x360", "--video-fps", "24", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lumas, rate, video_s, audio_s, _ = _decode(video)
    assert lumas[0].shape == (360, 640) and rate == 24
    assert abs(video_s - (END - START)) <= 1 / 24
    # the two faces differ while the strong take speaks (the weak one barely opens its mouth)
    differences = [np.mean(np.abs(f[:200, :320].astype(int) - f[:200, 320:].astype(int)))
                   for f in lumas]  # fmt: skip
    assert max(differences) > 2.0 and min(differences) < 0.5, (max(differences), min(differences))


def test_preview_refuses_bad_outputs_before_any_work(take, tmp_path: Path) -> None:
    not_video = run_cli("preview", str(take["npz"]), "-o", str(tmp_path / "take.gif"))
    assert not_video.returncode == 2 and "take.gif" in not_video.stderr and ".mp4" in not_video.stderr
    existing = run_cli("preview", str(take["npz"]), "-o", str(take["mp4"]))
    assert existing.returncode == 2 and "already exists" in existing.stderr
    moved = tmp_path / "moved.json"
    data = json.loads(take["json"].read_text())
    data["trackPath"] = str(tmp_path / "gone.flac")
    moved.write_text(json.dumps(data))
    missing = run_cli("preview", str(moved), "-o", str(tmp_path / "x.mp4"))
    assert missing.returncode == 2 and "gone.flac" in missing.stderr and "--audio" in missing.stderr
    assert not (tmp_path / "x.mp4").exists()
    assert not any(p.name.startswith(".x.mp4") for p in tmp_path.iterdir())


def test_read_result_round_trips_json_and_npz(take) -> None:
    from_json, from_npz = read_result(take["json"]), read_result(take["npz"])
    assert from_json.fps == from_npz.fps == Fraction(60)
    assert from_json.num_frames == from_npz.num_frames
    np.testing.assert_allclose(from_json.weights, from_npz.weights, atol=1e-6)
    assert from_npz.duration_s == pytest.approx(END - START)
    assert "phone_labels" in from_npz.arrays and not from_json.arrays


def _fresh(weights: np.ndarray, size: int = 256) -> np.ndarray:
    """One frame drawn from scratch (no cache, no previous frame)."""
    image = YuvImage(size, size, (52, 58, 72))
    draw_face(image, weights, 128, 120, 80)
    return image.data


def test_frame_to_frame_drawing_leaves_nothing_of_the_previous_frame() -> None:
    """The preview redraws only what changed since the last frame (a region whose pose did not
    change is kept; the lower face is repaired where the mouth was): a wide open, rounded mouth
    with closed eyes, then a closed mouth with open eyes, then the first again, must each equal
    the frame drawn from scratch, pixel for pixel."""
    from a2x_core.preview.face2d import FaceDrawer

    wide, rest = np.zeros(len(ARKIT_52)), np.zeros(len(ARKIT_52))
    for name, value in (("mouthFunnel", 1.0), ("mouthStretchLeft", 1.0), ("tongueOut", 0.8),
                        ("eyeBlinkLeft", 1.0), ("eyeBlinkRight", 1.0)):  # fmt: skip
        wide[ARKIT_52.index(name)] = value
    background = YuvImage(256, 256, (52, 58, 72))
    drawer = FaceDrawer(128, 120, 80, (256, 256))
    drawer.draw_static(background)
    canvas = YuvImage(256, 256)
    canvas.data[:] = background.data
    for weights in (wide, rest, wide, wide, rest, rest):
        drawer.draw(canvas, background, weights)
        assert np.array_equal(canvas.data, _fresh(weights))
    assert not np.array_equal(_fresh(wide), _fresh(rest))
    # the lower face's parts are cached apart (jaw line, cheeks, nose): the same swollen,
    # smiling cheeks and sneer over every jaw pose must still be the frame drawn from scratch
    for jaw in ("jawOpen", "jawLeft", "jawRight", "jawForward", "jawOpen"):
        weights = np.zeros(len(ARKIT_52))
        for name in ("cheekPuff", "mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft",
                     "noseSneerRight", jaw):  # fmt: skip
            weights[ARKIT_52.index(name)] = 1.0
        drawer.draw(canvas, background, weights)
        assert np.array_equal(canvas.data, _fresh(weights)), jaw


def test_frames_handed_to_the_encoder_hold_the_whole_picture(take) -> None:
    """The encoder's frames are filled once with the static background, then only the moving
    boxes (faces, tapes) are copied per picture: over a real take, side by side, each frame
    handed over must still equal the whole canvas."""
    from a2x_core.preview import video as preview

    result = read_result(take["npz"])
    width, height = 640, 360
    panels = layout([result, result], ["a", "b"], width, height)
    background = YuvImage(width, height, preview.BACKGROUND)
    for panel in panels:
        panel.face.draw_static(background)
    canvas = YuvImage(width, height)
    canvas.data[:] = background.data
    moving = [box for panel in panels for box in (
        panel.face.eye_box, panel.face.base_box,
        (panel.tape_x, panel.tape_y, panel.tape_x + panel.tape.width,
         panel.tape_y + panel.tape.height))]  # fmt: skip
    pool = preview._FramePool(av, width, height, 3, canvas, moving)
    times = result.start_s + np.arange(0, 60, 3) / 30.0
    tracks = [preview._frame_weights(panel.result, times) for panel in panels]
    for i, t in enumerate(times):
        for panel, (weights, _) in zip(panels, tracks, strict=True):
            panel.face.draw(canvas, background, weights[i])
            preview._draw_tape(canvas, panel, t)
        frame = pool.next_frame(canvas)
        assert np.array_equal(frame.to_ndarray(format="yuv420p"), canvas.data)
