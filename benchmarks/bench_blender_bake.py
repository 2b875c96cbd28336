"""Blender bake speed: ten minutes of 60 fps weights into 52 shape-key channels.

Runs with a Python that has the ``bpy`` module (PyPI wheel), using the add-on's ``bake.py``
and the core's ``plan_bake`` from this tree; inference is not timed (the weights exist)::

    .venv-bpy50/bin/python benchmarks/bench_blender_bake.py --minutes 10 --fps 60

It prints one Markdown row: Blender version, keys written, best-of-N time for planning
(mapping, multiplier/offset) and for writing the Action (``keyframe_points.add`` +
``foreach_set`` per F-curve), and their sum. The target is a total of at most 2 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from a2x_core import AnimationResult  # noqa: E402
from a2x_core.names import ARKIT_52  # noqa: E402
from a2x_core.retarget import auto_map, plan_bake  # noqa: E402


def _load_addon_bake():  # noqa: ANN202 - the add-on's bake module, without registering it
    spec = importlib.util.spec_from_file_location(
        "a2x_addon", ROOT / "plugins" / "blender" / "__init__.py",
        submodule_search_locations=[str(ROOT / "plugins" / "blender")],
    )  # fmt: skip
    package = importlib.util.module_from_spec(spec)
    sys.modules["a2x_addon"] = package
    spec.loader.exec_module(package)
    return package.bake


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bake = _load_addon_bake()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = args.fps, 1.0
    mesh = bpy.data.meshes.new("Face")
    mesh.from_pydata([(x * 0.1, y * 0.1, 0.0) for x in range(20) for y in range(20)], [], [])
    obj = bpy.data.objects.new("Face", mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for name in ARKIT_52:
        obj.shape_key_add(name=name, from_mix=False)
    key = obj.data.shape_keys

    frames = int(round(args.minutes * 60 * args.fps))
    rng = np.random.default_rng(0)
    weights = rng.random((frames, len(ARKIT_52)), dtype=np.float32)
    fps = Fraction(args.fps)
    result = AnimationResult(weights=weights, fps=fps, duration_s=frames / args.fps)
    rows = list(auto_map([kb.name for kb in key.key_blocks]).targets)

    plan_times, write_times = [], []
    for _ in range(args.repeat):
        began = time.perf_counter()
        plan = plan_bake(result, rows, fps, 1)
        planned = time.perf_counter()
        bake.bake_key(key, plan)
        written = time.perf_counter()
        plan_times.append(planned - began)
        write_times.append(written - planned)
    curves = bake._fcurves_of(key.animation_data.action)
    assert len(curves) == 52 and all(len(fc.keyframe_points) == frames for fc in curves)
    total = min(p + w for p, w in zip(plan_times, write_times, strict=True))
    cpu = platform.processor() or platform.machine()
    print(f"| Blender {bpy.app.version_string} | {args.minutes:g} min x {args.fps} fps = {frames} "
          f"frames x 52 channels ({frames * 52:,} keys) | plan {min(plan_times):.3f} s | "
          f"write {min(write_times):.3f} s | **total {total:.3f} s** | {cpu}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} |")  # fmt: skip
    sys.stdout.flush()
    os._exit(0 if total <= 2.0 else 1)


if __name__ == "__main__":
    main()
