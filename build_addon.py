"""Build the installable a2x Blender extension zip into ``dist/``.

Usage::

    python build_addon.py                                  # linux-x64, Python 3.11 (Blender 4.2-5.0)
    python build_addon.py --platform linux-x64 --platform windows-x64 --python 3.11 --python 3.13
    python build_addon.py --wheel-cache build/wheels --no-download   # offline, from the cache

The zip holds ``plugins/blender/`` (the extension), an ``a2x`` wheel built from this tree and
the CPU runtime's dependency wheels from PyPI (``pip download --only-binary=:all:``) for every
platform and Python asked for; numpy is left out because Blender ships it. The manifest is
written from the source one with the version from ``a2x_core/version.py``, the ``wheels``
list, ``platforms`` and the Blender range the Python versions allow (3.11: 4.2-5.0,
3.13: 5.1+). Blender installs only the wheels that fit the machine it runs on.

Downloads land in the wheel cache (default ``build/wheel-cache``) with the resolved list per
platform and Python, so later builds with ``--no-download`` need no network.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
EXTENSION = ROOT / "plugins" / "blender"

#: Blender's platform names → the pip platform tags to ask for (newest first).
PLATFORM_TAGS: dict[str, list[str]] = {
    "linux-x64": [f"manylinux_2_{v}_x86_64" for v in (28, 27, 26, 24, 17, 12, 5)]
    + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"],
    "windows-x64": ["win_amd64"],
    "windows-arm64": ["win_arm64"],
    "macos-arm64": [f"macosx_{v}_0_arm64" for v in (14, 13, 12, 11)]
    + [f"macosx_{v}_0_universal2" for v in (14, 13, 12, 11)]
    + [f"macosx_10_{v}_universal2" for v in (15, 14, 13, 12, 9)],
    "macos-x64": [f"macosx_{v}_0_x86_64" for v in (14, 13, 12, 11)]
    + [f"macosx_10_{v}_x86_64" for v in (15, 14, 13, 12, 9)]
    + [f"macosx_10_{v}_universal2" for v in (15, 14, 13, 12, 9)],
}


@dataclass(frozen=True)
class PythonTarget:
    """A Blender Python line: which Blender versions use it and the numpy they ship."""

    version: str
    blender_min: str
    blender_max: str | None  # exclusive
    numpy_pin: str  # resolve dependencies against the oldest numpy those Blenders carry


PYTHONS: dict[str, PythonTarget] = {
    "3.11": PythonTarget("3.11", "4.2.0", "5.1.0", "numpy==1.26.4"),
    "3.13": PythonTarget("3.13", "5.1.0", None, "numpy==2.2.*"),
}

#: Runtime dependencies (pyproject ``dependencies``) that Blender already provides.
PROVIDED_BY_BLENDER = {"numpy"}


class BuildError(Exception):
    """A build step failed; the message says which and what to do."""


def read_version() -> str:
    text = (ROOT / "a2x_core" / "version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise BuildError('a2x_core/version.py has no __version__ = "x.y.z" line')
    return match.group(1)


def runtime_requirements() -> list[str]:
    """``pyproject.toml`` dependencies minus what Blender ships."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    out = []
    for req in data["project"]["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower()
        if name not in PROVIDED_BY_BLENDER:
            out.append(req)
    return out


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed ({' '.join(cmd[:6])} ...):\n{tail}")
    return proc.stdout + proc.stderr


def build_a2x_wheel(dest: Path, pip: list[str]) -> Path:
    """Build the ``a2x`` wheel from a clean copy of the tree (no build/ or egg-info left here)."""
    with tempfile.TemporaryDirectory(prefix="a2x-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        shutil.copy2(ROOT / "pyproject.toml", src)
        readme = ROOT / "README.md"
        if readme.exists():
            shutil.copy2(readme, src)
        else:
            (src / "README.md").write_text("a2x\n", encoding="utf-8")
        shutil.copytree(
            ROOT / "a2x_core",
            src / "a2x_core",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        out = Path(tmp) / "out"
        base = [*pip, "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)]
        try:
            _run([*base, "--no-build-isolation"], "building the a2x wheel")
        except BuildError:
            _run(base, "building the a2x wheel (isolated)")
        wheels = list(out.glob("a2x-*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"expected one a2x wheel, got {[w.name for w in wheels]}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheels[0], dest / wheels[0].name))


def _requirements(python: PythonTarget) -> list[str]:
    """What the wheels for one Blender Python are resolved for."""
    return [*runtime_requirements(), python.numpy_pin]


def _requested(python: PythonTarget) -> str:
    """The first line of a cache's ``resolved.txt``: what its wheels were resolved for."""
    return "# requested: " + " ".join(_requirements(python))


def _listing(cache: Path, platform: str, version: str) -> Path:
    """A cache's ``resolved.txt``: the request line, then the wheels' file names."""
    return cache / f"{platform}-py{version}" / "resolved.txt"


def cache_is_current(cache: Path, platform: str, python: str) -> bool:
    """Whether ``cache`` holds wheels resolved for today's requirements (a build without
    download can use it)."""
    listing = _listing(cache, platform, python)
    if not listing.exists():
        return False
    return listing.read_text(encoding="utf-8").split("\n", 1)[0] == _requested(PYTHONS[python])


def dependency_wheels(
    platform: str, python: PythonTarget, cache: Path, pip: list[str], download: bool
) -> list[Path]:
    """Dependency wheels for one platform and Python, from the cache or PyPI.

    The resolved file list is kept in ``<cache>/<platform>-py<ver>/resolved.txt`` so that
    ``--no-download`` builds take exactly the same files.
    """
    listing = _listing(cache, platform, python.version)
    folder = listing.parent
    requested = _requested(python)
    if download:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [*pip, "download", "--only-binary=:all:", "--dest", str(folder),
               "--python-version", python.version, "--implementation", "cp", "--progress-bar", "off"]  # fmt: skip
        for tag in PLATFORM_TAGS[platform]:
            cmd += ["--platform", tag]
        log = _run(
            [*cmd, *_requirements(python)],
            f"downloading wheels for {platform} / Python {python.version}",
        )
        names = sorted(set(re.findall(r"([^\s/\\]+\.whl)", log)))
        if not names:
            raise BuildError(f"pip reported no wheels for {platform} / Python {python.version}")
        listing.write_text(requested + "\n" + "\n".join(names) + "\n", encoding="utf-8")
    if not listing.exists():
        raise BuildError(
            f"no cached wheels for {platform} / Python {python.version} in {folder}; "
            "run once without --no-download"
        )
    lines = listing.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != requested:
        raise BuildError(
            f"the cached wheels in {folder} were resolved for other requirements than "
            f"pyproject.toml's ({requested[2:]}); run once without --no-download"
        )
    wheels = []
    for name in lines[1:]:
        dist = name.split("-", 1)[0].lower().replace("_", "-")
        if dist in PROVIDED_BY_BLENDER:
            continue
        path = folder / name
        if not path.exists():
            raise BuildError(f"{path} is listed in {listing} but missing; download again")
        wheels.append(path)
    return wheels


def write_manifest(
    staging: Path,
    version: str,
    platforms: list[str],
    pythons: list[PythonTarget],
    wheels: list[str],
) -> None:
    text = (EXTENSION / "blender_manifest.toml").read_text(encoding="utf-8")
    text = re.sub(r'^version = ".*"$', f'version = "{version}"', text, count=1, flags=re.M)
    low = min(pythons, key=lambda p: p.blender_min).blender_min
    highs = [p.blender_max for p in pythons]
    high = None if None in highs else max(h for h in highs if h)
    text = re.sub(r'^blender_version_min = ".*"$', f'blender_version_min = "{low}"', text,
                  count=1, flags=re.M)  # fmt: skip
    extra = ""
    if high:
        extra += f'blender_version_max = "{high}"\n'
    extra += "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]\n"
    extra += "wheels = [\n" + "".join(f'  "./wheels/{w}",\n' for w in wheels) + "]\n\n"
    text = text.replace("[permissions]", extra + "[permissions]", 1)
    tomllib.loads(text)  # fail here, not in Blender, if the edit broke the TOML
    (staging / "blender_manifest.toml").write_text(text, encoding="utf-8")


def build(
    platforms: list[str],
    pythons: list[str],
    out_dir: Path,
    cache: Path,
    download: bool = True,
    with_dependencies: bool = True,
    pip: list[str] | None = None,
) -> Path:
    """Build the extension zip and return its path (see the module docstring)."""
    pip = pip or [sys.executable, "-m", "pip"]
    version = read_version()
    targets = [PYTHONS[p] for p in pythons]
    with tempfile.TemporaryDirectory(prefix="a2x-addon-") as tmp:
        staging = Path(tmp) / "a2x"
        shutil.copytree(EXTENSION, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        wheel_dir = staging / "wheels"
        wheels = [build_a2x_wheel(wheel_dir, pip).name]
        if with_dependencies:
            for python in targets:
                for platform in platforms:
                    for path in dependency_wheels(platform, python, cache, pip, download):
                        if path.name not in wheels:
                            shutil.copy2(path, wheel_dir / path.name)
                            wheels.append(path.name)
        write_manifest(staging, version, platforms, targets, sorted(wheels))
        plat_tag = ".".join(p.replace("-", "_") for p in platforms)
        py_tag = ".".join("py" + p.replace(".", "") for p in pythons)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"a2x-{version}-{plat_tag}-{py_tag}.zip"
        tmp_zip = target.with_suffix(".zip.tmp")
        with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(staging).as_posix())
        tmp_zip.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS),
                        help="Blender platform to carry wheels for (repeatable; default linux-x64)")  # fmt: skip
    parser.add_argument("--python", action="append", choices=sorted(PYTHONS),
                        help="Blender's Python: 3.11 = Blender 4.2-5.0, 3.13 = 5.1+ (default 3.11)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (dist/)")
    parser.add_argument("--wheel-cache", type=Path, default=ROOT / "build" / "wheel-cache",
                        help="where downloaded wheels are kept (build/wheel-cache)")  # fmt: skip
    parser.add_argument("--no-download", action="store_true",
                        help="use only the wheel cache (no network)")  # fmt: skip
    parser.add_argument("--no-dependencies", action="store_true",
                        help="carry only the a2x wheel (for Blenders that already have the deps)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        path = build(
            platforms=list(dict.fromkeys(args.platform or ["linux-x64"])),
            pythons=list(dict.fromkeys(args.python or ["3.11"])),
            out_dir=args.out,
            cache=args.wheel_cache,
            download=not args.no_download,
            with_dependencies=not args.no_dependencies,
        )
    except BuildError as error:
        print(f"build_addon: {error}", file=sys.stderr)
        return 2
    size_mb = path.stat().st_size / 1e6
    print(f"{path} ({size_mb:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
