"""Resume records: a clip is done when its outputs exist and its recorded inputs still match.

Each finished clip leaves ``OUTDIR/.a2x-batch/<name>.json`` beside its outputs, written after
them (both atomically): the SHA-256 of its audio, the model (spec and the SHA-256 of its
model.json), the options it ran with, the output formats and the Blender scene. A later run
skips a clip whose record matches and whose outputs are all there; anything else is redone.
A killed run can leave outputs without a record (never the reverse): those clips are redone.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import OutputError

LEDGER_FOLDER = ".a2x-batch"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (``OSError`` for a missing or unreadable one)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(inputs: dict[str, Any]) -> str:
    """One digest of everything that shapes a clip's outputs (canonical JSON)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_path(outdir: Path, name: str) -> Path:
    return outdir / LEDGER_FOLDER / f"{name}.json"


def read_record(outdir: Path, name: str) -> dict[str, Any] | None:
    """The clip's record, or None (none yet, or unreadable: the clip is then redone)."""
    try:
        data = json.loads(record_path(outdir, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_done(outdir: Path, name: str, digest: str, outputs: list[Path]) -> bool:
    """Whether a previous run finished this clip with the same inputs."""
    record = read_record(outdir, name)
    return (record is not None and record.get("fingerprint") == digest
            and all(p.exists() for p in outputs))  # fmt: skip


def owns(outdir: Path, name: str) -> bool:
    """Whether an earlier batch wrote this clip's outputs (then replacing them is expected;
    a file of the same name without a record is someone's own and needs ``--overwrite``)."""
    return record_path(outdir, name).exists()


def remove_dead_temps(outdir: Path, name: str = "*") -> None:
    """Remove the temporary records that killed workers left (their PID no longer runs):
    of clip ``name``, or of every clip (one folder listing, once per task)."""
    from ..export.writers import _pid_alive

    pattern = f".{glob.escape(name + '.json') if name != '*' else '*.json'}.*.tmp"
    for stale in (outdir / LEDGER_FOLDER).glob(pattern):
        pid = stale.name[: -len(".tmp")].rsplit(".", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


def write_record(outdir: Path, name: str, record: dict[str, Any], *, sweep: bool = True) -> None:
    """Write the record atomically (temporary file + rename): never half a record.
    ``sweep=False``: the caller already ran :func:`remove_dead_temps` (per task, not per clip)."""
    path = record_path(outdir, name)
    path.parent.mkdir(exist_ok=True)
    if sweep:
        remove_dead_temps(outdir, name)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one writer per clip
    try:
        temp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n",
                        encoding="utf-8")  # fmt: skip
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write the batch record ({error})", path=path,
                          hint="check the output folder's space and rights") from None  # fmt: skip
