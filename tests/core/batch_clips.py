"""Short real clips for the ``a2x batch`` tests: cut from samples/jfk.flac into a tmp folder,
with corrupt files beside them and a manifest that mixes the default model and a small
generated regression folder."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.a2f_folders import make_regression_folder
from tests.conftest import SAMPLE


def cut_clips(folder: Path, count: int, seconds: float = 0.8) -> list[Path]:
    """``count`` distinct clips of about ``seconds`` each, from different parts of the sample."""
    folder.mkdir(parents=True, exist_ok=True)
    data, rate = sf.read(SAMPLE, dtype="float32")
    span = len(data) / rate - seconds - 0.3
    paths = []
    for i in range(count):
        start = (i * 0.61) % span
        length = seconds + 0.05 * (i % 4)
        clip = data[int(start * rate) : int((start + length) * rate)]
        path = folder / f"line{i:03d}.wav"
        sf.write(path, clip, rate)
        paths.append(path)
    return paths


def corrupt_clips(folder: Path) -> list[Path]:
    """Files a pipeline meets: not audio at all, an empty file, a truncated WAV header."""
    bad = [folder / "corrupt_text.wav", folder / "corrupt_empty.flac", folder / "corrupt_cut.wav"]
    bad[0].write_text("this is not audio\n")
    bad[1].write_bytes(b"")
    bad[2].write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    return bad


def regression_model(folder: Path) -> Path:
    make_regression_folder(folder)
    return folder / "model.json"


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def json_weights(path: Path) -> np.ndarray:
    import json

    return np.asarray(json.loads(path.read_text())["weightMat"])


class CrashOnClip:
    """Kill the worker process as the task of one clip starts executing."""

    def __new__(cls, name: str):  # noqa: ANN204 - a WorkerPlugin made on import of distributed
        from distributed import WorkerPlugin

        class _Crash(WorkerPlugin):
            def __init__(self, clip: str) -> None:
                self.clip = clip

            def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
                if finish == "executing" and f"-{self.clip}-" in str(key):
                    os.kill(os.getpid(), signal.SIGKILL)

        return _Crash(name)
