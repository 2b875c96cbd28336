"""The clip list of a batch: a CSV or JSON-lines manifest, or a folder of audio files.

Columns (CSV header / JSON keys); only ``audio`` is required:

========== ==================================================================================
audio      the audio file (relative paths are read from the manifest's folder)
output     the output name (no extension; default: the audio file's stem)
model      ``default`` or an Audio2Face-3D model.json / folder (default: ``--model``)
transcript the exact words spoken (default model)
language   the spoken language, ISO 639-1 or ``auto`` (default model; default: ``--language``)
identity   a diffusion model's identity
emotions   ``joy=0.7,anger=0.2`` (JSON: also an object ``{"joy": 0.7}``)
fps        frame rate, N or N/D (default: ``--fps``)
rig        the Blender object to bake onto (default: ``--object``)
emotion_model  an Audio2Emotion model.json / folder (default: ``--emotion-model``)
========== ==================================================================================

Every row is checked before any work runs: an unknown column, a missing audio cell, two rows
with one output name or a malformed value is a :class:`ParameterError` naming the row. An audio
file that is missing or cannot be decoded is not: that clip fails in the report, the others run.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from ..options import EmotionKey

COLUMNS = ("audio", "output", "model", "transcript", "language", "identity", "emotions", "fps",
           "rig", "emotion_model")
#: Files a folder manifest picks up (headerless .raw/.pcm need a rate and are left out).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif", ".m4a")
#: Output names become file names in OUTDIR: no folders, nothing hidden.
_BAD_NAME = re.compile(r"[/\\\x00]|^\.|^$")


@dataclass(frozen=True)
class Clip:
    """One row: what to animate and how it differs from the batch's common options."""

    row: str  # "manifest.csv:12", for messages
    audio: Path
    name: str
    model: str | None = None
    transcript: str | None = None
    language: str | None = None
    identity: str | None = None
    emotions: tuple[EmotionKey, ...] | None = None
    fps: str | None = None
    rig: str | None = None
    emotion_model: str | None = None


def read_clips(source: str | Path) -> list[Clip]:
    """The clips of a manifest (``.csv``, ``.jsonl``/``.ndjson``/``.json``) or a folder."""
    path = Path(source)
    if path.is_dir():
        return _folder_clips(path)
    if not path.exists():
        raise ParameterError("no such manifest or folder", path=path,
                             hint="pass a .csv or .jsonl manifest, or a folder of audio files")  # fmt: skip
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ParameterError(f"cannot read the manifest ({error})", path=path,
                             hint="save it as UTF-8 text") from None  # fmt: skip
    if suffix == ".csv":
        rows = _csv_rows(text, path)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        rows = _json_rows(text, path)
    else:
        raise ParameterError(f"unknown manifest type {suffix or '(none)'}", path=path,
                             hint="use .csv (with a header row) or .jsonl (one object a line)")  # fmt: skip
    clips = [_clip(where, values, path.parent.resolve()) for where, values in rows]
    if not clips:
        raise ParameterError("the manifest lists no clip", path=path, hint="add rows")
    _check_unique(clips)
    return clips


def _folder_clips(folder: Path) -> list[Clip]:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)  # fmt: skip
    if not files:
        raise ParameterError("no audio file in this folder", path=folder,
                             hint=f"it needs {', '.join(AUDIO_SUFFIXES)} files")  # fmt: skip
    clips = [Clip(row=str(p), audio=p, name=p.stem) for p in files]
    _check_unique(clips)
    return clips


def _csv_rows(text: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    _check_columns(header, f"{path}:1")
    rows = []
    for number, row in enumerate(reader, start=2):
        if None in row:
            raise ParameterError(f"{path.name}:{number}: more cells than header columns",
                                 hint="quote cells that hold commas")  # fmt: skip
        values = {k.strip(): v for k, v in row.items() if v is not None and v.strip() != ""}
        if values:
            rows.append((f"{path.name}:{number}", values))
    return rows


def _json_rows(text: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            values = json.loads(line)
        except ValueError as error:
            raise ParameterError(f"{where}: not a JSON object ({error})",
                                 hint="one JSON object a line, e.g. {\"audio\": \"a.wav\"}") from None  # fmt: skip
        if not isinstance(values, dict):
            raise ParameterError(f"{where}: not a JSON object", hint='e.g. {"audio": "a.wav"}')
        _check_columns(list(values), where)
        rows.append((where, {k: v for k, v in values.items() if v not in (None, "")}))
    return rows


def _check_columns(names: list[str], where: str) -> None:
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ParameterError(f"{where}: unknown column(s) {', '.join(map(str, unknown))}",
                             hint=f"the columns are {', '.join(COLUMNS)}")  # fmt: skip
    if "audio" not in names:
        raise ParameterError(f"{where}: no 'audio' column", hint="name each clip's audio file")


def _text(values: dict[str, Any], key: str, where: str) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ParameterError(f"{where}: '{key}' must be text, found {value!r}")
    return str(value).strip()


def _clip(where: str, values: dict[str, Any], base: Path) -> Clip:
    from ..models.emotion_input import parse_emotion_args
    from ..timing import parse_fps

    audio_text = _text(values, "audio", where)
    if not audio_text:
        raise ParameterError(f"{where}: the 'audio' cell is empty", hint="name the audio file")
    audio = Path(audio_text).expanduser()
    if not audio.is_absolute():
        audio = base / audio
    name = _text(values, "output", where) or audio.stem
    if _BAD_NAME.search(name):
        raise ParameterError(f"{where}: output name {name!r} is not a plain file name",
                             hint="no folders, no leading dot")  # fmt: skip
    raw = values.get("emotions")
    emotions = None
    if isinstance(raw, dict):
        raw = ",".join(f"{k}={v}" for k, v in raw.items())
    if raw is not None:
        try:
            emotions = parse_emotion_args([str(raw)])
        except ParameterError as error:
            raise ParameterError(f"{where}: emotions: {error}") from None
    language = _text(values, "language", where)
    if language is not None:
        from ..lipsync.language import check_language

        try:
            language = check_language(language)
        except ParameterError as error:
            raise ParameterError(f"{where}: language: {error}") from None
    fps = _text(values, "fps", where)
    if fps is not None:
        try:
            parse_fps(fps)
        except ParameterError as error:
            raise ParameterError(f"{where}: fps: {error}") from None
    model = _text(values, "model", where)
    if model and model != "default" and not Path(model).expanduser().is_absolute():
        model = str(base / Path(model).expanduser())  # relative to the manifest, as audio is
    emotion_model = _text(values, "emotion_model", where)
    if emotion_model:
        emotion_model = str(base / Path(emotion_model).expanduser())  # an absolute one stays
    return Clip(row=where, audio=audio, name=name, model=model or None,
                transcript=_text(values, "transcript", where), language=language,
                identity=_text(values, "identity", where), emotions=emotions, fps=fps,
                rig=_text(values, "rig", where), emotion_model=emotion_model or None)  # fmt: skip


def _check_unique(clips: list[Clip]) -> None:
    seen: dict[str, str] = {}
    for clip in clips:
        key = clip.name.casefold()  # one file on case-insensitive file systems
        if key == "report":
            raise ParameterError(f"{clip.row}: the output name 'report' is the batch report's",
                                 hint="give the clip another 'output' name")  # fmt: skip
        if key in seen:
            raise ParameterError(f"{seen[key]} and {clip.row} both write {clip.name!r}",
                                 hint="give one of them another 'output' name")  # fmt: skip
        seen[key] = clip.row
