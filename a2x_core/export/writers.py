"""Writers for the formats animators and pipelines read, chosen by file extension.

- ``.json``: the Audio2Face blendshape export layout (``exportFps``, ``trackPath``, ``numPoses``,
  ``numFrames``, ``facsNames``, ``weightMat``) plus an ``a2x`` object with provenance;
- ``.csv``: Live Link Face CSV, header and column order as a real iPhone take;
- ``.npz``: every array of the run;
- ``.usda``/``.usdc``/``.usd``: a UsdSkel blend-shape animation with the clip as audio
  (:mod:`a2x_core.export.usd`, needs usd-core);
- ``.gltf``/``.glb``: glTF 2.0 morph-target weight animation (:mod:`a2x_core.export.gltf`).

Every write goes to a hidden temporary file beside its target first (``.NAME.PID-XXXXXXXX.tmp``)
and is published only when every output of the run is complete (:class:`OutputSet`): a failed or
cancelled run leaves no partial file, never loses a file it was asked to replace, and never
silently replaces a file that another run published meanwhile. A temporary file left by a killed
process (SIGKILL cannot be caught) is removed by the next write of the same output.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from ..names import ARKIT_52, LIVE_LINK_FACE_52, LIVE_LINK_FACE_ROTATIONS
from ..result import AnimationResult
from ..version import __version__

FORMATS = (".json", ".csv", ".npz", ".usda", ".usdc", ".usd", ".gltf", ".glb")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import: temporary files are created 0600, the result must get normal rights.
_FILE_MODE = 0o666 & ~_read_umask()

#: Temporary files older than this process cannot belong to this run (see ``remove_stale_temps``).
_PROCESS_START = time.time()

#: Room a temporary name needs beyond the target's name: two dots, the PID, '-', 8 random
#: characters and '.tmp' / '.bak'.
_TEMP_OVERHEAD = 2 + 10 + 1 + 8 + 4

#: What hard links are refused with on file systems without them (FAT, some network shares).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.EACCES}

#: What the tail of one of our temporary names looks like after ``.NAME.`` (earlier versions of
#: a2x wrote no PID; their leftovers are cleaned as well).
_TEMP_TAIL = re.compile(r"(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _temp_stem(path: Path) -> str:
    """``.NAME.`` for ``path``'s temporary files, NAME shortened so that the whole temporary
    name stays within the file system's limit even when ``path``'s own name nearly fills it."""
    name = path.name
    room = _name_max(_folder_of(path)) - _TEMP_OVERHEAD
    while name and len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}."


def _new_temp(path: Path) -> Path:
    """A new empty file ``.NAME.PID-XXXXXXXX.tmp`` beside ``path`` (mode 0600 until published)."""
    handle, name = tempfile.mkstemp(prefix=f"{_temp_stem(path)}{os.getpid()}-", suffix=".tmp",
                                    dir=_folder_of(path))  # fmt: skip
    os.close(handle)
    return Path(name)


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _lexists(path: Path, action: str = "written") -> bool:
    """Whether anything (a dangling symlink too) holds the name; over-long names raise."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise OutputError("a part of the path is a file, not a folder", path=path,
                          hint="choose another output path") from None  # fmt: skip
    except OSError as error:
        raise output_error(path, error, action) from None
    return True


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to another user
        return True
    return True


def remove_stale_temps(path: Path, *, recent: bool = False) -> list[Path]:
    """Remove the temporary files that a killed a2x process left for ``path``.

    Only names of our own pattern (``.NAME.PID-XXXXXXXX.tmp`` beside ``path``) are touched, and
    only those last modified before this process started whose writer is no longer running, so
    that a run in progress (its file grows, its PID lives) keeps its file. ``recent`` drops the
    age rule, for a caller that knows no other process may write ``path`` now (``a2x batch``'s
    retry of a clip whose worker was killed, in a worker that started earlier). Returns the
    removed paths. Backups of replaced outputs (``.bak``) are never removed: they may be an
    artist's file.
    """
    folder = _folder_of(path)
    stem = _temp_stem(path)
    removed: list[Path] = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(stem)]
    except OSError:
        return removed
    for name in names:
        match = _TEMP_TAIL.fullmatch(name[len(stem):])
        if match is None:
            continue
        candidate = folder / name
        try:
            info = os.lstat(candidate)
        except OSError:
            continue
        pid = match.group("pid")
        if (info.st_mtime >= _PROCESS_START and not recent) or (pid is not None and _pid_alive(int(pid))):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def output_error(path: Path, error: OSError, action: str = "written") -> OutputError:
    """An :class:`OutputError` for an ``OSError`` met while writing ``path``, with the fix."""
    hints = {
        errno.ENOSPC: "free some disk space or write elsewhere",
        errno.EDQUOT: "free some disk space or write elsewhere",
        errno.EFBIG: "the file is larger than this file system or process allows; write elsewhere",
        errno.EROFS: "the file system is read-only; write elsewhere",
        errno.ENAMETOOLONG: "use a shorter name",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another output path",
        errno.ENOENT: "this folder does not take new files; write elsewhere",
        errno.EACCES: "check the folder's permissions",
        errno.EPERM: "check the folder's permissions",
    }
    reason = error.strerror or str(error)
    return OutputError(f"cannot be {action} ({reason})", path=path,
                       hint=hints.get(error.errno or 0, "check the folder"))  # fmt: skip


