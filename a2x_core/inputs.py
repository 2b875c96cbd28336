"""Checks of what a user hands a2x before any work reads it: paths, text files, nested JSON.

A bad path or file must fail at once with a typed error naming it, never as an ``OSError``
traceback, a ``RecursionError`` or a read that blocks forever (a FIFO).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import A2XError, ParameterError

#: Most file systems limit one path component to 255 bytes and a whole path to 4096.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
#: Nesting depth of a JSON value a2x accepts from a user; no parameter needs more than 3.
MAX_JSON_DEPTH = 32


def check_path_length(path: str | os.PathLike[str], error: type[A2XError], what: str) -> Path:
    """``path`` as a Path, or ``error`` when a component or the whole path is too long to exist.

    Args:
        error: the A2XError subclass to raise (e.g. ``AudioNotFoundError``).
        what: what the path is for, in the message ("audio file", "model").
    """
    file = Path(path)
    encoded = os.fsencode(file)
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > MAX_NAME_BYTES or len(encoded) > MAX_PATH_BYTES:
        shown = str(file)
        shown = shown if len(shown) <= 80 else f"{shown[:40]}…{shown[-30:]}"
        raise error(
            f"the {what} path is too long ({longest} bytes in one name, {len(encoded)} in all; "
            f"file systems allow {MAX_NAME_BYTES} and {MAX_PATH_BYTES})",
            path=shown,
            hint="shorten the file or folder name",
        )
    return file


def regular_file_status(
    path: str | os.PathLike[str], *, missing: type[A2XError], unusable: type[A2XError], what: str
) -> os.stat_result:
    """``stat`` of an input file that must exist and be a regular file (not a folder, FIFO,
    device or socket, which would block a reader or never end).

    Raises:
        missing: no such file (or a path too long to exist).
        unusable: a folder, a FIFO, a device, a socket, or a path that cannot be inspected.
    """
    file = check_path_length(path, missing, what)
    try:
        status = file.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise missing(f"{what} not found (no such file)", path=file,
                      hint="check the path and spelling") from None  # fmt: skip
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise missing("no such file (a symlink loop)", path=file, hint="fix the link") from None
        raise unusable(
            f"cannot be inspected ({error.strerror})", path=file, hint="check the path"
        ) from None
    if stat.S_ISDIR(status.st_mode):
        raise unusable(f"is a folder; the {what} must be a file", path=file, hint="name a file")
    if not stat.S_ISREG(status.st_mode):
        kind = (
            "a FIFO (named pipe)" if stat.S_ISFIFO(status.st_mode)
            else "a device" if stat.S_ISCHR(status.st_mode) or stat.S_ISBLK(status.st_mode)
            else "a socket" if stat.S_ISSOCK(status.st_mode)
            else "not a regular file"
        )  # fmt: skip
        raise unusable(
            f"is {kind}; the {what} must be a regular file", path=file,
            hint=f"save the {what} to a file and name that",
        )  # fmt: skip
    return status


def read_text_file(path: str | os.PathLike[str], *, what: str, flag: str) -> str:
    """A small UTF-8 text file (a BOM is allowed), or a ParameterError naming ``flag``.

    Other encodings are refused rather than guessed: a wrong guess would silently change
    a transcript's words.
    """
    file = Path(path)
    regular_file_status(file, missing=ParameterError, unusable=ParameterError, what=what)
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise ParameterError(
            f"cannot read the {what} ({error.strerror})", path=file, hint=f"check {flag}"
        ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ParameterError(
            f"the {what} is not UTF-8 text (byte 0x{raw[error.start]:02x} at position "
            f"{error.start})",
            path=file,
            hint="save it as UTF-8 (any text editor's 'Save as' offers it)",
        ) from None


def json_depth(value: Any) -> int:
    """Nesting depth of lists/tuples/mappings in ``value`` (0 for a scalar), without recursion,
    stopping early once it exceeds :data:`MAX_JSON_DEPTH` by one."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = list(item.values())
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def check_json_depth(value: Any, label: str) -> Any:
    """``value``, or a ParameterError when it nests deeper than :data:`MAX_JSON_DEPTH`."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ParameterError(
            f"{label} nests lists/objects more than {MAX_JSON_DEPTH} levels deep",
            hint="pass a number, a list of numbers or a flat object",
        )
    return value


def loads_json(text: str, label: str) -> Any:
    """``json.loads`` whose only failures are ``ValueError`` (bad JSON) and ParameterError
    (nesting too deep, which the standard parser reports as RecursionError)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ParameterError(
            f"{label} nests lists/objects too deeply to read",
            hint="pass a number, a list of numbers or a flat object",
        ) from None
    return check_json_depth(value, label)
