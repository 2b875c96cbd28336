"""The plug-in's pure modules import without Maya; the entry file stays small and honest."""

from __future__ import annotations

import ast
import subprocess
import sys
import types

from .conftest import SCRIPTS

ENTRY = SCRIPTS.parent / "plug-ins" / "a2x_maya_plugin.py"

CHECK = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('maya', 'pymel'):
            raise ImportError('imported ' + name)
sys.meta_path.insert(0, Blocker())
sys.path.insert(0, {str(SCRIPTS)!r})
for name in ('attributes', 'parameters', 'timeunits', 'track', 'engine', 'connect', 'bake',
             'commands', 'node', 'plugin', 'modfile'):
    __import__('a2x_maya.' + name)
print('ok')
"""


def test_pure_modules_import_without_maya() -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_only_the_facade_imports_maya() -> None:
    for path in (SCRIPTS / "a2x_maya").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        uses_maya = any(n.split(".")[0] == "maya" for n in names)
        assert uses_maya == (path.name == "maya_api.py"), path.name


def test_entry_file_is_small_and_names_the_fix(monkeypatch) -> None:  # noqa: ANN001
    source = ENTRY.read_text(encoding="utf-8")
    assert len(source.splitlines()) < 150
    functions = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    assert {"maya_useNewAPI", "initializePlugin", "uninitializePlugin"} <= functions
    # a hand-written stand-in for the one Maya module the entry file imports
    om = types.ModuleType("maya.api.OpenMaya")
    shown: list[str] = []

    class MGlobal:
        kInteractive, kBatch = 0, 1
        displayError = staticmethod(shown.append)  # noqa: N815
        mayaState = staticmethod(lambda: 1)  # noqa: N815

    om.MGlobal, om.MObject = MGlobal, object
    maya, api = types.ModuleType("maya"), types.ModuleType("maya.api")
    maya.api, api.OpenMaya = api, om
    monkeypatch.setitem(sys.modules, "maya", maya)
    monkeypatch.setitem(sys.modules, "maya.api", api)
    monkeypatch.setitem(sys.modules, "maya.api.OpenMaya", om)
    scope: dict = {"__name__": "a2x_maya_plugin"}
    exec(compile(source, str(ENTRY), "exec"), scope)
    assert "mayapy -m pip install <a2x checkout>" in scope["_fix_for"](ImportError("x", name="a2x_core"))
    assert "MAYA_MODULE_PATH" in scope["_fix_for"](ImportError("x", name="a2x_maya"))
    monkeypatch.setitem(sys.modules, "a2x_maya.plugin", None)  # import fails
    try:
        scope["initializePlugin"](object())
    except ImportError:
        pass
    else:
        raise AssertionError("a failed load must re-raise")
    assert shown and "could not load the plug-in" in shown[0]