@dataclass
class _Staged:
    """One output of an :class:`OutputSet`: its finished temporary file and, once published
    over an existing file, the hidden backup of that file."""

    target: Path
    temp: Path
    backup: Path | None = None
    published: bool = False


class OutputSet:
    """Write several outputs all or nothing.

    :meth:`stage` writes each output to a hidden temporary file beside its target; :meth:`commit`
    publishes them all. Without ``overwrite`` a target is published with a hard link, which fails
    if any file (a dangling symlink too) took the name meanwhile: two runs writing the same new
    file cannot silently replace one another. With ``overwrite`` an existing target is kept as a
    hidden backup until every output is in place, so a failure restores it. Leaving the ``with``
    block by an exception (a SIGTERM or Ctrl-C included) removes every temporary file and undoes
    what was published.
    """

    def __init__(self, *, overwrite: bool, sweep: bool = True) -> None:
        self.overwrite = overwrite
        self.sweep = sweep  # False: the caller removed stale temporaries (a2x batch, per task)
        self._staged: list[_Staged] = []

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is not None:
            self.rollback()

    def stage(self, path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
        """Run ``write(temp)`` on a fresh temporary file beside ``path``; an ``OSError`` becomes
        an :class:`OutputError` naming ``path`` (the temporary file is removed)."""
        target = Path(path)
        folder = _folder_of(target)
        if not os.path.isdir(folder):
            raise OutputError("the output folder does not exist", path=folder, hint="create it first")
        if self.sweep:
            remove_stale_temps(target)
        try:
            temp = _new_temp(target)
        except OSError as error:
            raise output_error(target, error) from None
        staged = _Staged(target, temp)
        self._staged.append(staged)  # from here on, rollback removes it
        try:
            write(staged.temp)
            os.chmod(staged.temp, _FILE_MODE)
        except OSError as error:
            self._discard(staged)
            raise output_error(target, error) from None
        except BaseException:
            self._discard(staged)
            raise

    def commit(self) -> list[Path]:
        """Publish every staged output; on any failure undo the ones already published."""
        try:
            for staged in self._staged:
                self._publish(staged)
        except BaseException:
            self.rollback()
            raise
        for staged in self._staged:
            if staged.backup is not None:
                with contextlib.suppress(OSError):
                    staged.backup.unlink()
        published = [staged.target for staged in self._staged]
        self._staged = []
        return published

    def rollback(self) -> None:
        """Remove every temporary file, restore replaced files, remove newly published ones."""
        for staged in reversed(self._staged):
            self._undo(staged)
        self._staged = []

    def _discard(self, staged: _Staged) -> None:
        staged.temp.unlink(missing_ok=True)
        self._staged.remove(staged)

    def _publish(self, staged: _Staged) -> None:
        target = staged.target
        try:
            if self.overwrite:
                self._replace(staged)
            else:
                self._publish_new(staged)
        except OutputError:
            raise
        except OSError as error:
            raise output_error(target, error) from None
        staged.published = True

    def _publish_new(self, staged: _Staged) -> None:
        """Give the temporary file the target's name unless something holds it already."""
        try:
            try:
                os.link(staged.temp, staged.target)  # fails if anything holds the name
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                # No hard links here: reserve the name exclusively, then move the file over it.
                os.close(os.open(staged.target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE))
                os.replace(staged.temp, staged.target)
                return
        except FileExistsError:
            raise OutputError("already exists (another run wrote it meanwhile)", path=staged.target,
                              hint="pass --overwrite to replace it") from None  # fmt: skip
        staged.temp.unlink(missing_ok=True)

    def _replace(self, staged: _Staged) -> None:
        """Move the temporary file over the target, keeping the old one as a hidden backup (a
        symlink is backed up and replaced as a link: its target file is never written)."""
        target = staged.target
        if _lexists(target):
            if target.is_dir() and not target.is_symlink():
                raise OutputError("is a folder", path=target, hint="name a file")
            backup = _folder_of(target) / f"{_temp_stem(target)}{os.getpid()}-{secrets.token_hex(4)}.bak"
            staged.backup = backup
            try:
                os.link(target, backup, follow_symlinks=False)
            except NotImplementedError:  # no linkat (Windows)
                os.rename(target, backup)
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                os.rename(target, backup)
        os.replace(staged.temp, target)

    def _undo(self, staged: _Staged) -> None:
        """Put back what was under ``staged.target`` before this run; decided from the files
        themselves, so that an interruption between two steps of :meth:`_publish` is undone too."""
        target, temp, backup = staged.target, staged.temp, staged.backup
        if backup is not None and os.path.lexists(backup):
            with contextlib.suppress(OSError):
                if _same_file(backup, target):
                    backup.unlink()  # the original never left its name
                else:
                    os.replace(backup, target)  # the original is back under its name
        elif staged.published or _same_file(temp, target):
            with contextlib.suppress(OSError):
                target.unlink()  # ours: nothing held the name before this run
        with contextlib.suppress(OSError):
            temp.unlink()


def _same_file(first: Path, second: Path) -> bool:
    try:
        a, b = os.lstat(first), os.lstat(second)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="")


