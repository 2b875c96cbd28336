"""One bake's plain values and its run: the panel read once into a :class:`BakeRequest`,
inference on a thread (or in the external runtime) as a :class:`BakeSession`, keys written
on the main thread. No operator, panel or UI state here, so scripts and tests drive it too.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import bpy

from . import bake, preferences, properties

if TYPE_CHECKING:
    from a2x_core import AnimationResult, InferenceOptions
    from a2x_core.retarget import ShapeTarget

_RESULTS: OrderedDict[tuple, list[AnimationResult]] = OrderedDict()
_ANIMATORS: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_SIZE = 4


def _remember(cache: OrderedDict, key: tuple, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


# --------------------------------------------------------------------------- gathering settings


@dataclass
class BakeRequest:
    """Everything a bake needs, read once from the panel and the operator's arguments."""

    scene_name: str
    audio_path: str
    model: str
    key_names: list[str]
    rows: list[list[ShapeTarget]]
    fps: Any  # Fraction
    start_frame: int
    options: InferenceOptions
    use_nla: bool
    add_sound_strip: bool
    interpolation: str
    external_python: str
    warnings: list[str] = field(default_factory=list)
    emotion_model: str = ""  # Audio2Emotion model.json ("" = none)
    key_emotions: bool = False
    object_names: list[list[str]] = field(default_factory=list)  # targets per shape-key block
    head_object: str = ""  # key the head motion on this object ("" = off)
    head_bone: str = ""  # ... on this pose bone of it
    notes: list[str] = field(default_factory=list)  # reported as INFO lines

    def cache_key(self) -> tuple:
        import json

        stat = os.stat(self.audio_path)
        opts = json.dumps(self.options.to_json(), sort_keys=True, default=str)
        return (self.external_python, self.model, self.audio_path, stat.st_mtime_ns,
                stat.st_size, opts, self.emotion_model, _stamp(self.emotion_model))  # fmt: skip


def _stamp(path: str) -> int | None:
    """A file's modification time (None when absent): a changed file is a new cache key."""
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


def _error(message: str, hint: str = "") -> Exception:
    from a2x_core.errors import ParameterError

    return ParameterError(message, hint=hint)


def target_objects(context: bpy.types.Context, object_names: str = "") -> list[bpy.types.Object]:
    """Objects to bake onto: named ones, else the panel's list, else the active object."""
    if object_names:
        objects = []
        for name in (n.strip() for n in object_names.split(",")):
            obj = bpy.data.objects.get(name)
            if obj is None:
                raise _error(f"there is no object named {name!r}", "check object_name")
            objects.append(obj)
    else:
        settings = context.scene.a2x
        objects = [t.object for t in settings.targets if t.object is not None]
        if not objects and context.active_object is not None:
            objects = [context.active_object]
    if not objects:
        raise _error("no target object", "select a face with shape keys or add it to Targets")
    for obj in objects:
        if getattr(getattr(obj, "data", None), "shape_keys", None) is None:
            raise _error(
                f"{obj.name!r} has no shape keys",
                "add ARKit-named shape keys or pick another object",
            )
    return objects


def shape_names(key: bpy.types.Key) -> list[str]:
    """Shape names of ``key`` without its reference (Basis) shape."""
    reference = key.reference_key.name if key.reference_key is not None else None
    return [kb.name for kb in key.key_blocks if kb.name != reference]


def table_rows(settings: Any) -> list[ShapeTarget]:
    from a2x_core.retarget import ShapeTarget

    return [
        ShapeTarget(r.target, r.source, r.multiplier, r.offset, r.enabled)
        for r in settings.mapping
        if r.target
    ]


def rows_for_key(
    key: bpy.types.Key,
    table: list[ShapeTarget],
    warnings: list[str],
    notes: list[str] | None = None,
) -> list:
    """The table's rows for this Key's shapes; an empty or foreign table means auto-mapping
    (one shape per source curve; the shapes left out are named in ``notes``)."""
    from a2x_core.retarget import auto_map

    names = shape_names(key)
    present = set(names)
    rows = [r for r in table if r.target in present]
    if not rows:
        mapping = auto_map(names)
        rows = list(mapping.targets)
        if table:
            warnings.append(
                f"{bake.owner_name(key)}: the mapping table names none of its shapes; "
                "matched them automatically"
            )
        if mapping.candidates and notes is not None:
            notes.append(candidates_note(bake.owner_name(key), mapping.candidates))
    if not any(r.enabled for r in rows):
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise _error(
            f"no shape key of {bake.owner_name(key)!r} matches an ARKit name ({shown})",
            "rename them (jawOpen, eyeBlinkLeft, ...) or fill the mapping table",
        )
    return rows


