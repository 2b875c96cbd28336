"""Audio2Face-3D v3.0 diffusion: folder loading, windowing and dropped frames, GRU state carry and
reset, noise reproducibility, identities, frame-rate resampling (SDK spec §1.4, §2, §3, §6, §8.11).

The generated network has a float64 NumPy twin (``tests/diffusion_folders.py``), so the expected
frames are computed here window by window, independently of the pipeline's own bookkeeping.
"""

from __future__ import annotations

import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from a2x_core.api import Animator
from a2x_core.audio.decode import Audio
from a2x_core.backends import EngineSettings
from a2x_core.errors import (
    CancelledError,
    EngineError,
    ModelError,
    ModelPackageError,
    ParameterError,
)
from a2x_core.jobs import CancelToken
from a2x_core.models.diffusion import DiffusionModel, FrameResampler
from a2x_core.models.diffusion_folder import load_diffusion_package
from a2x_core.models.diffusion_noise import NoiseSource
from a2x_core.models.emotion_input import A2F_EMOTIONS
from a2x_core.models.registry import load_model
from a2x_core.options import InferenceOptions
from a2x_core.timing import frame_targets, num_frames_for
from tests.conftest import run_cli
from tests.diffusion_folders import CENTER, FRAMES, LEFT, GeneratedDiffusion, make_diffusion_folder

#: Post-processing that leaves geometry = neutral + network delta (filters off, unit strengths),
#: and the NumPy noise that ``_reference_deltas`` draws (the default is cuRAND on a GPU with CuPy).
PLAIN = {
    "noise_generator": "numpy",
    "lower_face_smoothing": 0.0, "upper_face_smoothing": 0.0, "lower_face_strength": 1.0,
    "upper_face_strength": 1.0, "skin_strength": 1.0, "eyelid_open_offset": 0.0,
    "lip_open_offset": 0.0, "tongue_strength": 1.0, "tongue_height_offset": 0.0,
    "tongue_depth_offset": 0.0,
}  # fmt: skip


def _audio(samples: np.ndarray, start_s: float = 0.0) -> Audio:
    return Audio(np.asarray(samples, np.float32), path="", start_s=start_s)


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 3 * t) * rng.normal(0, 0.5, n)).astype(np.float32)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDiffusion:
    return make_diffusion_folder(tmp_path_factory.mktemp("diffusion") / "model")


@pytest.fixture(scope="module")
def model(generated: GeneratedDiffusion) -> DiffusionModel:
    loaded = load_model(generated.model_json, backend="onnxruntime", threads=1)
    assert isinstance(loaded, DiffusionModel)
    return loaded


def _reference_deltas(
    generated: GeneratedDiffusion,
    samples: np.ndarray,
    identity: int,
    seed: int,
    *,
    carry: bool = True,
    input_strength: float = 1.0,
) -> np.ndarray:
    """Network-rate (60 fps) deltas of a closed clip, computed window by window the SDK's way:
    window w = samples [8000w - 16000, 8000w), zero padded, times ``input_strength``; centre
    frames only; the first 45 generated frames and frames at or after the end are dropped;
    constant noise."""
    samples = np.asarray(samples, np.float32) * np.float32(input_strength)
    n = len(samples)
    count = len(range(0, n * 3, 800))  # frames f with floor(f * 800 / 3) < n
    padded = np.concatenate([np.zeros(16000, np.float32), samples, np.zeros(16000, np.float32)])
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(seed)))
    noise = rng.standard_normal((3, FRAMES, generated.output_size), dtype=np.float32)
    latents = np.zeros((2, 2, 1, generated.latent))
    one_hot = np.eye(3, dtype=np.float32)[[identity]]
    frames: list[np.ndarray] = []
    window = 0
    while len(frames) < count + 45:
        audio = padded[8000 * window : 8000 * window + 16000]
        audio = np.pad(audio, (0, 16000 - len(audio)))[None]
        prediction, out_latents = generated.network(
            audio, one_hot, np.zeros((1, CENTER, 10), np.float32), latents, noise[None]
        )
        latents = out_latents if carry else latents
        frames.extend(prediction[0, LEFT : LEFT + CENTER])
        window += 1
    return np.asarray(frames[45 : 45 + count])


