"""``a2x batch --render`` / ``--export-fbx``: each clip through ``a2x render``'s path.

With ``--blend SCENE --object FACE``, a batch bakes every clip into its own copy of the scene
(``OUTDIR/CLIP.blend``). ``--render`` and ``--export-fbx`` run ``a2x render`` instead: the clip
is baked onto the scene's rig in headless Blender, the scene's camera renders it to
``OUTDIR/CLIP.mp4`` (sound muxed, frame range from the audio) and/or the baked meshes go to
``OUTDIR/CLIP.fbx``; the scene is opened, never saved, so one Blender run per clip does it all.
The worker that animated the clip runs it (:func:`render_clip`, called by
:func:`~a2x_core.batch.work.write_clip`); the outputs are atomic, as every a2x output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ParameterError

#: The files a render step writes, by setting: ``render_settings()["video"]`` → ``.mp4``...
RENDERED_SUFFIXES = {"video": ".mp4", "fbx": ".fbx"}


def render_settings(*, video: bool, fbx: bool, blend: Path | None, engine: str = "workbench",
                    resolution_percentage: int | None = None) -> dict[str, Any] | None:  # fmt: skip
    """The batch's render step as plain data (it travels to the workers and into each clip's
    fingerprint), or None when neither ``--render`` nor ``--export-fbx`` is asked for.

    Raises:
        ParameterError: a render without ``--blend``, or a bad engine or percentage.
    """
    from ..preview.render import ENGINES

    if not (video or fbx):
        return None
    flag = "--render" if video else "--export-fbx"
    if blend is None:
        raise ParameterError(f"{flag} renders each clip on your rig: name the scene",
                             hint="pass --blend SCENE.blend --object FACE")  # fmt: skip
    if engine not in ENGINES:
        raise ParameterError(f"--render-engine {engine}", hint=f"use one of {', '.join(ENGINES)}")
    if resolution_percentage is not None and not 1 <= resolution_percentage <= 100:
        raise ParameterError(f"--resolution-percentage {resolution_percentage}",
                             hint="give a share of the scene's resolution, 1 to 100")  # fmt: skip
    return {"video": video, "fbx": fbx, "engine": engine,
            "resolution_percentage": resolution_percentage}  # fmt: skip


def planned_outputs(outdir: Path, name: str, settings: dict[str, Any]) -> list[Path]:
    """The clip's rendered files, in the order :func:`render_clip` writes them."""
    return [outdir / f"{name}{suffix}" for key, suffix in RENDERED_SUFFIXES.items()
            if settings.get(key)]  # fmt: skip


def render_clip(clip: dict[str, Any], result: Any, blender: dict[str, str | None], *,
                overwrite: bool) -> list[Path]:
    """Bake ``result`` onto the clip's rig and render/export it (``a2x render``'s path).

    ``clip["blend"]``: the scene, the object and the render settings (``"render"``) that
    :func:`~a2x_core.batch.runner.plan_batch` put there; ``blender``: the batch's
    ``--blender-python`` / ``--blender-exe`` (else ``$A2X_BLENDER`` or ``blender`` on the PATH).
    Raises an :class:`~a2x_core.errors.A2XError` (the clip fails alone) when Blender cannot.
    """
    from ..preview.render import RenderRequest, render_take

    scene = clip["blend"]
    settings = scene["render"]
    outdir = Path(clip["outputs"][0]).parent
    video, fbx = (outdir / f"{clip['name']}{RENDERED_SUFFIXES[key]}" if settings.get(key) else None
                  for key in ("video", "fbx"))  # fmt: skip
    request = RenderRequest(
        blend=Path(scene["scene"]), objects=[scene["object"]], engine=settings["engine"],
        resolution_percentage=settings.get("resolution_percentage"),
        blender=blender.get("python") or blender.get("exe"),
    )  # fmt: skip
    return render_take(result, request, video, fbx=fbx, overwrite=overwrite)
