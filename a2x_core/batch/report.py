"""``OUTDIR/report.csv`` and ``OUTDIR/report.json``: one row per clip, written atomically.

Status: ``done`` (animated in this run), ``skipped`` (done by an earlier run with the same
inputs), ``failed`` (``error`` says why) or ``cancelled`` (not finished when the run stopped).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import OutputError

CSV_COLUMNS = ("clip", "status", "error", "seconds", "model", "engine", "worker", "audio", "outputs")
STATUSES = ("done", "skipped", "failed", "cancelled")


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(row["status"] for row in rows)
    return {status: counts.get(status, 0) for status in STATUSES} | {"clips": len(rows)}


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(text, encoding="utf-8", newline="")
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write the report ({error})", path=path,
                          hint="check the output folder's space and rights") from None  # fmt: skip


def write_report(outdir: Path, rows: list[dict[str, Any]], extra: dict[str, Any]) -> list[Path]:
    """Write both report files; returns their paths."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")  # fmt: skip
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "outputs": ";".join(row.get("outputs", []))})
    paths = [outdir / "report.csv", outdir / "report.json"]
    _write_atomic(paths[0], buffer.getvalue())
    document = {"summary": summary(rows), **extra, "clips": rows}
    _write_atomic(paths[1], json.dumps(document, indent=1, default=str) + "\n")
    return paths