def test_folder_loads_with_every_identity(generated: GeneratedDiffusion) -> None:
    package = load_diffusion_package(generated.model_json)
    info = package.network_info
    assert [i.name for i in package.identities] == ["Claire", "James", "Mark"]
    assert (info.frames, info.fps, info.stride, info.leading_frames) == (60, 60, 8000, 45)
    assert info.output_size == generated.output_size
    james = package.identity("james")
    assert james.index == 1 and james.config["lower_face_strength"] == pytest.approx(1.2)
    assert "source_shot" not in james.config
    with pytest.raises(ModelError, match="no identity 'Bob'.*Claire, James, Mark"):
        package.identity("Bob")


def _broken(generated: GeneratedDiffusion, tmp_path: Path, name: str, edit) -> Path:  # noqa: ANN001
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(generated.folder, folder)
    edit(folder / name)
    return folder / "model.json"


def _edit_json(change):  # noqa: ANN001, ANN202
    def edit(path: Path) -> None:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return edit


def _edit_npz(change):  # noqa: ANN001, ANN202
    def edit(path: Path) -> None:
        with np.load(path) as npz:
            arrays = dict(npz)
        change(arrays)
        np.savez(path, **arrays)

    return edit


def _drop_last_vertex(arrays: dict[str, np.ndarray]) -> None:
    for name, array in list(arrays.items()):
        if array.dtype == np.float32:
            arrays[name] = array.reshape(-1)[:-3]
    arrays["frontalMask"] = arrays["frontalMask"][arrays["frontalMask"] < 119]


@pytest.mark.parametrize(
    ("name", "edit", "error", "message"),
    [
        ("network_info.json", _edit_json(lambda d: d["id"].update(type="regression")),
         ModelPackageError, "expected 'diffusion'/'geometry'"),
        ("model.json", _edit_json(lambda d: d["modelConfigPaths"].pop()), ModelPackageError,
         "lists 2 entries, but network_info.json names 3 identities"),
        ("model.json", _edit_json(lambda d: d.pop("blendshapePaths")), ModelError,
         "has no blendshapePaths"),
        ("model_data_James.npz", _edit_npz(lambda a: a.pop("neutral_jaw")), ModelPackageError,
         "array 'neutral_jaw' is missing"),
        ("model_data_Mark.npz", _edit_npz(lambda a: a.update(neutral_skin=a["neutral_skin"][:-1])),
         ModelPackageError, r"'neutral_skin' has shape \[119, 3\], expected \[120, 3\]"),
        ("model_config_Claire.json", _edit_json(lambda d: d["config"].update(skin_strength=5)),
         ModelPackageError, "skin_strength=5 is above its maximum 2"),
        ("network_info.json", _edit_json(lambda d: d["audio_params"].update(padding_left=1000)),
         ModelPackageError, "padding_left 1000 is not a whole number of frames"),
        ("network_info.json", _edit_json(lambda d: d["params"].update(skin_size=301)),
         ModelPackageError, "multiples of 3"),
        ("bs_skin_James.npz", _edit_npz(_drop_last_vertex),
         ModelPackageError, "params.skin_size is 360"),
    ],
)  # fmt: skip
def test_damaged_folders_name_the_file_and_the_problem(
    generated: GeneratedDiffusion, tmp_path: Path, name: str, edit, error: type, message: str  # noqa: ANN001
) -> None:
    model_json = _broken(generated, tmp_path, name, edit)
    with pytest.raises(error, match=message) as caught:
        load_diffusion_package(model_json)
    assert name in str(caught.value)