def _finite_list(array: np.ndarray, keep_array: bool = False) -> Any:
    """Nested float lists, rounded to 6 decimals (JSON has no NaN; ~1e-6 is below any rig's step);
    ``keep_array``: the rounded float64 array itself, for :func:`dumps_indent1`."""
    rounded = np.round(np.asarray(array, dtype=np.float64), 6)
    return rounded if keep_array else rounded.tolist()


def a2x_block(result: AnimationResult, *, arrays: bool = False) -> dict[str, Any]:
    """Provenance and the non-skin outputs, for the ``a2x`` object of a JSON export
    (``arrays``: rounded NumPy arrays in place of the nested lists)."""
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
        block["tongueWeightMat"] = _finite_list(result.tongue_weights, arrays)
    if result.jaw_transforms is not None:
        block["jawTransforms"] = _finite_list(result.jaw_transforms, arrays)
    if result.eye_rotations is not None:
        block["eyeRotations"] = _finite_list(result.eye_rotations, arrays)
    if result.head_rotations is not None:
        block["headRotations"] = _finite_list(result.head_rotations, arrays)
    if result.emotions is not None:
        block["emotionNames"] = list(result.emotion_names)
        block["emotions"] = _finite_list(result.emotions, arrays)
    if result.detected_emotions is not None:
        block["emotionNames"] = list(result.emotion_names)
        block["detectedEmotions"] = _finite_list(result.detected_emotions, arrays)
    return block


def to_a2f_json(result: AnimationResult, *, arrays: bool = False) -> dict[str, Any]:
    """The Audio2Face export layout (what FaceIt and A2F importers read) plus the ``a2x`` block
    (``arrays``: rounded NumPy arrays in place of the nested lists, for :func:`dumps_indent1`)."""
    return {
        "exportFps": float(result.fps),
        "trackPath": result.audio_path,
        "numPoses": len(result.names),
        "numFrames": result.num_frames,
        "facsNames": list(result.names),
        "weightMat": _finite_list(result.weights, arrays),
        "a2x": a2x_block(result, arrays=arrays),
    }


def write_json(result: AnimationResult, path: Path) -> None:
    """Write the JSON into ``path`` as it is (:func:`write_result` writes atomically)."""
    _write_text(path, dumps_indent1(to_a2f_json(result, arrays=True)) + "\n")


class _NotFast(Exception):
    """A value :func:`dumps_indent1` leaves to :func:`json.dumps` (e.g. a non-text key)."""


