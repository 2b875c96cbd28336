"""The stream bank on CUDA (torch engine there, windows gathered from the device ring, the
stages after the network batched there) equals the CUDA offline run (skipped without a GPU)."""

from __future__ import annotations

from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from tests.core.test_stream_bank import bank_model, run_bank_against_offline, speech  # noqa: E402,F401


@pytest.mark.parametrize(
    "fps", [Fraction(24), Fraction(30), Fraction(60), Fraction(30000, 1001)], ids=str
)
def test_cuda_bank_equals_the_cuda_offline_run(
    tmp_path_factory: pytest.TempPathFactory, speech, fps: Fraction  # noqa: ANN001, F811
) -> None:
    model = bank_model(tmp_path_factory, "cuda")
    assert model.postprocess_device() == "cuda"
    run_bank_against_offline(model, speech, fps)