def test_windows_and_dropped_frames_follow_the_sdk(model: DiffusionModel) -> None:
    assert [model.window_start(w) for w in range(4)] == [-16000, -8000, 0, 8000]
    assert model.window_frames(0).max() == -16  # all of window 0 is dropped
    np.testing.assert_array_equal(model.window_frames(1), np.arange(-15, 15))
    np.testing.assert_array_equal(model.window_frames(2), np.arange(15, 45))
    # frame f of window w lands on the 60 fps grid: target floor(f * 800 / 3)
    frames = model.window_frames(5)
    centre_targets = 8000 * 5 - 12000 + (np.arange(30) * 800) // 3
    np.testing.assert_array_equal((frames * 800) // 3, centre_targets)


@pytest.mark.parametrize("seconds", [0.4, 1.0, 2.3])
def test_frames_match_the_window_by_window_reference(
    generated: GeneratedDiffusion, model: DiffusionModel, seconds: float
) -> None:
    samples = _speechlike(seconds, 3)
    options = InferenceOptions(fps=60, geometry=True, parameters=PLAIN, identity="James")
    result = model.animate([_audio(samples)], options)[0]
    expected = _reference_deltas(generated, samples, identity=1, seed=0)
    data = generated.model_data["James"]
    skin = data["neutral_skin"].reshape(-1) + expected[:, : generated.skin_size]
    tongue_end = generated.skin_size + generated.tongue_size
    tongue = data["neutral_tongue"].reshape(-1) + expected[:, generated.skin_size : tongue_end]
    assert result.num_frames == len(expected) == len(frame_targets(len(expected), Fraction(60)))
    got_skin = result.arrays["skin_geometry"].reshape(result.num_frames, -1)
    np.testing.assert_allclose(got_skin, skin, atol=2e-4)
    got_tongue = result.arrays["tongue_geometry"].reshape(result.num_frames, -1)
    np.testing.assert_allclose(got_tongue, tongue, atol=2e-4)
    assert np.abs(expected).max() > 0.5  # the comparison is not vacuous


def test_gru_state_is_carried_between_windows_and_reset_per_track(
    generated: GeneratedDiffusion, model: DiffusionModel
) -> None:
    samples = _speechlike(2.0, 4)
    options = InferenceOptions(fps=60, geometry=True, parameters=PLAIN)
    first = model.animate([_audio(samples)], options)[0]
    again = model.animate([_audio(samples)], options)[0]  # a new run starts from zero state
    np.testing.assert_array_equal(first.arrays["skin_geometry"], again.arrays["skin_geometry"])
    carried = _reference_deltas(generated, samples, identity=0, seed=0)
    stateless = _reference_deltas(generated, samples, identity=0, seed=0, carry=False)
    got = first.arrays["skin_geometry"].reshape(first.num_frames, -1)
    neutral = generated.model_data["Claire"]["neutral_skin"].reshape(-1)
    np.testing.assert_allclose(got, neutral + carried[:, : generated.skin_size], atol=2e-4)
    # frames after the first kept window differ when the state is not carried
    assert np.abs(carried[30:] - stateless[30:]).max() > 1e-2


def test_batch_of_tracks_equals_one_at_a_time(model: DiffusionModel) -> None:
    tracks = [_audio(_speechlike(s, seed), start_s=st)
              for s, seed, st in ((1.2, 5, 0.0), (0.3, 6, 1.0), (2.1, 7, 0.5))]  # fmt: skip
    keys = ((0.2, {"joy": 0.0}), (1.4, {"joy": 1.0}))
    options = InferenceOptions(fps=30, emotions=keys, geometry=True)
    batch = model.animate(tracks, options)
    for track, together in zip(tracks, batch, strict=True):
        alone = model.animate([track], options)[0]
        np.testing.assert_allclose(together.weights, alone.weights, atol=1e-6)
        np.testing.assert_allclose(
            together.arrays["skin_geometry"], alone.arrays["skin_geometry"], atol=1e-5
        )
        np.testing.assert_array_equal(together.emotions, alone.emotions)


def test_engine_batches_split_at_the_engines_limit(model: DiffusionModel) -> None:
    tracks = [_audio(_speechlike(0.8, seed)) for seed in (8, 9, 10)]
    options = InferenceOptions(fps=60)
    whole = model.animate(tracks, options)
    model.engine.max_batch = 2  # as a TensorRT profile admitting 2 tracks per call
    try:
        split = model.animate(tracks, options)
    finally:
        model.engine.max_batch = None
    for a, b in zip(whole, split, strict=True):
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-6)


