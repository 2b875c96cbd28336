"""The core never imports Blender or Maya (style guide §3)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

CHECK = """
import sys, importlib, pkgutil
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('bpy', 'maya', 'pymel', 'PySide2', 'PySide6'):
            raise ImportError('core imported ' + name)
sys.meta_path.insert(0, Blocker())
import a2x_core
for module in pkgutil.walk_packages(a2x_core.__path__, 'a2x_core.'):
    if module.name.endswith(('__main__', '.worker')):
        continue
    importlib.import_module(module.name)
print('ok')
"""


def test_core_imports_without_dcc_modules() -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
