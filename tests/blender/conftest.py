"""Real-Blender tests: every scenario runs in its own subprocess of a Python that has ``bpy``.

The PyPI ``bpy`` wheels pin ``numpy<2`` (4.5, 5.0), so they live in their own virtual
environments rather than in the project's ``.venv``. Interpreters are taken from
``A2X_BPY_PYTHONS`` (``os.pathsep``-separated paths), else from ``.venv-bpy*/bin/python`` in
the repository, else this interpreter if it imports ``bpy``; without any, the tests skip.

The extension zip is built once per session with ``build_addon.py`` (the wheel cache is
``A2X_WHEEL_CACHE`` or ``build/wheel-cache``; only the first build downloads) and installed
once per Blender version into a private ``BLENDER_USER_RESOURCES`` folder, which every
scenario then reuses: user preferences and ``~/.config/blender`` are never touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios.py"
RESULT_MARK = "A2X_RESULT "


def _probe(python: str) -> str | None:
    """``bpy.app.version_string`` of ``python``'s bpy, or None when it has none."""
    try:
        proc = subprocess.run(
            [python, "-c", "import bpy; print('BPY', bpy.app.version_string)"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("BPY "):
            return line[4:].strip()
    return None


def _candidates() -> list[str]:
    env = os.environ.get("A2X_BPY_PYTHONS")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    found = sorted(str(p) for p in REPO.glob(".venv-bpy*/bin/python"))
    return found or [sys.executable]


_PYTHONS: dict[str, str] | None = None


def bpy_pythons() -> dict[str, str]:
    """Blender version → interpreter, for every interpreter that imports bpy."""
    global _PYTHONS
    if _PYTHONS is None:
        _PYTHONS = {}
        for python in _candidates():
            version = _probe(python)
            if version:
                _PYTHONS[version.split()[0]] = python
    return _PYTHONS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "blender" in metafunc.fixturenames:
        versions = sorted(bpy_pythons()) or ["none"]
        metafunc.parametrize("blender", versions, indirect=True, scope="session")


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension zip, built by ``build_addon.py`` (network only for the first build)."""
    sys.path.insert(0, str(REPO))
    try:
        import build_addon
    finally:
        sys.path.pop(0)
    cache = Path(os.environ.get("A2X_WHEEL_CACHE", REPO / "build" / "wheel-cache"))
    have_cache = build_addon.cache_is_current(cache, "linux-x64", "3.11")
    out = tmp_path_factory.mktemp("dist")
    return build_addon.build(["linux-x64"], ["3.11"], out, cache, download=not have_cache)


class Blender:
    """One Blender version (a bpy interpreter) with the extension installed in a private home."""

    def __init__(self, version: str, python: str, home: Path) -> None:
        self.version, self.python, self.home = version, python, home

    def _run(self, argv: list[str], cwd: Path, log: Path, timeout: float) -> tuple[int, str]:
        """Run ``argv`` with this Blender's private home; returns (exit code, output)."""
        env = dict(os.environ, BLENDER_USER_RESOURCES=str(self.home), PYTHONNOUSERSITE="1")
        env["PWD"] = str(cwd)  # as a shell sets it: Blender 4.5 reads relative paths against it
        env.pop("PYTHONPATH", None)
        with open(log, "w+", encoding="utf-8") as sink:
            # own session + output to a file: worker processes the scenario leaves behind
            # (the default model's decoder pool) can neither hold a pipe open nor outlive it
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=str(cwd),
                                    env=env, start_new_session=True)  # fmt: skip
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            sink.seek(0)
            out = sink.read()
        if proc.returncode < 0:
            out += f"\n(killed after {timeout} s or by signal {-proc.returncode})"
        return proc.returncode, out

    def run_script(self, script: Path, cwd: Path, timeout: float = 240) -> str:
        """Run a plain script with this Blender's ``bpy`` (a user's fresh process, nothing
        enabled); returns its output, fails the test when it exits non-zero."""
        code, out = self._run([self.python, str(script)], cwd, cwd / f"{script.stem}.log", timeout)
        if code != 0:
            tail = "\n".join(out.strip().splitlines()[-60:])
            pytest.fail(f"Blender {self.version}: {script.name} failed (exit {code}):\n{tail}",
                        pytrace=False)  # fmt: skip
        return out

    def run(self, scenario: str, timeout: float = 240, **args: object) -> dict:
        """Run ``scenarios.py <scenario>`` in a fresh process; returns its result object."""
        argv = [self.python, str(SCENARIOS), scenario, json.dumps(args)]
        code, out = self._run(argv, self.home, self.home / f"{scenario}.log", timeout)
        results = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
        if code != 0 or not results:
            tail = "\n".join(out.strip().splitlines()[-60:])
            pytest.fail(f"Blender {self.version} scenario {scenario!r} failed "
                        f"(exit {code}):\n{tail}", pytrace=False)  # fmt: skip
        result = json.loads(results[-1][len(RESULT_MARK) :])
        if result.get("skip"):
            pytest.skip(result["skip"])
        return result


@pytest.fixture(scope="session")
def blender(request: pytest.FixtureRequest, addon_zip: Path, tmp_path_factory) -> Blender:
    version = request.param
    if version == "none":
        pytest.skip("no Python with the bpy module (pip install bpy==5.0.* into .venv-bpy50)")
    home = tmp_path_factory.mktemp(f"blender-{version}")
    instance = Blender(version, bpy_pythons()[version], home)
    installed = instance.run("install", zip=str(addon_zip))
    assert installed["enabled"], installed
    return instance


#: The fast tier's Blender smoke test (the newest Blender only): install, enable and one bake.
#: Every other real-Blender test is ``slow`` (``make test-all``): each starts Blender.
FAST_SMOKE = ("test_install_and_enable", "test_bake_channels_keys_values_and_sound_strip")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    newest = max(bpy_pythons(), key=_version_key, default="none")
    for item in items:
        if here not in item.path.parents or "blender" not in getattr(item, "fixturenames", ()):
            continue
        version = item.callspec.params.get("blender") if hasattr(item, "callspec") else None
        if not (item.originalname in FAST_SMOKE and version == newest):
            item.add_marker(pytest.mark.slow)