def test_noise_is_seeded_constant_or_per_window() -> None:
    constant = NoiseSource((3, 4, 5), seed=7, constant=True)
    np.testing.assert_array_equal(constant.window(0), constant.window(9))
    per_window = NoiseSource((3, 4, 5), seed=7, constant=False)
    assert np.abs(per_window.window(0) - per_window.window(1)).max() > 0.1
    replay = NoiseSource((3, 4, 5), seed=7, constant=False)
    np.testing.assert_array_equal(per_window.window(3), replay.window(3))
    other = NoiseSource((3, 4, 5), seed=8, constant=True)
    assert np.abs(other.window(0) - constant.window(0)).max() > 0.1
    draw = NoiseSource((3, 60, 500), seed=1, constant=True).window(0)
    assert draw.dtype == np.float32 and abs(draw.mean()) < 0.02 and abs(draw.std() - 1) < 0.02


def test_seed_and_noise_mode_change_the_animation_reproducibly(model: DiffusionModel) -> None:
    track = [_audio(_speechlike(1.5, 11))]

    def run(**changes: object) -> np.ndarray:
        return model.animate(track, InferenceOptions(fps=60, geometry=True, **changes))[0].arrays[
            "skin_geometry"
        ]

    base = run(seed=0)
    np.testing.assert_array_equal(base, run(seed=0))
    assert np.abs(base - run(seed=1)).max() > 1e-3
    per_window = run(seed=0, parameters={"constant_noise": False})
    np.testing.assert_array_equal(per_window, run(seed=0, parameters={"constant_noise": False}))
    assert np.abs(base - per_window).max() > 1e-3


def test_identity_by_name_changes_face_and_config(model: DiffusionModel) -> None:
    track = [_audio(_speechlike(1.0, 12))]
    claire = model.animate(track, InferenceOptions(fps=60))[0]
    mark = model.animate(track, InferenceOptions(fps=60, identity="MARK"))[0]
    assert claire.parameters["identity"] == "Claire" and mark.parameters["identity"] == "Mark"
    assert "Mark" in mark.model
    assert mark.parameters["eye_saccade_seed"] == 20  # Mark's own model_config
    assert mark.parameters["input_strength"] == 1.0  # the SDK's diffusion executor ignores 1.2
    assert np.abs(claire.weights - mark.weights).max() > 1e-3
    with pytest.raises(ModelError, match="use one of: Claire, James, Mark"):
        model.animate(track, InferenceOptions(identity="Bob"))


def test_parameters_are_validated(model: DiffusionModel) -> None:
    track = [_audio(_speechlike(0.5, 13))]
    with pytest.raises(ParameterError, match="constant_noise must be true or false"):
        model.animate(track, InferenceOptions(parameters={"constant_noise": "no"}))
    with pytest.raises(ParameterError, match="noise_generator='mt' is unknown"):
        model.animate(track, InferenceOptions(parameters={"noise_generator": "mt"}))
    with pytest.raises(ParameterError, match="unknown parameter 'source_shot'"):
        model.animate(track, InferenceOptions(parameters={"source_shot": "x"}))
    with pytest.raises(ParameterError, match="skin.strengthL2regularization"):
        model.animate(track, InferenceOptions(parameters={"skin.strengthL2regularization": -1}))
    louder = model.animate(track, InferenceOptions(parameters={"input_strength": 2.0}))[0]
    assert louder.parameters["input_strength"] == 2.0


