"""Write or check ``plugins/maya/a2x.mod`` from the single version source.

Usage::

    python plugins/maya/scripts/a2x_maya/modfile.py --check   # exit 1 if out of date
    python plugins/maya/scripts/a2x_maya/modfile.py --write
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODULE_ROOT = Path(__file__).resolve().parents[2]
MOD_PATH = MODULE_ROOT / "a2x.mod"


def render_mod(version: str) -> str:
    """The module description: any Maya version and platform, paths relative to the file."""
    return (
        f"+ a2x {version} .\n"
        "MAYA_PLUG_IN_PATH +:= plug-ins\n"
        "PYTHONPATH +:= scripts\n"
    )


def current_version() -> str:
    """``a2x_core.version.__version__`` (read from the repository or the installed core)."""
    version_file = MODULE_ROOT.parents[1] / "a2x_core" / "version.py"
    if version_file.is_file():
        scope: dict[str, str] = {}
        exec(compile(version_file.read_text(encoding="utf-8"), str(version_file), "exec"), scope)
        return scope["__version__"]
    from a2x_core.version import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """``--write`` regenerates the file; ``--check`` exits 1 when it differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite a2x.mod")
    parser.add_argument("--check", action="store_true", help="fail if a2x.mod is out of date")
    args = parser.parse_args(argv)
    expected = render_mod(current_version())
    if args.write:
        MOD_PATH.write_text(expected, encoding="utf-8")
        return 0
    found = MOD_PATH.read_text(encoding="utf-8") if MOD_PATH.exists() else ""
    if found != expected:
        sys.stderr.write(f"{MOD_PATH} is out of date; run {Path(__file__).name} --write\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
