"""Writers for the formats animators and pipelines read, chosen by file extension.

- ``.json``: the Audio2Face blendshape export layout (``exportFps``, ``trackPath``, ``numPoses``,
  ``numFrames``, ``facsNames``, ``weightMat``) plus an ``a2x`` object with provenance;
- ``.csv``: Live Link Face CSV, header and column order as a real iPhone take;
- ``.npz``: every array of the run.

Every write is atomic (temporary file in the target folder, then ``os.replace``), so a failed
run never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError
from .names import ARKIT_52, LIVE_LINK_FACE_52, LIVE_LINK_FACE_ROTATIONS
from .result import AnimationResult
from .version import __version__

FORMATS = (".json", ".csv", ".npz")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import: temporary files are created 0600, the result must get normal rights.
_FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError("the output folder does not exist", path=folder, hint="create it first")
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, _FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8", newline="")


def _finite_list(array: np.ndarray) -> list[Any]:
    """Nested float lists, rounded to 6 decimals (JSON has no NaN; ~1e-6 is below any rig's step)."""
    return np.round(np.asarray(array, dtype=np.float64), 6).tolist()


def a2x_block(result: AnimationResult) -> dict[str, Any]:
    """Provenance and the non-skin outputs, for the ``a2x`` object of a JSON export."""
    fps = result.fps
    block: dict[str, Any] = {
        "version": __version__,
        "model": result.model,
        "modelVersion": result.model_version,
        "fps": f"{fps.numerator}/{fps.denominator}",
        "startSeconds": result.start_s,
        "durationSeconds": result.duration_s,
        "parameters": result.parameters,
        "options": result.options.to_json(),
        "warnings": list(result.warnings),
    }
    if result.tongue_weights is not None:
        block["tongueNames"] = list(result.tongue_names)
        block["tongueWeightMat"] = _finite_list(result.tongue_weights)
    if result.jaw_transforms is not None:
        block["jawTransforms"] = _finite_list(result.jaw_transforms)
    if result.eye_rotations is not None:
        block["eyeRotations"] = _finite_list(result.eye_rotations)
    if result.emotions is not None:
        block["emotionNames"] = list(result.emotion_names)
        block["emotions"] = _finite_list(result.emotions)
    if result.detected_emotions is not None:
        block["emotionNames"] = list(result.emotion_names)
        block["detectedEmotions"] = _finite_list(result.detected_emotions)
    return block


def to_a2f_json(result: AnimationResult) -> dict[str, Any]:
    """The Audio2Face export layout (what FaceIt and A2F importers read) plus the ``a2x`` block."""
    return {
        "exportFps": float(result.fps),
        "trackPath": result.audio_path,
        "numPoses": len(result.names),
        "numFrames": result.num_frames,
        "facsNames": list(result.names),
        "weightMat": _finite_list(result.weights),
        "a2x": a2x_block(result),
    }


def write_json(result: AnimationResult, path: Path) -> None:
    _write_text(path, json.dumps(to_a2f_json(result), indent=1, allow_nan=False) + "\n")


def live_link_timecode(frame: int, fps_nominal: int) -> str:
    """``HH:MM:SS:FF.fff`` for a frame counted at the nominal (integer) rate, as Live Link Face
    writes it (non-drop; sub-frame always .000 for frames on the grid)."""
    seconds, ff = divmod(frame, fps_nominal)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{ff:02d}.000"


def live_link_rows(result: AnimationResult) -> tuple[list[str], np.ndarray]:
    """Header and ``[frames, 61]`` values in Live Link Face column order.

    Head rotations are 0 (a2x does not animate the head). Eye yaw/pitch come from
    ``eye_rotations`` (degrees, converted to the radians Live Link Face uses) when present.
    """
    header = ["Timecode", "BlendShapeCount", *LIVE_LINK_FACE_52, *LIVE_LINK_FACE_ROTATIONS]
    index = {name.lower(): i for i, name in enumerate(result.names)}
    values = np.zeros((result.num_frames, 61), dtype=np.float64)
    for column, name in enumerate(LIVE_LINK_FACE_52):
        source = index.get(name.lower())
        if source is not None:
            values[:, column] = result.weights[:, source]
    if result.eye_rotations is not None:
        eyes = np.radians(np.asarray(result.eye_rotations, dtype=np.float64))
        # columns 52..60: HeadYaw, HeadPitch, HeadRoll, LeftEye Yaw/Pitch/Roll, RightEye Yaw/Pitch/Roll
        values[:, 55], values[:, 56] = eyes[:, 4], eyes[:, 3]
        values[:, 58], values[:, 59] = eyes[:, 1], eyes[:, 0]
    return header, values


def write_csv(result: AnimationResult, path: Path) -> None:
    header, values = live_link_rows(result)
    nominal = max(1, math.ceil(float(result.fps) - 1e-9))
    start_frame = round(result.start_s * float(result.fps))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for i, row in enumerate(values):
        writer.writerow(
            [live_link_timecode(start_frame + i, nominal), len(LIVE_LINK_FACE_52) + 9]
            + [f"{v:.10f}" for v in row]
        )
    _write_text(path, buffer.getvalue())


def write_npz(result: AnimationResult, path: Path) -> None:
    arrays = result.to_arrays()
    arrays["a2x_json"] = np.array(json.dumps(a2x_block(result) | {"trackPath": result.audio_path}))
    with atomic_path(path) as temp:
        with open(temp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


WRITERS: dict[str, Callable[[AnimationResult, Path], None]] = {
    ".json": write_json,
    ".csv": write_csv,
    ".npz": write_npz,
}


def _format_of(path: Path) -> str:
    """The writer's key for ``path`` (its lower-case extension), or an error naming the choices."""
    suffix = path.suffix.lower()
    if suffix not in WRITERS:
        raise OutputError(
            f"unknown output format {suffix or '(none)'}",
            path=path,
            hint=f"use one of {', '.join(FORMATS)}",
        )
    return suffix


def check_output_path(path: Path, *, overwrite: bool) -> str:
    """Validate an output path before any work runs; return its format extension."""
    suffix = _format_of(path)
    if path.exists() and not overwrite:
        raise OutputError("already exists", path=path, hint="pass --overwrite to replace it")
    if path.exists() and path.is_dir():
        raise OutputError("is a folder", path=path, hint="name a file")
    if not path.parent.exists():
        raise OutputError("the output folder does not exist", path=path.parent, hint="create it first")
    return suffix


def write_result(result: AnimationResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` in the format its extension names (atomically)."""
    target = Path(path)
    bad = result.non_finite_arrays()
    if bad:
        raise OutputError(f"not written: the result's {', '.join(bad)} hold NaN or infinite "
                          "values", path=target, hint="report the model and audio that gave them")  # fmt: skip
    try:
        WRITERS[_format_of(target)](result, target)
    except OSError as error:
        raise OutputError(f"cannot be written ({error.strerror})", path=target, hint="check the folder's permissions") from None
    return target


def read_a2f_json(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, float]:
    """Read an Audio2Face-layout JSON (ours or NVIDIA's): ``(facsNames, weightMat, exportFps)``."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        names = [str(n) for n in data["facsNames"]]
        weights = np.asarray(data["weightMat"], dtype=np.float32).reshape(-1, len(names))
        return names, weights, float(data.get("exportFps", 60.0))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise OutputError(f"is not an Audio2Face blendshape JSON ({error})", path=file, hint="export it again") from None


def arkit_weights_from(names: list[str], weights: np.ndarray) -> np.ndarray:
    """Reorder any named weight matrix into ARKit-52 order (missing poses are 0)."""
    from .names import match_name

    out = np.zeros((weights.shape[0], len(ARKIT_52)), dtype=np.float32)
    for column, name in enumerate(names):
        canon = match_name(name)
        if canon is not None:
            out[:, ARKIT_52.index(canon)] = weights[:, column]
    return out