def candidates_note(owner: str, candidates: Any) -> str:
    """One line naming the shapes auto-mapping left out, and how to drive them anyway."""
    shown = ", ".join(f"{c.target} ({c.source})" for c in candidates[:4])
    more = f" and {len(candidates) - 4} more" if len(candidates) > 4 else ""
    return (f"a2x: {owner}: {len(candidates)} more shape(s) match a curve that already drives "
            f"a shape and were left out: {shown}{more}; to drive them too, press Match Names "
            "under Shape Mapping and add them from Other Matching Shapes")  # fmt: skip


def model_spec(context: bpy.types.Context) -> str:
    """The panel's model as ``load_model`` takes it: "default" or a model.json path."""
    settings = context.scene.a2x
    if settings.model == "FILE":
        if not settings.model_path:
            raise _error("no model.json chosen", "pick a model.json or use the default model")
        return bpy.path.abspath(settings.model_path)
    if settings.model == "FOLDER":
        entry = context.window_manager.a2x_models.get(settings.model_entry)
        if entry is None:
            raise _error(
                f"model {settings.model_entry!r} is not in the model folders",
                "pick one, or rescan the folders in the add-on preferences",
            )
        return entry.path
    return "default"


def sound_strip_source(context: bpy.types.Context) -> Any:
    settings = context.scene.a2x
    strip = next(
        (s for s in bake.sound_strips(context.scene) if s.name == settings.sound_strip), None
    )
    if strip is None:
        raise _error("no sound strip chosen", "pick one of the scene's sound strips")
    return strip


#: Operator arguments that are not strings: a script gets the operator's defaults for those it
#: leaves out, the panel's Bake button (``invoke``) the panel's values.
VALUE_ARGUMENTS = ("start_frame", "use_nla", "add_sound_strip", "key_emotions")


