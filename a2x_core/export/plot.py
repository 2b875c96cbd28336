"""A quick-look PNG: the main curves over the waveform, to judge sync at a glance."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..audio.decode import Audio
from ..errors import OutputError
from ..result import AnimationResult
from .writers import OutputSet

#: Curves worth looking at first: mouth opening, closure, rounding, blinks, brows.
MAIN_CURVES = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "eyeBlinkLeft", "browInnerUp")


def plot_result(
    result: AnimationResult,
    audio: Audio,
    path: str | os.PathLike[str],
    curves: tuple[str, ...] = MAIN_CURVES,
    *,
    overwrite: bool = True,
) -> Path:
    """Draw ``curves`` over the waveform and write a PNG atomically (an ``OSError`` becomes an
    :class:`OutputError` naming ``path``)."""
    target = Path(path)
    with OutputSet(overwrite=overwrite) as outputs:
        stage_plot(outputs, result, audio, target, curves)
        outputs.commit()
    return target


def stage_plot(
    outputs: OutputSet,
    result: AnimationResult,
    audio: Audio,
    path: str | os.PathLike[str],
    curves: tuple[str, ...] = MAIN_CURVES,
) -> None:
    """Draw the PNG into a temporary file of ``outputs``; it appears under ``path`` on commit."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise OutputError(
            "matplotlib is needed for --plot", path=path, hint="pip install 'a2x[plot]'"
        ) from None
    figure, (wave_axis, curve_axis) = plt.subplots(
        2, 1, figsize=(12, 5), sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    try:
        t_audio = audio.start_s + np.arange(len(audio.samples)) / audio.sample_rate
        step = max(1, len(audio.samples) // 20000)
        wave_axis.plot(t_audio[::step], audio.samples[::step], color="0.4", linewidth=0.5)
        wave_axis.set_ylabel("audio")
        wave_axis.set_title(f"{Path(result.audio_path).name or 'audio'} — model {result.model}, {float(result.fps):g} fps")
        times = result.times_s
        for name in curves:
            if name in result.names:
                curve_axis.plot(times, result.curve(name), label=name, linewidth=1.2)
        curve_axis.set_ylim(-0.02, 1.02)
        curve_axis.set_xlabel("time (s)")
        curve_axis.set_ylabel("weight")
        curve_axis.legend(loc="upper right", ncol=3, fontsize=8)
        figure.tight_layout()
        outputs.stage(path, lambda temp: figure.savefig(temp, dpi=110, format="png"))
    finally:
        plt.close(figure)
