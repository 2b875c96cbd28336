"""A stand-in for Blender's binary: Blender's command-line protocol over the ``bpy`` module.

Why: ``a2x batch --blender-exe`` runs ``blender -b --factory-startup --python-exit-code 1
--python SCRIPT -- REQUEST``. Blender's binary cannot be downloaded on the test machines, and
Debian's ``blender`` package (3.4) is older than the add-on's minimum (4.2, its
``blender_manifest.toml``). This script, run by a Python that has ``bpy`` (Blender 5.0 as a
module) through a one-line shell launcher named ``blender``, handles the arguments the way
Blender does, in order:

- ``-b``/``--background`` (required: there is no UI here), ``--factory-startup`` (the module
  starts from factory settings anyway), ``FILE.blend`` (opened);
- ``--python-exit-code N``: exit with N when a later ``--python`` script raises;
- ``-P``/``--python SCRIPT``: run SCRIPT as ``__main__`` with ``sys.argv`` the whole command
  line (Blender's own ``sys.argv``, so the script reads its arguments after ``--``);
- ``--`` ends Blender's arguments; any other argument is an error (exit 1), as a misspelled
  flag would be for a pipeline;
- a script's ``sys.exit(N)`` ends the process with N.

Usage: ``PYTHON_WITH_BPY blender_cli.py ARGS...`` (what the launcher ``exec``s).
"""

from __future__ import annotations

import runpy
import sys
import traceback


def main(argv: list[str]) -> int:
    args = argv[1:]
    if "-b" not in args and "--background" not in args:
        print("blender_cli: only background mode (-b) is supported here", file=sys.stderr)
        return 1
    error_code = 0
    index = 0
    while index < len(args) and args[index] != "--":
        arg = args[index]
        if arg in ("-b", "--background", "--factory-startup"):
            pass
        elif arg == "--python-exit-code" and index + 1 < len(args):
            index += 1
            error_code = int(args[index])
        elif arg in ("-P", "--python") and index + 1 < len(args):
            index += 1
            sys.argv = ["blender", *args]
            try:
                runpy.run_path(args[index], run_name="__main__")
            except SystemExit:
                raise
            except BaseException:  # noqa: BLE001 - Blender prints the traceback and goes on
                traceback.print_exc()
                if error_code:
                    return error_code
        elif arg.endswith(".blend") and not arg.startswith("-"):
            import bpy

            bpy.ops.wm.open_mainfile(filepath=arg)
        else:
            print(f"Error: unknown argument {arg!r}", file=sys.stderr)
            return 1
        index += 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