def gather_request(context: bpy.types.Context, op: Any = None) -> BakeRequest:
    """Read the panel, or an operator's arguments, into a :class:`BakeRequest`.

    Without ``op`` every value is the panel's (``scene.a2x``). With ``op`` its arguments
    count: a string argument left empty (audio, objects, model, transcript, language, emotion
    model, identity) takes the panel's choice, every other one is the operator's own value, so a
    script gets the defaults the operator documents (the Bake button passes the panel's).

    Raises:
        A2XError: with the fix, for anything missing or in the way (an artist's Action).
    """
    from a2x_core import InferenceOptions
    from a2x_core.errors import AudioNotFoundError
    from a2x_core.retarget import scene_fps

    def argument(name: str) -> str:
        """An operator's string argument, "" without an operator."""
        return str(getattr(op, name)).strip() if op is not None else ""

    scene = context.scene
    settings = scene.a2x
    values = op if op is not None else settings
    warnings: list[str] = []
    notes: list[str] = []
    fps = scene_fps(scene.render.fps, scene.render.fps_base)
    start_s = end_s = None
    start_frame = values.start_frame
    add_strip = values.add_sound_strip
    if argument("audio_path"):
        audio = bpy.path.abspath(op.audio_path)
    elif settings.audio_source == "STRIP":
        strip = sound_strip_source(context)
        audio = bake.strip_audio_path(strip)
        start_frame = int(strip.frame_start)  # the audio plays where the strip sits
        head = strip.frame_final_start - strip.frame_start
        tail = strip.frame_final_end - strip.frame_start
        start_s = head / float(fps) if head > 0 else None
        end_s = tail / float(fps)
        add_strip = False
    else:
        if not settings.audio_path:
            raise _error("no audio file chosen", "pick an audio file in the a2x panel, or pass "
                         "audio_path")  # fmt: skip
        audio = bpy.path.abspath(settings.audio_path)
    if not os.path.isfile(audio):
        raise AudioNotFoundError("audio file not found", path=audio, hint="pick an existing file")
    model = argument("model") or model_spec(context)
    if model != "default":
        model = bpy.path.abspath(model)
    use_nla = values.use_nla

    objects = target_objects(context, argument("object_name"))
    keys = bake.shape_key_blocks(objects)
    if not use_nla:
        for key in keys:
            action = bake.artist_action(key)
            if action is not None:
                raise _error(
                    f"the shape keys of {bake.owner_name(key)!r} play your Action "
                    f"{action.name!r}, which a2x never modifies or replaces",
                    "tick 'Bake to NLA Strip' (use_nla=True) to bake beside it, or unassign "
                    "that Action first",
                )
    table = table_rows(settings)
    rows = [rows_for_key(key, table, warnings, notes) for key in keys]

    transcript = settings.transcript_text.as_string() if settings.transcript_text else ""
    transcript = argument("transcript") or transcript or settings.transcript
    emotion_model = _emotion_model(settings, argument("emotion_model"), model)
    emotions, identity = emotions_and_identity(settings, model, emotion_model, warnings,
                                               argument("identity") or None)  # fmt: skip
    emotion_fields: dict[str, Any] = {}
    if emotion_model:
        emotion_fields = {"emotion_window": settings.emotion_window,
                          "emotion_skip": settings.emotion_skip,
                          "emotion_mix": settings.emotion_mix.lower()}  # fmt: skip
    prefs = preferences.get(context)
    options = InferenceOptions(
        fps=fps,
        start_s=start_s,
        end_s=end_s,
        transcript=transcript.strip() or None,
        language=argument("language") or settings.language.strip() or "auto",
        strength=settings.strength,
        smoothing_s=settings.smoothing_s,
        emotions=emotions,
        identity=identity,
        backend=prefs.backend if prefs else "auto",
        threads=(prefs.threads or None) if prefs else None,
        head_motion=settings.head_motion,
        **emotion_fields,
    )
    head_object = settings.head_object if settings.key_head else None
    if settings.key_head and head_object is None:
        raise _error("'Key Head Motion' is ticked but no Head object is chosen",
                     "pick the head (object or armature) in Timing and Shaping, or untick it")  # fmt: skip
    head_bone = settings.head_bone.strip() if head_object is not None else ""
    if head_bone and (head_object.pose is None or head_bone not in head_object.pose.bones):
        raise _error(f"{head_object.name!r} has no bone {head_bone!r}",
                     "pick the head bone of the Head armature, or leave Bone empty")  # fmt: skip
    return BakeRequest(
        scene_name=scene.name,
        audio_path=audio,
        model=model,
        key_names=[k.name for k in keys],
        rows=rows,
        fps=fps,
        start_frame=int(start_frame),
        options=options,
        use_nla=use_nla,
        add_sound_strip=add_strip,
        interpolation=settings.interpolation,
        external_python=bpy.path.abspath(prefs.external_python)
        if prefs and prefs.external_python
        else "",
        warnings=warnings,
        emotion_model=emotion_model,
        key_emotions=values.key_emotions,
        object_names=[[o.name for o in objects if o.data.shape_keys == k] for k in keys],
        notes=notes,
        head_object=head_object.name if head_object is not None else "",
        head_bone=head_bone,
    )


def emotions_and_identity(settings: Any, model: str, emotion_model: str, warnings: list[str],
                          identity: str | None = None) -> tuple[tuple, str | None]:  # fmt: skip
    """The panel's emotion sliders (as ``InferenceOptions.emotions``) and diffusion identity
    for ``model``; lists loaded for another model are left out with a warning. ``identity``
    (an operator's argument) wins over the panel's."""
    stale = []
    emotions: tuple = ()
    if settings.use_emotions and len(settings.emotions):
        if settings.model_info_for == model:
            sliders = {e.name: float(e.value) for e in settings.emotions}
            if emotion_model and settings.emotion_mix == "OVERRIDE":  # only those set replace
                sliders = {name: value for name, value in sliders.items() if value > 0}
            emotions = ((0.0, sliders),) if sliders else ()
        else:
            stale.append("emotion sliders")
    if identity is None and settings.model_kind == "diffusion" and len(settings.identities):
        if settings.model_info_for == model:
            identity = settings.identity if settings.identity != properties.NO_IDENTITY else None
        else:
            stale.append("identity list")
    if stale:
        warnings.append(f"the {' and '.join(stale)} were loaded for another model; press "
                        "'Load Model Info' to use them with this one")  # fmt: skip
    return emotions, identity


