"""Inputs and networks shared by the torch-engine tests on the CPU and on CUDA."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the small instance of the benchmark architecture: 6 skin + 4 tongue PCA, 15 jaw + 4 eyes
SMALL_RESULT = 6 + 4 + 19


def random_feeds(batch: int, emotion_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Audio windows and emotion vectors for a regression network's two inputs."""
    rng = np.random.default_rng(seed)
    return {
        "input": (0.3 * rng.standard_normal((batch, 1, 8320))).astype(np.float32),
        "emotion": rng.uniform(0, 1, (batch, 1, emotion_size)).astype(np.float32),
    }


def export_small_benchmark_network(path: Path) -> Path:
    """The architecture of ``benchmarks/a2f_network.py`` with small heads, as ONNX."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from a2f_network import export_onnx

    export_onnx(path, num_skin=6, num_tongue=4)
    return path
