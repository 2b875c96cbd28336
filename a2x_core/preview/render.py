"""``a2x render``: a take baked onto the user's own rig in headless Blender and rendered with the
scene's camera and settings, the clip's sound muxed (Blender's FFmpeg output, H.264 + AAC).

a2x animates (or reads) the take here, writes it as a JSON take into a private folder and runs
``plugins/blender/render_job.py`` in Blender: the add-on's bake code keys the shapes (by ARKit
name), the a2x sound strip carries the clip, the frame range is the audio's. The .blend is
opened, never saved. The video (and the FBX, with ``--export-fbx``) reach their paths the way
every a2x output does: complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import A2XError, OutputError, ParameterError
from ..export.writers import OutputSet, write_json
from ..result import AnimationResult

REPO = Path(__file__).resolve().parents[2]
JOB_SCRIPT = REPO / "plugins" / "blender" / "render_job.py"
MARK = "A2X_RENDER "
ENGINES = ("workbench", "eevee", "cycles")


class RenderError(A2XError):
    """Blender could not bake or render the scene (the message says why and how to fix it)."""


@dataclass
class RenderRequest:
    blend: Path
    objects: list[str]
    engine: str = "workbench"
    start_frame: int | None = None
    resolution_percentage: int | None = None
    blender: str | None = None
    timeout_s: float = 3600.0


def find_blender(explicit: str | None) -> list[str]:
    """The command that runs a job script: ``--blender`` or ``$A2X_BLENDER`` (a ``blender``
    executable, or a Python with the ``bpy`` module), else ``blender`` on the PATH."""
    choice = explicit or os.environ.get("A2X_BLENDER") or shutil.which("blender")
    if not choice:
        raise ParameterError("no Blender found",
                             hint="pass --blender PATH (a blender executable or a Python with "
                             "bpy) or set A2X_BLENDER")  # fmt: skip
    name = Path(choice).name.lower()
    if name.startswith("python"):
        return [choice, str(JOB_SCRIPT)]
    return [choice, "-b", "--factory-startup", "--python", str(JOB_SCRIPT), "--"]


def check_request(request: RenderRequest) -> None:
    """Refuse before any work a request Blender could not run."""
    if not JOB_SCRIPT.is_file():
        raise ParameterError("a2x render needs the Blender add-on's sources (plugins/blender)",
                             hint="run it from an a2x source checkout")  # fmt: skip
    if not request.blend.is_file():
        raise ParameterError("the .blend file is not there", hint="check --blend")
    if not request.objects:
        raise ParameterError("name the face mesh", hint="--object Face (repeatable)")
    if request.engine not in ENGINES:
        raise ParameterError(f"--engine {request.engine}", hint=f"use one of {', '.join(ENGINES)}")


def render_take(result: AnimationResult, request: RenderRequest, video: Path | None, *,
                fbx: Path | None = None, overwrite: bool = False) -> list[Path]:  # fmt: skip
    """Bake ``result`` onto the request's objects, render to ``video`` (and export ``fbx``);
    returns the paths written. ``video`` None: only the FBX (nothing is rendered)."""
    if video is None and fbx is None:
        raise ParameterError("nothing to write", hint="give a video path, an FBX path or both")
    check_request(request)
    command = find_blender(request.blender)
    with tempfile.TemporaryDirectory(prefix="a2x-render-") as folder:
        work = Path(folder)
        take = work / "take.json"
        write_json(result, take)
        job = {
            "repo": str(REPO), "blend": str(request.blend.resolve()), "objects": request.objects,
            "result": str(take), "folder": str(work / "video") if video is not None else None,
            "engine": request.engine,
            "fbx": str(work / "take.fbx") if fbx is not None else None,
        }  # fmt: skip
        if request.start_frame is not None:
            job["start_frame"] = request.start_frame
        if request.resolution_percentage:
            job["resolution_percentage"] = request.resolution_percentage
        (work / "video").mkdir()
        job_file = work / "job.json"
        job_file.write_text(json.dumps(job), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        try:
            proc = subprocess.run([*command, str(job_file)], capture_output=True, text=True,
                                  timeout=request.timeout_s, env=env, cwd=folder)  # fmt: skip
        except OSError as error:
            raise ParameterError(f"cannot run Blender ({error})", hint="check --blender") from None
        except subprocess.TimeoutExpired:
            raise RenderError(f"Blender did not finish in {request.timeout_s:.0f} s") from None
        report = _report(proc)
        with OutputSet(overwrite=overwrite) as outputs:
            if video is not None:
                outputs.stage(video, lambda temp: shutil.copyfile(report["video"], temp))
            if fbx is not None:
                outputs.stage(fbx, lambda temp: shutil.copyfile(report["fbx"], temp))
            return outputs.commit()


def _report(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RenderError(f"Blender stopped without a result (exit {proc.returncode}):\n{tail}")
    report = json.loads(lines[-1][len(MARK):])
    if "error" in report:
        raise RenderError(report["error"], hint=report.get("hint", ""))
    return report


def check_outputs(video: Path, fbx: Path | None, *, overwrite: bool) -> None:
    from ..export.writers import check_new_file

    if video.suffix.lower() != ".mp4":
        raise OutputError("a render is an MP4 video", path=video, hint="name it .mp4")
    check_new_file(video, overwrite=overwrite)
    if fbx is not None:
        if fbx.suffix.lower() != ".fbx":
            raise OutputError("--export-fbx writes an .fbx file", path=fbx, hint="name it .fbx")
        check_new_file(fbx, overwrite=overwrite)