def dumps_indent1(document: Any) -> str:
    """``json.dumps(document, indent=1, allow_nan=False)``, byte for byte, ~10x faster.

    Why: with ``indent`` the standard library runs its pure-Python encoder, one call per
    number; a clip's weight matrix is thousands of numbers (8 ms a clip, the larger part of
    a GPU batch's host time). A NumPy array's numbers are printed by ``json``'s C encoder
    (compact) and laid out by string replacement (float text holds no bracket or comma); lists
    of plain finite floats are joined from ``float.__repr__`` (what ``json`` prints for a
    float); everything else is encoded as ``json`` does it.
    """
    parts: list[str] = []
    try:
        _encode_indent1(document, 0, parts.append)
    except _NotFast:
        return json.dumps(document, indent=1, allow_nan=False)
    return "".join(parts)


def _array_indent1(array: np.ndarray, depth: int) -> str:
    """A non-empty float array as ``json.dumps(array.tolist(), indent=1)`` nests it at ``depth``."""
    rank = array.ndim
    compact = json.dumps(array.tolist(), allow_nan=False)  # "[[a, b], [c, d]]", C speed
    body = compact[rank:-rank]

    def pad(level: int) -> str:
        return "\n" + " " * (depth + level)

    for closed in range(rank - 1, 0, -1):  # "]], [[" between items of the outer levels first
        boundary = "".join(pad(level) + "]" for level in range(rank - 1, rank - 1 - closed, -1))
        boundary += "," + "".join(pad(level) + "[" for level in range(rank - closed, rank))
        body = body.replace("]" * closed + ", " + "[" * closed, boundary + pad(rank))
    body = body.replace(", ", "," + pad(rank))
    opening = "[" + "".join(pad(level) + "[" for level in range(1, rank)) + pad(rank)
    closing = "".join(pad(level) + "]" for level in range(rank - 1, -1, -1))
    return opening + body + closing


def _encode_indent1(value: Any, depth: int, out: Callable[[str], None]) -> None:
    kind = type(value)
    if kind is np.ndarray:
        if value.dtype == np.float64 and value.size and value.ndim:
            out(_array_indent1(value, depth))
        else:
            _encode_indent1(value.tolist(), depth, out)
        return
    if kind is list or kind is tuple:
        if not value:
            out("[]")
            return
        inner = "\n" + " " * (depth + 1)
        first = type(value[0])
        scalar = _SCALAR_TEXT.get(first)
        if scalar is not None and all(type(v) is first for v in value):
            total = sum(value) if first is float else 0.0
            if total - total == 0.0:  # all finite (a NaN or inf makes this NaN): json's repr
                out("[" + inner + ("," + inner).join(map(scalar, value))
                    + "\n" + " " * depth + "]")  # fmt: skip
                return
        out("[")
        for index, item in enumerate(value):
            out(inner if index == 0 else "," + inner)
            _encode_indent1(item, depth + 1, out)
        out("\n" + " " * depth + "]")
    elif kind is dict:
        if not value:
            out("{}")
            return
        inner = "\n" + " " * (depth + 1)
        for index, (key, item) in enumerate(value.items()):
            if type(key) is not str:
                raise _NotFast
            out(("{" if index == 0 else ",") + inner + _json_text(key) + ": ")
            _encode_indent1(item, depth + 1, out)
        out("\n" + " " * depth + "}")
    elif isinstance(value, list | tuple | dict):
        raise _NotFast  # a subclass: json's own rules
    elif kind is float and value - value != 0.0:
        raise _NotFast  # NaN or infinite: json's error
    else:
        out(_SCALAR_TEXT.get(kind, _json_scalar)(value))


