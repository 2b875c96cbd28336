"""Does the default model look alive? Head, gaze and face statistics next to real captures.

Usage::

    .venv/bin/python benchmarks/alive_stats.py [--data ../shared/data] [--json OUT]

Real takes (``../shared/data``, see its SOURCES.md; nothing is copied): the iPhone ARKit take
of ``arkit_capture_no_audio/headbox_unity_facecapture_take001_arkit52.csv`` (head and eyes as
Unity Euler angles), the two Live Link Face range-of-motion takes (eyes only: their head
columns are 0) and the MediaPipe take of a person talking
(``arkit_pairs/nn_training_mediapipe``, head as a quaternion). Ours: the default model on the
``speech_en`` clips (recognised, no transcript; default options, seeds 0, 1, 2...).

Every curve is resampled to 30 fps and smoothed over 0.1 s (MediaPipe's frame jitter is not
head motion) before the statistics. Head angles are taken relative to the take's median pose.
Definitions (per take):

- ``range`` pitch/yaw/roll: 5th-95th percentile spread, degrees;
- ``speed`` p50/p95: head angular speed, degrees per second;
- ``nods/min``: peaks of |pitch - its 1 s moving mean| of at least 1 degree, 0.3 s apart;
- gaze ``range`` yaw/pitch and ``shifts/min`` (eye speed above 60 degrees/s, onsets);
- face: channels whose p99 stays <= 0.01 (``dead``), left/right asymmetry (mean |L - R| over
  mean (L + R) / 2 of the pairs that move), p95 of mouthPress, mouthLowerDown, cheekSquint,
  eyeSquint, and the share of frames whose jawOpen changes by > 0.2 from the last.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from a2x_core.audio.decode import decode_audio
from a2x_core.lipsync.expressions import moving_mean
from a2x_core.lipsync.model import DefaultLipSyncModel
from a2x_core.names import ARKIT_52
from a2x_core.options import InferenceOptions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FPS = 30
OURS_CLIPS = ("whisper_jfk.flac", "librispeech_1995-1837-0001.wav",
              "ljspeech_LJ050-0131.wav", "timit_sample_LDC93S1.wav")  # fmt: skip
_LOWER = {name.lower(): i for i, name in enumerate(ARKIT_52)}
PAIRS = [(i, _LOWER[n.lower().replace("left", "right")]) for i, n in enumerate(ARKIT_52)
         if n.endswith("Left")]  # fmt: skip


def _smooth(x: np.ndarray) -> np.ndarray:
    return np.stack([moving_mean(c, 3) for c in np.atleast_2d(x.T)]).T


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = rows[0]

    def number(v: str) -> float:
        try:
            return float(v)
        except ValueError:
            return np.nan

    return header, np.array([[number(v) for v in r] for r in rows[1:]])


def _weights(header: list[str], values: np.ndarray) -> np.ndarray:
    """``[n, 52]`` ARKit weights by name (missing names stay 0)."""
    out = np.zeros((len(values), 52))
    for k, name in enumerate(header):
        if name.lower() in _LOWER:
            out[:, _LOWER[name.lower()]] = values[:, k]
    return np.nan_to_num(out)


def _centred_degrees(angles: np.ndarray) -> np.ndarray:
    """Euler degrees relative to the median pose, wrapped into -180..180."""
    return (angles - np.median(angles, axis=0) + 180.0) % 360.0 - 180.0


def _quaternion_degrees(q: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) degrees of unit quaternions (w, x, y, z) relative to their mean
    (small-angle rotation vector: fine for a talking head's few degrees)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    mean = np.median(q, axis=0)
    mean /= np.linalg.norm(mean)
    w0, v0 = mean[0], -mean[1:]  # conjugate of the mean
    w, v = q[:, :1], q[:, 1:]
    rel_w = w0 * w[:, 0] - v @ v0
    rel_v = w0 * v + w * v0 + np.cross(v0, v)
    rel_v *= np.sign(rel_w)[:, None]
    return np.degrees(2.0 * rel_v)


def head_stats(head_deg: np.ndarray) -> dict[str, float]:
    head = _smooth(head_deg)
    spread = np.percentile(head, 95, axis=0) - np.percentile(head, 5, axis=0)
    speed = np.linalg.norm(np.diff(head, axis=0), axis=1) * FPS
    pitch = head[:, 0] - moving_mean(head[:, 0], FPS)
    nods = _peaks(np.abs(pitch), 1.0, int(0.3 * FPS))
    return {"pitch range": spread[0], "yaw range": spread[1], "roll range": spread[2],
            "speed p50": float(np.percentile(speed, 50)),
            "speed p95": float(np.percentile(speed, 95)),
            "nods/min": 60.0 * nods * FPS / len(head)}  # fmt: skip


def _peaks(x: np.ndarray, height: float, gap: int) -> int:
    is_peak = (x[1:-1] >= x[:-2]) & (x[1:-1] > x[2:]) & (x[1:-1] >= height)
    count, last = 0, -gap
    for k in np.flatnonzero(is_peak):
        if k - last >= gap:
            count, last = count + 1, k
    return count


def gaze_stats(eyes_deg: np.ndarray) -> dict[str, float]:
    """``eyes_deg``: ``[n, 2]`` (pitch, yaw) of one eye, degrees."""
    eyes = _centred_degrees(eyes_deg)
    spread = np.percentile(eyes, 95, axis=0) - np.percentile(eyes, 5, axis=0)
    fast = np.linalg.norm(np.diff(eyes, axis=0), axis=1) * FPS > 60.0
    onsets = int(np.sum(fast[1:] & ~fast[:-1]) + (fast[0] if len(fast) else 0))
    return {"gaze pitch range": spread[0], "gaze yaw range": spread[1],
            "gaze shifts/min": 60.0 * onsets * FPS / len(eyes)}  # fmt: skip


def face_stats(w: np.ndarray) -> dict[str, float]:
    col = _LOWER
    dead = int(np.sum(np.percentile(w, 99, axis=0) <= 0.01))
    asym = []
    for left, right in PAIRS:
        mean = 0.5 * (w[:, left] + w[:, right]).mean()
        if np.percentile(np.maximum(w[:, left], w[:, right]), 95) > 0.05 and mean > 0:
            asym.append(np.abs(w[:, left] - w[:, right]).mean() / mean)
    jaw = w[:, col["jawopen"]]

    def p95(*names: str) -> float:
        return float(np.percentile(w[:, [col[n.lower()] for n in names]].mean(axis=1), 95))

    return {
        "dead channels": dead,
        "asymmetry": float(np.mean(asym)) if asym else 0.0,
        "mouthPress p95": p95("mouthPressLeft", "mouthPressRight"),
        "mouthLowerDown p95": p95("mouthLowerDownLeft", "mouthLowerDownRight"),
        "cheekSquint p95": p95("cheekSquintLeft", "cheekSquintRight"),
        "eyeSquint p95": p95("eyeSquintLeft", "eyeSquintRight"),
        "jaw jumps > 0.2": float(np.mean(np.abs(np.diff(jaw)) > 0.2)),
    }


def real_takes(data: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    capture = data / "arkit_capture_no_audio"
    path = capture / "headbox_unity_facecapture_take001_arkit52.csv"
    if path.exists():
        header, v = _read_csv(path)
        idx = {n: k for k, n in enumerate(header)}
        head = _centred_degrees(v[:, [idx[f"HeadOrientation.{a}"] for a in "xyz"]])
        eyes = v[:, [idx["RightEyeOrientation.x"], idx["RightEyeOrientation.y"]]]
        out["iPhone ARKit (Unity take, 6.9 s)"] = {
            **head_stats(head), **gaze_stats(eyes), **face_stats(_weights(header, v))}
    for name in ("livelinkface_alex_rom_3.csv", "livelinkface_alex_rom_4.csv"):
        path = capture / name
        if path.exists():
            header, v = _read_csv(path)
            idx = {n: k for k, n in enumerate(header)}
            eyes = np.degrees(v[:, [idx["RightEyePitch"], idx["RightEyeYaw"]]])
            out[f"Live Link Face ROM ({name[-9:-4]})"] = {
                **gaze_stats(eyes), **face_stats(_weights(header, v))}
    path = data / "arkit_pairs" / "nn_training_mediapipe" / "blendshapes_30fps_derived.csv"
    if path.exists():
        header, v = _read_csv(path)
        idx = {n: k for k, n in enumerate(header)}
        q = v[:, [idx[f"headRotation.{a}"] for a in "wxyz"]]
        ok = np.isfinite(q).all(axis=1)
        out["MediaPipe, talking (33 s)"] = {
            **head_stats(_quaternion_degrees(q[ok])), **face_stats(_weights(header, v[ok]))}
    return out


def ours(data: Path) -> dict[str, dict[str, float]]:
    model = DefaultLipSyncModel()
    clips = [data / "speech_en" / name for name in OURS_CLIPS]
    results = [model.animate([decode_audio(p)], InferenceOptions(fps=FPS, seed=k))[0]
               for k, p in enumerate(clips) if p.exists()]  # fmt: skip
    if not results:
        return {}
    head = np.concatenate([np.degrees(r.head_rotations) for r in results])
    eyes = np.concatenate([r.eye_rotations[:, :2] for r in results])
    weights = np.concatenate([r.weights for r in results])
    seconds = sum(r.num_frames for r in results) / FPS
    face = face_stats(weights)
    # Jumps within each clip: the step from one clip's last frame to the next one's first is
    # no jaw movement (it counted as one jump in 909 frames).
    steps = np.concatenate([np.abs(np.diff(r.weights[:, _LOWER["jawopen"]])) for r in results])
    face["jaw jumps > 0.2"] = float(np.mean(steps > 0.2))
    return {f"a2x default ({len(results)} clips, {seconds:.0f} s)": {
        **head_stats(head), **gaze_stats(eyes), **face}}


def table(rows: dict[str, dict[str, float]]) -> str:
    keys = list(dict.fromkeys(k for stats in rows.values() for k in stats))
    lines = ["| statistic | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for key in keys:
        cells = [f"{rows[r][key]:.2f}" if key in rows[r] else "–" for r in rows]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    rows = {**real_takes(args.data), **ours(args.data)}
    if not rows:
        print(f"no data under {args.data}", file=sys.stderr)
        return 2
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