#: The operator's ``emotion_model`` value that means "no emotion model" ("" = the panel's).
NO_EMOTION_MODEL = "none"


def _emotion_model(settings: Any, argument: str, model: str) -> str:
    """The Audio2Emotion model.json to use ("" = none): the operator's ``emotion_model``
    when given (``"none"`` = none), else the panel's, which is hidden and ignored for the
    default model."""
    if argument:
        path = "" if argument.lower() == NO_EMOTION_MODEL else argument
    elif model == "default":
        return ""
    else:
        path = settings.emotion_model_path
    return bpy.path.abspath(path) if path.strip() else ""


# --------------------------------------------------------------------------- the bake session


def _animator(model: str, options: InferenceOptions, emotion_model: str = "") -> Any:
    """A loaded model (cached), with an Audio2Emotion model when one is given (the face
    model is loaded once and shared by both)."""
    from a2x_core import Animator

    key = (model, options.backend, options.threads)
    if key not in _ANIMATORS:
        _remember(_ANIMATORS, key, Animator(model, options))
    base = _ANIMATORS[key]
    if not emotion_model:
        return base
    with_emotions = (*key, emotion_model, _stamp(emotion_model))
    if with_emotions not in _ANIMATORS:
        _remember(_ANIMATORS, with_emotions,
                  Animator(base.model, options, emotion_model=emotion_model))  # fmt: skip
    return _ANIMATORS[with_emotions]


class PrintedProgress:
    """Progress of a scripted bake on stdout (a script has no progress bar): a line per stage
    and per tenth of the job, ``a2x: <stage> <percent>%``."""

    def __init__(self) -> None:
        self.stage, self.tenth = "", -1

    def __call__(self, progress: Any) -> None:
        tenth = int(progress.fraction * 10)
        if progress.stage == self.stage and tenth <= self.tenth:
            return
        self.stage, self.tenth = progress.stage, tenth
        line = f"a2x: {progress.stage} {int(progress.fraction * 100)}%"
        print(line, file=sys.stdout, flush=True)

    def finish(self) -> None:
        """The last line, once the result is in (the job's own last report may go unseen)."""
        from a2x_core.jobs import Progress

        if 0 <= self.tenth < 10:
            self(Progress(1.0, "done"))