def test_input_strength_override_scales_the_network_audio(
    generated: GeneratedDiffusion, model: DiffusionModel
) -> None:
    """``--param input_strength=X`` multiplies every window's samples (the SDK's
    ``SetExecutorInputStrength``); the default stays the executor's 1.0."""
    samples = _speechlike(1.2, 14)
    data = generated.model_data["Claire"]["neutral_skin"].reshape(-1)
    frames = {}
    for strength in (1.0, 2.5):
        parameters = {**PLAIN, "input_strength": strength}
        options = InferenceOptions(fps=60, geometry=True, parameters=parameters)
        result = model.animate([_audio(samples)], options)[0]
        assert result.parameters["input_strength"] == strength
        expected = _reference_deltas(generated, samples, 0, 0, input_strength=strength)
        got = result.arrays["skin_geometry"].reshape(result.num_frames, -1)
        np.testing.assert_allclose(got, data + expected[:, : generated.skin_size], atol=2e-4)
        frames[strength] = got
    assert np.abs(frames[2.5] - frames[1.0]).max() > 1e-2  # the override is not ignored


def test_emotions_are_read_per_centre_frame(model: DiffusionModel) -> None:
    track = [_audio(_speechlike(2.0, 14))]
    neutral = model.animate(track, InferenceOptions(fps=60))[0]
    keys = ((0.0, {"anger": 0.0}), (1.0, {"anger": 1.0}))
    angry = model.animate(track, InferenceOptions(fps=60, emotions=keys))[0]
    anger = A2F_EMOTIONS.index("anger")
    assert angry.emotions[0, anger] == 0 and angry.emotions[-1, anger] == 1.0
    assert angry.emotions[30, anger] == pytest.approx(0.5, abs=0.01)
    # before the anger ramps up the frames agree; later they differ
    early = slice(0, 5)
    assert np.abs(neutral.weights[early] - angry.weights[early]).max() < np.abs(
        neutral.weights[90:] - angry.weights[90:]
    ).max()


def test_other_frame_rates_interpolate_network_frames() -> None:
    net = frame_targets(10, Fraction(60))
    same = FrameResampler(net, net)
    frames = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    out = np.concatenate([same.push(0, frames[:4]), same.push(4, frames[4:])])
    np.testing.assert_array_equal(out, frames)
    at24 = frame_targets(4, Fraction(24))  # targets 0, 666, 1333, 2000
    resampler = FrameResampler(net, at24)
    pieces = [resampler.push(i, frames[i : i + 1]) for i in range(10)]
    got = np.concatenate(pieces)
    expected = np.stack([np.array([np.interp(t, net, frames[:, c]) for c in range(2)]) for t in at24])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [len(p) for p in pieces][:3] == [1, 0, 0]  # frame 1 waits for network frame 3


def test_last_output_frame_past_the_last_network_frame_holds(model: DiffusionModel) -> None:
    """700 samples: network targets 0, 266, 533; at 24 fps 0 and 666, after the last one, which
    holds (the frame count follows the SDK rule at every rate)."""
    net, out = frame_targets(3, Fraction(60)), frame_targets(2, Fraction(24))
    resampler = FrameResampler(net, out)
    frames = np.array([[1.0], [2.0], [4.0]], np.float32)
    np.testing.assert_array_equal(resampler.push(0, frames), [[1.0], [4.0]])
    result = model.animate([_audio(_speechlike(700 / 16000, 21))], InferenceOptions(fps=24))[0]
    assert result.num_frames == 2


def test_thirty_fps_takes_every_other_network_frame(
    generated: GeneratedDiffusion, model: DiffusionModel
) -> None:
    samples = _speechlike(1.3, 15)
    options = InferenceOptions(fps=30, geometry=True, parameters=PLAIN)
    result = model.animate([_audio(samples)], options)[0]
    expected = _reference_deltas(generated, samples, identity=0, seed=0)[::2]
    neutral = generated.model_data["Claire"]["neutral_skin"].reshape(-1)
    got = result.arrays["skin_geometry"].reshape(result.num_frames, -1)
    np.testing.assert_allclose(got, neutral + expected[:, : generated.skin_size], atol=2e-4)


