"""``a2x render``'s Blender side: bake a take onto a rig and render the scene to an MP4.

Run by :mod:`a2x_core.preview.render` in a headless Blender (``blender -b --python render_job.py --
JOB.json``) or a ``bpy`` Python (``python render_job.py JOB.json``), never imported by the
add-on. The job file names the .blend, the objects, the take (an a2x JSON), the output folder
and the render settings. The bake is the add-on's own (``bake.py``: add-on-owned Actions,
the a2x sound strip); the .blend on disk is never saved. The last line printed is
``A2X_RENDER {...}``: what was done, or ``{"error": ..., "hint": ...}`` for the CLI to show.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import os
import sys
import traceback

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = "A2X_RENDER "

#: ``--engine`` → render engine id; Eevee's id changed in 4.2 (``BLENDER_EEVEE_NEXT``) and
#: back in 5.0 (``BLENDER_EEVEE``).
ENGINES = {"workbench": ("BLENDER_WORKBENCH",), "eevee": ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"),
           "cycles": ("CYCLES",)}  # fmt: skip


class JobError(Exception):
    """A problem with the user's scene or request; reported as one line with its fix."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def _load_bake():
    """The add-on's ``bake.py``, loaded by path (the add-on itself needs no enabling)."""
    spec = importlib.util.spec_from_file_location("a2x_render_bake", os.path.join(HERE, "bake.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def _job_path() -> str:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    return argv[-1]


def _set_engine(scene, name: str) -> None:
    for engine in ENGINES[name]:
        try:
            scene.render.engine = engine  # the engine list is dynamic: try each id
        except TypeError:
            continue
        return
    raise JobError(f"this Blender has no {name} render engine", "choose another --engine")


def _set_video_output(scene, folder: str) -> None:
    """H.264 + AAC in MP4, the sound strips mixed in (Blender 5.0 first picks 'video')."""
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    ffmpeg = scene.render.ffmpeg
    ffmpeg.format = "MPEG4"
    ffmpeg.codec = "H264"
    ffmpeg.constant_rate_factor = "MEDIUM"
    ffmpeg.audio_codec = "AAC"
    ffmpeg.audio_channels = "STEREO"
    ffmpeg.audio_mixrate = 48000
    scene.render.use_file_extension = True
    scene.render.filepath = os.path.join(folder, "render_")


def run(job: dict) -> dict:
    from a2x_core.export.writers import read_result
    from a2x_core.retarget import auto_map, plan_bake, scene_fps, seconds_to_frames

    bake = _load_bake()
    bpy.ops.wm.open_mainfile(filepath=job["blend"])
    scene = bpy.context.scene
    if job.get("folder") and scene.camera is None:  # no folder: an FBX export only
        raise JobError(f"the scene {scene.name!r} has no camera", "add one and make it active")
    result = read_result(job["result"])
    fps = scene_fps(scene.render.fps, scene.render.fps_base)
    start = int(job.get("start_frame", scene.frame_start))
    baked = []
    for name in job["objects"]:
        obj = bpy.data.objects.get(name)
        if obj is None:
            names = ", ".join(sorted(o.name for o in bpy.data.objects if o.type == "MESH"))
            raise JobError(f"the .blend has no object {name!r}", f"meshes: {names or 'none'}")
        key = getattr(obj.data, "shape_keys", None)
        if key is None:
            raise JobError(f"{name!r} has no shape keys", "choose the face mesh with --object")
        mapping = auto_map([block.name for block in key.key_blocks[1:]])
        if not mapping.targets:
            raise JobError(f"{name!r}: no shape key matches an ARKit name",
                           "rename the shapes or bake in the add-on with a mapping table")  # fmt: skip
        plan = plan_bake(result, mapping.targets, fps, start)
        use_nla = bake.artist_action(key) is not None  # never replace the artist's Action
        done = bake.bake_key(key, plan, use_nla=use_nla, metadata={"audio": result.audio_path})
        baked.append({"object": name, "channels": done.channels, "keys": done.keys_per_channel})
    if result.audio_path:
        bake.sync_sound_strip(scene, result.audio_path, start)
    frames = seconds_to_frames(result.duration_s, fps)
    scene.frame_start = start
    scene.frame_end = start + max(1, frames) - 1
    _set_engine(scene, job.get("engine", "workbench"))
    if job.get("resolution_percentage"):
        scene.render.resolution_percentage = int(job["resolution_percentage"])
    out = {"video": None, "frames": scene.frame_end - scene.frame_start + 1, "fps": float(fps),
           "baked": baked}  # fmt: skip
    if job.get("folder"):
        _set_video_output(scene, job["folder"])
        bpy.ops.render.render(animation=True)
        videos = glob.glob(os.path.join(job["folder"], "render_*"))
        if len(videos) != 1:
            raise JobError(f"Blender wrote {len(videos)} video files", "see Blender's log above")
        out["video"] = videos[0]
    if job.get("fbx"):
        bpy.ops.object.select_all(action="DESELECT")
        for name in job["objects"]:
            bpy.data.objects[name].select_set(True)
            for parent in (bpy.data.objects[name].parent,):
                if parent is not None:
                    parent.select_set(True)
        bpy.ops.export_scene.fbx(filepath=job["fbx"], use_selection=True, bake_anim=True,
                                 bake_anim_use_all_actions=False, bake_anim_use_nla_strips=False,
                                 add_leaf_bones=False,
                                 use_mesh_modifiers=False)  # fmt: skip
        out["fbx"] = job["fbx"]
    out["seconds"] = math.floor(result.duration_s * 1000) / 1000
    return out


def main() -> None:
    with open(_job_path(), encoding="utf-8") as handle:
        job = json.load(handle)
    sys.path.insert(0, job["repo"])
    try:
        report = run(job)
    except JobError as error:
        report = {"error": str(error), "hint": error.hint}
    except Exception as error:  # a Blender or bake failure: the CLI shows it, with the trace
        trace = traceback.format_exc().strip().splitlines()
        report = {"error": f"Blender failed: {error}", "hint": " | ".join(trace[-4:])}
    print(MARK + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