class BakeSession:
    """Inference for one :class:`BakeRequest` (a thread or the external runtime), then the bake.

    ``start()`` returns at once; ``poll()`` is the job's (``Progress`` or None when done,
    re-raising its error); ``apply()`` writes the keys on the main thread. A result already
    computed for the same audio, model and options is reused, so re-baking after editing
    the mapping, multipliers or start frame is instant.
    """

    def __init__(self, request: BakeRequest) -> None:
        self.request = request
        self.job: Any = None
        self.results: list[AnimationResult] | None = None
        self.started = time.perf_counter()
        self.inference_s = 0.0

    def start(self) -> BakeSession:
        from a2x_core.jobs import Job

        req = self.request
        cached = _RESULTS.get(req.cache_key())
        if cached is not None:
            self.results = cached
            return self
        if req.external_python:
            from a2x_core.worker import start_worker

            self.job = start_worker(req.external_python, req.model, [req.audio_path], req.options,
                                    emotion_model=req.emotion_model or None)  # fmt: skip
        else:

            def work(progress: Any, cancel: Any) -> list[AnimationResult]:
                animator = _animator(req.model, req.options, req.emotion_model)
                return animator.animate_many([req.audio_path], req.options, progress, cancel)

            self.job = Job(work, name="a2x-bake").start()
        return self

    def poll(self) -> Any:
        if self.results is not None:
            return None
        progress = self.job.poll()
        if progress is None:
            self.results = self.job.result()
            self.inference_s = time.perf_counter() - self.started
            _remember(_RESULTS, self.request.cache_key(), self.results)
        return progress

    def wait(self, on_progress: Any = None) -> None:
        """Block until the result is in; ``on_progress(Progress)`` sees every update."""
        while (progress := self.poll()) is not None:
            if on_progress is not None:
                on_progress(progress)
            time.sleep(0.02)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _bake_head(self, result: Any) -> list[tuple[str, str]]:
        """Key the head motion when asked (report lines)."""
        req = self.request
        if not req.head_object:
            return []
        obj = bpy.data.objects.get(req.head_object)
        if obj is None:
            raise _error(f"the Head object {req.head_object!r} is gone", "pick it again")
        plan = bake.plan_head(result, req.fps, req.start_frame)
        if plan is None:
            return [("WARNING", f"the {result.model or req.model} model gives no head motion "
                     "to key; 'Key Head Motion' needs the default model")]  # fmt: skip
        name, curves = bake.bake_head(obj, plan, req.head_bone, req.interpolation,
                                      {"audio": req.audio_path, "model": req.model})  # fmt: skip
        where = f"{obj.name}:{req.head_bone}" if req.head_bone else obj.name
        return [("INFO", f"a2x: head motion, {curves} curves on {where} (NLA strip {name})")]

    def apply(self) -> list[tuple[str, str]]:
        """Bake the finished result; returns report lines as (level, text)."""
        from a2x_core.retarget import plan_bake

        req = self.request
        assert self.results is not None
        result = self.results[0]
        scene = bpy.data.scenes.get(req.scene_name)
        if scene is None:
            raise _error(f"scene {req.scene_name!r} is gone", "bake again")
        began = time.perf_counter()
        lines: list[tuple[str, str]] = [("WARNING", w) for w in req.warnings + result.warnings]
        lines.extend(("INFO", note) for note in req.notes)
        last_frame = float(req.start_frame)
        baked = []
        emotions = None
        if req.key_emotions:
            emotions = bake.plan_emotions(result, req.fps, req.start_frame)
            if emotions is None:
                lines.append(("WARNING", f"the {result.model or req.model} model gives no emotion "
                              "curves to key; 'Key Emotions' needs an Audio2Face-3D model"))  # fmt: skip
        names_per_key = req.object_names or [[] for _ in req.key_names]
        for key_name, rows, object_names in zip(req.key_names, req.rows, names_per_key,
                                                strict=True):  # fmt: skip
            key = bpy.data.shape_keys.get(key_name)
            if key is None:
                raise _error(f"shape keys {key_name!r} were removed during the bake", "bake again")
            if not req.use_nla and bake.artist_action(key) is not None:
                raise _error(
                    f"{bake.owner_name(key)!r} got an Action of yours during the bake; "
                    "a2x never replaces it",
                    "tick 'Bake to NLA Strip' or unassign that Action",
                )
            plan = plan_bake(result, rows, req.fps, req.start_frame)
            if plan.missing_sources:
                lines.append(
                    ("WARNING", f"{bake.owner_name(key)}: this model gives no curve for "
                     f"{', '.join(plan.missing_sources)}")
                )  # fmt: skip
            if not plan.channels:
                continue
            metadata = {"audio": req.audio_path, "model": req.model, "start_frame": req.start_frame}
            if req.emotion_model:
                metadata["emotion_model"] = req.emotion_model
            identity = result.parameters.get("identity")  # a diffusion model's face
            if isinstance(identity, str) and identity:
                metadata["identity"] = identity
            objects = [bpy.data.objects[n] for n in object_names if n in bpy.data.objects]
            done = bake.bake_key(
                key, plan, use_nla=req.use_nla, interpolation=req.interpolation, metadata=metadata,
                emotions=emotions, objects=objects,
            )  # fmt: skip
            baked.append(done)
            lines.extend(("WARNING", w) for w in done.warnings)
            last_frame = max(last_frame, done.frame_range[1])
        lines += self._bake_head(result)
        if req.add_sound_strip:
            bake.sync_sound_strip(scene, req.audio_path, req.start_frame)
        bake.extend_frame_range(scene, last_frame)
        bake_s = time.perf_counter() - began
        for done in baked:
            lines.append(
                ("INFO", f"a2x: {done.key_name}: {done.channels} shapes x {done.keys_per_channel} "
                 f"keys, frames {done.frame_range[0]:g}-{done.frame_range[1]:g} "
                 f"({'NLA strip' if done.placement == 'nla' else 'Action'} {done.action_name})")
            )  # fmt: skip
            if done.emotion_channels:
                lines.append(
                    ("INFO", f"a2x: {done.emotion_channels} emotion curves keyed as "
                     f"{bake.EMOTION_PREFIX}* on {', '.join(done.emotion_objects)}")
                )  # fmt: skip
        lines.append(("INFO", f"a2x: inference {self.inference_s:.1f} s, bake {bake_s:.2f} s"))
        return lines
