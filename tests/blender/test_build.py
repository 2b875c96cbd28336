"""``build_addon.py``: the zip's manifest, wheels and Blender's own validation of it."""

from __future__ import annotations

import re
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.blender.conftest import REPO, bpy_pythons


def _version() -> str:
    text = (REPO / "a2x_core" / "version.py").read_text(encoding="utf-8")
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def _manifest(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as archive:
        return tomllib.loads(archive.read("blender_manifest.toml").decode("utf-8"))


def test_source_manifest_version_matches_the_one_version_source() -> None:
    source = tomllib.loads((REPO / "plugins/blender/blender_manifest.toml").read_text("utf-8"))
    assert source["version"] == _version()
    assert source["id"] == "a2x" and source["blender_version_min"] == "4.2.0"


def test_zip_carries_the_wheels_it_declares(addon_zip: Path) -> None:
    manifest = _manifest(addon_zip)
    assert manifest["version"] == _version()
    assert manifest["platforms"] == ["linux-x64"]
    assert (manifest["blender_version_min"], manifest["blender_version_max"]) == ("4.2.0", "5.1.0")
    with zipfile.ZipFile(addon_zip) as archive:
        names = set(archive.namelist())
    wheels = [w.removeprefix("./") for w in manifest["wheels"]]
    assert all(w in names for w in wheels)
    assert {n for n in names if n.endswith(".whl")} == set(wheels)
    dists = {Path(w).name.split("-")[0].lower() for w in wheels}
    assert {"a2x", "scipy", "soundfile", "soxr", "pocketsphinx", "onnxruntime", "pypinyin"} <= dists
    assert "numpy" not in dists  # Blender ships it
    assert all("cp311" in w or "abi3" in w or "-none-" in w for w in wheels)
    for module in ("__init__.py", "operators.py", "properties.py", "panels.py", "bake.py"):
        assert module in names


def test_manifest_for_several_platforms_and_pythons(tmp_path: Path) -> None:
    import build_addon

    zip_path = build_addon.build(
        ["linux-x64", "windows-x64"], ["3.11", "3.13"], tmp_path, tmp_path / "cache",
        download=False, with_dependencies=False,
    )  # fmt: skip
    manifest = _manifest(zip_path)
    assert manifest["platforms"] == ["linux-x64", "windows-x64"]
    assert manifest["blender_version_min"] == "4.2.0" and "blender_version_max" not in manifest
    only_313 = build_addon.build(["linux-x64"], ["3.13"], tmp_path / "b", tmp_path / "cache",
                                 download=False, with_dependencies=False)  # fmt: skip
    assert _manifest(only_313)["blender_version_min"] == "5.1.0"


def test_no_download_without_a_cache_says_what_to_do(tmp_path: Path) -> None:
    import build_addon

    with pytest.raises(build_addon.BuildError, match="run once without --no-download"):
        build_addon.build(["macos-arm64"], ["3.11"], tmp_path, tmp_path / "empty", download=False)


def test_no_download_with_a_cache_for_other_requirements_says_what_to_do(tmp_path: Path) -> None:
    """A cache resolved before pyproject.toml gained a dependency would build an extension
    without it: refused, naming the fix."""
    import build_addon

    folder = tmp_path / "cache" / "linux-x64-py3.11"
    folder.mkdir(parents=True)
    (folder / "resolved.txt").write_text("# requested: scipy>=1.11\nscipy-1.0-none-any.whl\n",
                                         encoding="utf-8")  # fmt: skip
    assert not build_addon.cache_is_current(tmp_path / "cache", "linux-x64", "3.11")
    with pytest.raises(build_addon.BuildError, match="other requirements.*without --no-download"):
        build_addon.build(["linux-x64"], ["3.11"], tmp_path, tmp_path / "cache", download=False)


@pytest.mark.blender
def test_blender_validates_the_zip(addon_zip: Path) -> None:
    pythons = bpy_pythons()
    if not pythons:
        pytest.skip("no Python with the bpy module")
    for version, python in sorted(pythons.items()):
        root = Path(python).parent.parent / "lib"
        tools = sorted(
            root.glob("python3.*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py")
        )
        assert tools, f"blender_ext.py not found under {root}"
        proc = subprocess.run([python, str(tools[0]), "validate", str(addon_zip)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, f"Blender {version}: {proc.stdout}{proc.stderr}"
        assert "Success" in proc.stdout