def _json_scalar(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


#: How ``json`` prints these exact types (finite floats only; bool and None are literals).
_json_text = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_SCALAR_TEXT: dict[type, Callable[[Any], str]] = {
    str: _json_text, float: float.__repr__, int: int.__repr__,
    bool: lambda v: "true" if v else "false", type(None): lambda v: "null",
}  # fmt: skip


def live_link_timecode(frame: int, fps_nominal: int) -> str:
    """``HH:MM:SS:FF.fff`` for a frame counted at the nominal (integer) rate, as Live Link Face
    writes it (non-drop; sub-frame always .000 for frames on the grid)."""
    seconds, ff = divmod(frame, fps_nominal)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{ff:02d}.000"


def live_link_rows(result: AnimationResult) -> tuple[list[str], np.ndarray]:
    """Header and ``[frames, 61]`` values in Live Link Face column order.

    Head yaw/pitch/roll come from ``head_rotations`` (radians, as Live Link Face writes them)
    and eye yaw/pitch from ``eye_rotations`` (degrees, converted to radians) when present;
    else 0.
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
    if result.head_rotations is not None:
        head = np.asarray(result.head_rotations, dtype=np.float64)
        values[:, 52], values[:, 53], values[:, 54] = head[:, 1], head[:, 0], head[:, 2]
    return header, values


def write_csv(result: AnimationResult, path: Path) -> None:
    """Write the Live Link Face CSV into ``path`` as it is (:func:`write_result`: atomically)."""
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
    """Write every array into ``path`` as it is (:func:`write_result` writes atomically)."""
    arrays = result.to_arrays()
    arrays["a2x_json"] = np.array(json.dumps(a2x_block(result) | {"trackPath": result.audio_path}))
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def _usd_writer(suffix: str) -> Callable[[AnimationResult, Path], None]:
    """A writer for one USD extension (imported on use: usd-core is an extra)."""

    def write(result: AnimationResult, path: Path, geometry: Any = None) -> None:
        from .usd import write_usd

        write_usd(result, path, suffix=suffix, geometry=geometry)

    return write


def _gltf_writer(binary: bool) -> Callable[[AnimationResult, Path], None]:
    def write(result: AnimationResult, path: Path, geometry: Any = None) -> None:
        from .gltf import write_gltf

        write_gltf(result, path, binary=binary, geometry=geometry)

    return write


#: Formats that can carry an Audio2Face model's own head (:mod:`a2x_core.models.a2f_geometry`).
GEOMETRY_FORMATS = (".usda", ".usdc", ".usd", ".gltf", ".glb")


WRITERS: dict[str, Callable[[AnimationResult, Path], None]] = {
    ".json": write_json,
    ".csv": write_csv,
    ".npz": write_npz,
    ".usda": _usd_writer(".usda"),
    ".usdc": _usd_writer(".usdc"),
    ".usd": _usd_writer(".usd"),
    ".gltf": _gltf_writer(binary=False),
    ".glb": _gltf_writer(binary=True),
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
    check_new_file(path, overwrite=overwrite)
    return suffix


def check_new_file(path: Path, *, overwrite: bool) -> None:
    """Refuse, before any work runs, a file path this run could not or must not write.

    A dangling symlink is an existing output (replacing it needs ``overwrite``, and then the link
    is replaced, not the file it names); an over-long name or a file where a folder is expected
    is refused here rather than after the work.
    """
    if _lexists(path):
        if not overwrite:
            raise OutputError("already exists", path=path, hint="pass --overwrite to replace it")
        if path.is_dir():
            raise OutputError("is a folder", path=path, hint="name a file")
    folder = _folder_of(path)
    if not folder.is_dir():
        if _lexists(folder):
            raise OutputError("is a file, not a folder", path=folder, hint="choose another output path")
        raise OutputError("the output folder does not exist", path=folder, hint="create it first")
    _probe_folder(path)


def _probe_folder(path: Path) -> None:
    """Create and remove a temporary file beside ``path``: a read-only file system, or a folder
    such as /proc that takes no new files, is refused before the work rather than after it."""
    try:
        temp = _new_temp(path)
    except OSError as error:
        raise output_error(path, error) from None
    with contextlib.suppress(OSError):
        temp.unlink()


def make_output_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created (for
    :func:`remove_empty_folders` when the run fails), an :class:`OutputError` when it cannot be."""
    missing: list[Path] = []
    current = folder
    while not _lexists(current, "created"):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    if not current.is_dir():
        raise OutputError("is a file, not a folder", path=current, hint="choose another output folder")
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue  # another run made it meanwhile
        except OSError as error:
            remove_empty_folders(created)
            raise output_error(path, error, "created") from None
        created.append(path)
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders a failed run created, deepest first, if they are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def stage_result(outputs: OutputSet, result: AnimationResult, path: str | os.PathLike[str],
                 geometry: Any = None) -> None:  # fmt: skip
    """Write ``result`` to a temporary file of ``outputs``, in the format ``path``'s extension
    names; it appears under ``path`` when ``outputs`` is committed. ``geometry``: the
    Audio2Face model's head (:func:`a2x_core.models.a2f_geometry.geometry_of`) for USD and glTF."""
    target = Path(path)
    bad = result.non_finite_arrays()
    if bad:
        raise OutputError(f"not written: the result's {', '.join(bad)} hold NaN or infinite "
                          "values", path=target, hint="report the model and audio that gave them")  # fmt: skip
    write = WRITERS[_format_of(target)]
    if geometry is not None and _format_of(target) in GEOMETRY_FORMATS:
        outputs.stage(target, lambda temp: write(result, temp, geometry))  # type: ignore[call-arg]
        return
    outputs.stage(target, lambda temp: write(result, temp))


def write_result(result: AnimationResult, path: str | os.PathLike[str], *, overwrite: bool = True,
                 geometry: Any = None) -> Path:  # fmt: skip
    """Write ``result`` in the format its extension names, atomically: the file appears complete
    or not at all. ``overwrite=False`` refuses (:class:`OutputError`) to replace any existing
    file, even one another process creates while this one writes."""
    target = Path(path)
    with OutputSet(overwrite=overwrite) as outputs:
        stage_result(outputs, result, target, geometry)
        outputs.commit()
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
    from ..names import match_name

    out = np.zeros((weights.shape[0], len(ARKIT_52)), dtype=np.float32)
    for column, name in enumerate(names):
        canon = match_name(name)
        if canon is not None:
            out[:, ARKIT_52.index(canon)] = weights[:, column]
    return out


#: Arrays of an NPZ export that :func:`read_result` puts back into the result's fields; the
#: rest (phones, loudness, geometry...) go back into ``arrays``.
_NPZ_FIELDS = {"weights", "names", "times_s", "fps", "a2x_json", "tongue_weights", "tongue_names",
               "jaw_transforms", "eye_rotations", "emotions", "emotion_names", "detected_emotions"}


def read_result(path: str | os.PathLike[str]) -> AnimationResult:
    """An :class:`AnimationResult` back from one of a2x's ``.json`` or ``.npz`` exports (or an
    Audio2Face blendshape JSON): what ``a2x preview`` and the USD/glTF writers need to work
    on a take animated earlier. Only NPZ keeps the phones and words."""
    from fractions import Fraction

    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".json":
        names, weights, fps = read_a2f_json(file)
        data = json.loads(file.read_text(encoding="utf-8"))
        block = data.get("a2x") or {}
        block["trackPath"] = data.get("trackPath", "")
        arrays: dict[str, np.ndarray] = {}
    elif suffix == ".npz":
        try:
            with np.load(file, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            weights = np.asarray(arrays["weights"], dtype=np.float32)
            names = [str(n) for n in arrays["names"]]
            fps = float(Fraction(int(arrays["fps"][0]), int(arrays["fps"][1])))
            block = json.loads(str(arrays.get("a2x_json", "{}")))
        except (OSError, ValueError, KeyError, IndexError) as error:
            raise OutputError(f"is not an a2x NPZ export ({error})", path=file,
                              hint="export it again with a2x animate -o take.npz") from None  # fmt: skip
    else:
        raise OutputError(f"cannot read a result from {suffix or '(no extension)'} files",
                          path=file, hint="give an a2x .json or .npz export")  # fmt: skip
    rate = Fraction(str(block["fps"])) if "fps" in block else Fraction(fps).limit_denominator(1001)
    frames = weights.shape[0]
    tongue_names = tuple(block.get("tongueNames", arrays.get("tongue_names", ())))
    tongue = block.get("tongueWeightMat", arrays.get("tongue_weights"))

    def optional(key: str, name: str) -> np.ndarray | None:
        value = block.get(key, arrays.get(name))
        return None if value is None else np.asarray(value, dtype=np.float32)

    return AnimationResult(
        weights=arkit_weights_from(names, weights),
        fps=rate,
        audio_path=str(block.get("trackPath", "")),
        start_s=float(block.get("startSeconds", 0.0)),
        duration_s=float(block.get("durationSeconds", frames / float(rate))),
        model=str(block.get("model", "unknown")),
        model_version=str(block.get("modelVersion", "")),
        tongue_weights=None if tongue is None else np.asarray(tongue, dtype=np.float32),
        tongue_names=tuple(str(n) for n in tongue_names),
        jaw_transforms=optional("jawTransforms", "jaw_transforms"),
        eye_rotations=optional("eyeRotations", "eye_rotations"),
        arrays={k: v for k, v in arrays.items() if k not in _NPZ_FIELDS},
        warnings=list(block.get("warnings", [])),
    )