def test_progress_and_cancel(model: DiffusionModel) -> None:
    seen: list[float] = []
    model.animate([_audio(_speechlike(1.5, 16))], InferenceOptions(), lambda p: seen.append(p.fraction))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        model.animate([_audio(_speechlike(1.5, 16))], InferenceOptions(), cancel=token)


def test_api_and_cli_run_a_diffusion_folder(generated: GeneratedDiffusion, tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    import soundfile

    soundfile.write(clip, _speechlike(1.0, 17), 16000)
    result = Animator(str(generated.model_json), InferenceOptions(fps=30, identity="James",
                                                                  backend="onnxruntime")).animate(clip)  # fmt: skip
    assert result.num_frames == 30 and result.parameters["identity"] == "James"
    out = tmp_path / "out.json"
    done = run_cli("animate", str(clip), "--model", str(generated.model_json), "--identity",
                   "james", "--fps", "30", "--engine", "onnxruntime", "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    exported = json.loads(out.read_text())
    np.testing.assert_allclose(np.asarray(exported["weightMat"]), result.weights, atol=1e-6)
    info = run_cli("info", str(generated.model_json))
    assert info.returncode == 0, info.stderr
    assert "James" in info.stdout and "diffusion" in info.stdout


@pytest.mark.slow
def test_torch_engine_runs_the_pipeline_like_onnx_runtime(
    generated: GeneratedDiffusion, model: DiffusionModel
) -> None:
    pytest.importorskip("torch")
    on_torch = load_model(generated.model_json, backend="torch", device="cpu")
    assert on_torch.engine.name == "torch"
    tracks = [_audio(_speechlike(s, seed)) for s, seed in ((1.4, 18), (0.6, 19))]
    for constant in (True, False):
        options = InferenceOptions(fps=60, geometry=True, parameters={"constant_noise": constant})
        for want, got in zip(model.animate(tracks, options), on_torch.animate(tracks, options),
                             strict=True):  # fmt: skip
            assert got.parameters["engine"] == "torch"
            np.testing.assert_allclose(got.arrays["skin_geometry"], want.arrays["skin_geometry"],
                                       atol=1e-4)  # fmt: skip
            np.testing.assert_allclose(got.weights, want.weights, atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_default_noise_on_a_machine_without_cupy_is_numpy_and_recorded(
    model: DiffusionModel, tmp_path: Path
) -> None:
    """``noise_generator="auto"`` (the default) draws from NumPy's Philox without CuPy and a
    GPU; the result and the JSON export's ``a2x`` block say which generator drew (the CUDA
    side: tests/gpu/test_diffusion_cuda.py)."""
    from a2x_core.export.writers import write_json
    from a2x_core.models.diffusion_noise import curand_available, resolve_generator

    assert not curand_available()
    assert resolve_generator("auto") == "numpy" and resolve_generator("curand") == "curand"
    assert model.settings().noise_generator == "auto"
    track = [_audio(_speechlike(0.8, 21))]
    default = model.animate(track, InferenceOptions(fps=60))[0]
    forced = model.animate(track, InferenceOptions(fps=60, parameters={"noise_generator": "numpy"}))[0]
    assert default.parameters["noise_generator"] == forced.parameters["noise_generator"] == "numpy"
    np.testing.assert_array_equal(default.weights, forced.weights)
    write_json(default, tmp_path / "out.json")
    block = json.loads((tmp_path / "out.json").read_text())["a2x"]
    assert block["parameters"]["noise_generator"] == "numpy"


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_curand_noise_without_cupy_says_what_to_install(model: DiffusionModel) -> None:
    with pytest.raises(EngineError, match="noise_generator=curand needs CuPy"):
        model.animate([_audio(_speechlike(0.5, 20))], InferenceOptions(parameters={"noise_generator": "curand"}))


# ----------------------------------------------------------------------------- device stages

#: ADMM (the device path's solver) against BVLS (the NumPy path's) on the generated diffusion
#: sets, on the same meshes: measured max 4.1e-2 to 5.9e-2, mean 5.2e-3 to 5.6e-3 over the
#: three identities (the regression folder's gap is smaller; its test bounds are 6e-2 / 5e-3).
DIFFUSION_ADMM_VS_BVLS_MEAN = 7e-3


def _device_tracks() -> list[Audio]:
    """Three lengths (ending in different windows) and an empty track."""
    lengths = ((1.3, 22, 0.0), (0.45, 23, 0.2), (2.21, 24, 0.0), (0.0, 25, 0.0))
    return [_audio(_speechlike(s, seed), start_s=st) for s, seed, st in lengths]


def _compare_device(
    model: DiffusionModel, ref: list, got: list, device: str, solve_atol: float = 1e-5
) -> None:
    """Device results against the NumPy stages: meshes to 1e-4, jaw and eyes to 1e-5, skin
    weights the ADMM of the NumPy path's meshes (``solve_atol``) and within the ADMM-vs-BVLS
    gap of its weights, tongue weights to 1e-4."""
    torch = pytest.importorskip("torch")
    from a2x_core.blendshapes.cpu import BlendshapeSolver
    from a2x_core.blendshapes.gpu import AdmmSolver
    from tests.core.test_postprocess_gpu import ADMM_VS_BVLS_MAX

    settings = model.settings({}, ref[0].parameters["identity"])
    admm = AdmmSolver(BlendshapeSolver(settings.identity.skin.data, settings.skin), "cpu")
    skin_columns = model._columns[settings.identity.name][0]
    diffs = []
    for r, q in zip(ref, got, strict=True):
        assert r.parameters["postprocess"] == "numpy" and q.parameters["postprocess"] == device
        assert q.num_frames == r.num_frames
        for name in ("skin_geometry", "tongue_geometry"):
            np.testing.assert_allclose(q.arrays[name], r.arrays[name], atol=1e-4, rtol=0)
        np.testing.assert_allclose(q.jaw_transforms, r.jaw_transforms, atol=1e-5, rtol=0)
        np.testing.assert_allclose(q.eye_rotations, r.eye_rotations, atol=1e-5, rtol=0)
        np.testing.assert_allclose(q.tongue_weights, r.tongue_weights, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(q.emotions, r.emotions)
        if r.num_frames:
            mesh = torch.from_numpy(r.arrays["skin_geometry"].reshape(1, r.num_frames, -1))
            on_cpu_mesh = admm.solve(mesh)[0].numpy()[:, skin_columns]
            np.testing.assert_allclose(q.weights, on_cpu_mesh, atol=solve_atol, rtol=0)
        diffs.append(np.abs(q.weights - r.weights).ravel())
    diffs = np.concatenate(diffs)
    assert diffs.max() < ADMM_VS_BVLS_MAX and diffs.mean() < DIFFUSION_ADMM_VS_BVLS_MEAN


@pytest.fixture(scope="module")
def ort_model(generated: GeneratedDiffusion) -> DiffusionModel:
    """A model of its own for the device tests (they switch ``postprocess``)."""
    return load_model(generated.model_json, backend="onnxruntime", threads=1)


@pytest.mark.parametrize("fps", [60, 30, 24])
def test_device_stages_match_the_numpy_stages(ort_model: DiffusionModel, fps: int) -> None:
    """Network frames from ONNX Runtime; post-processing, interpolation (24 fps) and solves by
    torch on the CPU, tracks ending in different windows."""
    pytest.importorskip("torch")
    tracks = _device_tracks()
    keys = ((0.0, {"joy": 0.1}), (1.5, {"joy": 0.8}))
    options = InferenceOptions(fps=fps, geometry=True, emotions=keys)
    ort_model.postprocess = "numpy"
    ref = ort_model.animate(tracks, options)
    ort_model.postprocess = "cpu"
    try:
        got = ort_model.animate(tracks, options)
        plain = ort_model.animate(tracks, options.with_changes(geometry=False))
    finally:
        ort_model.postprocess = "auto"
    assert [r.num_frames for r in ref] == [num_frames_for(len(t.samples), fps) for t in tracks]
    _compare_device(ort_model, ref, got, "cpu")
    # the solves never read the decoded meshes: the same weights without them
    for a, b in zip(plain, got, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)
        assert "skin_geometry" not in a.arrays


def test_device_path_on_the_torch_engine(generated: GeneratedDiffusion) -> None:
    """The torch engine on the CPU keeps the GRU state and the kept frames on the device; the
    batch matches the NumPy stages and each track alone gives its rows of the batch (to the
    float32 rounding of the engine's batched kernels)."""
    pytest.importorskip("torch")
    on_torch = load_model(generated.model_json, backend="torch", device="cpu")
    assert on_torch.postprocess_device() is None  # auto: the CPU keeps the NumPy stages
    tracks = _device_tracks()[:3]
    options = InferenceOptions(fps=24, geometry=True, identity="James")
    on_torch.postprocess = "numpy"
    ref = on_torch.animate(tracks, options)
    on_torch.postprocess = "cpu"
    batched = on_torch.animate(tracks, options)
    _compare_device(on_torch, ref, batched, "cpu")
    for track, together in zip(tracks[:2], batched[:2], strict=True):
        alone = on_torch.animate([track], options)[0]
        np.testing.assert_allclose(alone.weights, together.weights, atol=1e-5, rtol=0)
        np.testing.assert_allclose(alone.jaw_transforms, together.jaw_transforms, atol=1e-5, rtol=0)


def test_postprocess_choice(generated: GeneratedDiffusion, ort_model: DiffusionModel) -> None:
    assert ort_model.postprocess_device() is None  # auto: a CPU engine keeps the NumPy stages
    result = ort_model.animate([_audio(_speechlike(0.3, 26))], InferenceOptions())[0]
    assert result.parameters["postprocess"] == "numpy"
    ort_model.postprocess = "gpu"
    try:
        with pytest.raises(ParameterError, match="postprocess"):
            ort_model.animate([_audio(_speechlike(0.3, 26))], InferenceOptions())
        ort_model.postprocess = "cuda:1"
        assert ort_model.postprocess_device() == "cuda:1"
    finally:
        ort_model.postprocess = "auto"
    with pytest.raises(ParameterError, match="use one of: auto, numpy, cpu, cuda"):
        DiffusionModel.load(generated.model_json, EngineSettings("onnxruntime"), postprocess="gpu")


def test_engine_profile_grows_to_the_track_count(
    generated: GeneratedDiffusion, model: DiffusionModel
) -> None:
    """A TensorRT engine's profile is asked for the track count (here a real ONNX Runtime session
    with TensorRT's batch limit and growth call)."""
    from a2x_core.backends.onnxruntime import OnnxRuntimeEngine

    class ProfileEngine(OnnxRuntimeEngine):
        asked: list[int]

        def ensure_max_batch(self, batch: int) -> None:
            self.asked.append(batch)
            self.max_batch = max(self.max_batch or 0, batch)

    engine = ProfileEngine(model.engine.path, model.engine.inputs, model.engine.outputs)
    engine.asked, engine.max_batch = [], 1
    grown = DiffusionModel(model.package, engine)
    tracks = [_audio(_speechlike(0.7, seed)) for seed in (21, 22, 23)]
    for want, got in zip(model.animate(tracks, InferenceOptions()),
                         grown.animate(tracks, InferenceOptions()), strict=True):  # fmt: skip
        np.testing.assert_allclose(got.weights, want.weights, atol=1e-6)
    assert engine.asked == [3] and engine.max_batch == 3
