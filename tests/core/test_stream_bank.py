"""A stream bank (many equal streams as arrays, one batch per tick on a torch device) gives each
stream the device offline run's frames (torch on the CPU here; tests/gpu runs it on CUDA)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from a2x_core.audio.decode import Audio, decode_audio
from a2x_core.errors import AudioInvalidSamplesError, ParameterError
from a2x_core.models.registry import load_model
from a2x_core.models.regression import RegressionModel
from a2x_core.options import InferenceOptions
from tests.a2f_folders import make_regression_folder
from tests.conftest import SAMPLE

pytest.importorskip("torch")
KEYS = ((0.4, {"joy": 0.1}), (2.2, {"joy": 0.9, "anger": 0.3}))


def bank_model(tmp_path_factory: pytest.TempPathFactory, device: str) -> RegressionModel:
    folder = make_regression_folder(tmp_path_factory.mktemp("bank") / "model", seed=7)
    if device == "cuda":
        model = load_model(folder.model_json, backend="torch", device="cuda")
    else:
        model = load_model(folder.model_json, backend="onnxruntime", threads=1)
        model.postprocess = device
    assert isinstance(model, RegressionModel)
    return model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> RegressionModel:
    return bank_model(tmp_path_factory, "cpu")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return decode_audio(SAMPLE, start_s=0.5, end_s=3.5).samples


def run_bank_against_offline(model: RegressionModel, speech: np.ndarray, fps: Fraction) -> None:
    """Six streams of different lengths, joining at different ticks, 20 ms (320-sample) pushes;
    each stream's frames equal its offline run on the same device stages."""
    options = InferenceOptions(fps=fps, emotions=KEYS)
    clips = [np.roll(speech, 3001 * k)[: 12000 + 5000 * k] for k in range(6)]
    joins = [0, 0, 2, 5, 5, 11]
    offline = model.animate([Audio(c) for c in clips], options)
    bank = model.stream_bank(options, max_push=640)
    slot_of: dict[int, int] = {}
    got: dict[int, list] = {k: [] for k in range(6)}
    at = dict.fromkeys(range(6), 0)
    tick = 0
    while len(slot_of) < 6 or any(at[k] < len(clips[k]) for k in slot_of):
        for k in range(6):
            if joins[k] == tick:
                slot_of[k] = int(bank.open()[0])
        active = [k for k in slot_of if at[k] < len(clips[k])]
        block = np.zeros((len(active), 320), np.float32)
        for row, k in enumerate(active):
            piece = clips[k][at[k] : at[k] + 320]
            block[row, : len(piece)] = piece
        # a clip's last block is partial: push its real samples alone
        full = [row for row, k in enumerate(active) if len(clips[k]) - at[k] >= 320]
        frames = [bank.push([slot_of[active[r]] for r in full], block[full])]
        for row, k in enumerate(active):
            if row not in full:
                rest = clips[k][at[k] :]
                frames.append(bank.push([slot_of[k]], rest[None, :]))
            at[k] += 320
        for k in active:
            if at[k] >= len(clips[k]):
                frames.append(bank.close([slot_of[k]]))
        for part in frames:
            for k, slot in slot_of.items():
                mine = part.of(slot)
                if len(mine):
                    got[k].append(mine)
        tick += 1
    for k, want in enumerate(offline):
        frames_k = got[k]
        index = np.concatenate([f.index for f in frames_k])
        assert index.tolist() == list(range(want.num_frames))
        for name, field in (("weights", "weights"), ("tongue_weights", "tongue_weights"),
                            ("jaw_transforms", "jaw_transforms"),
                            ("eye_rotations", "eye_rotations")):  # fmt: skip
            values = np.concatenate([getattr(f, name) for f in frames_k])
            np.testing.assert_allclose(values, getattr(want, field), atol=1e-5, rtol=0,
                                       err_msg=f"stream {k} {name}")  # fmt: skip
    assert bank.open_streams == 0


@pytest.mark.parametrize("fps", [Fraction(30), Fraction(30000, 1001)], ids=str)
def test_bank_streams_equal_the_device_offline_run(
    model: RegressionModel, speech: np.ndarray, fps: Fraction
) -> None:
    run_bank_against_offline(model, speech, fps)


def test_bank_refuses_bad_calls(model: RegressionModel, speech: np.ndarray, tmp_path) -> None:  # noqa: ANN001
    bank = model.stream_bank(InferenceOptions(fps=30), max_push=320)
    slots = bank.open(2)
    with pytest.raises(ParameterError, match="max_push"):
        bank.push(slots, np.zeros((2, 321), np.float32))
    with pytest.raises(ParameterError, match="shape"):
        bank.push(slots, np.zeros(320, np.float32))
    with pytest.raises(ParameterError, match="twice"):
        bank.push([slots[0], slots[0]], np.zeros((2, 10), np.float32))
    with pytest.raises(ParameterError, match="not open"):
        bank.push([99], np.zeros((1, 10), np.float32))
    bad = np.zeros((2, 10), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(AudioInvalidSamplesError):
        bank.push(slots, bad)
    bank.cancel(slots[:1])
    with pytest.raises(ParameterError, match="not open"):
        bank.close(slots[:1])
    assert len(bank.close(slots[1:])) == 0  # nothing was pushed: no frames
    cpu = load_model(model.package.model_json, backend="onnxruntime", threads=1)
    cpu.postprocess = "numpy"
    with pytest.raises(ParameterError, match="torch device"):
        cpu.stream_bank(InferenceOptions())
