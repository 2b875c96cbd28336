"""Model registry: ``load_model("default" | path)`` and the interface every model implements."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..audio.decode import Audio
from ..backends import EngineSettings
from ..errors import ModelError
from ..inputs import check_path_length, regular_file_status
from ..jobs import CancelToken, ProgressCallback
from ..options import EmotionKey, InferenceOptions
from ..result import AnimationResult

log = logging.getLogger("a2x_core")

#: Environment variable listing extra model folders (os.pathsep-separated) for ``a2x models``.
MODEL_PATH_ENV = "A2X_MODEL_PATH"


@runtime_checkable
class AnimationModel(Protocol):
    """What the CLI, the API and the DCC adapters need from a model."""

    name: str
    version: str
    kind: str  # "default", "regression", "diffusion"
    emotion_names: tuple[str, ...]  # explicit emotions it accepts; () = none

    def info(self) -> dict[str, Any]:
        """Human-readable facts for ``a2x info``: files, sizes, parameters and their defaults."""
        ...

    def animate(
        self,
        tracks: Sequence[Audio],
        options: InferenceOptions,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        *,
        track_emotions: Sequence[tuple[EmotionKey, ...]] | None = None,
    ) -> list[AnimationResult]:
        """Animate several tracks as one batch; results equal one-at-a-time runs.

        ``track_emotions``: one tuple of emotion keys per track, used in place of
        ``options.emotions`` for that track (each clip's detected emotions: the batch keeps one
        ``options``); None = ``options.emotions`` for every track. A model without an emotion
        input refuses keys (ParameterError).
        """
        ...


def resolve_model_json(spec: str | os.PathLike[str]) -> Path:
    """``PATH/model.json`` or a folder holding one → the model.json path (checked to exist)."""
    path = check_path_length(Path(spec).expanduser(), ModelError, "model")
    if path.is_dir():
        path = path / "model.json"
    if not path.exists():
        raise ModelError(
            "no model.json here",
            path=path,
            hint="pass --model default, or the model.json of a downloaded Audio2Face-3D folder",
        )
    return path


def _model_kind(model_json: Path) -> str:
    """Sniff a model.json's kind by its keys (``a2x info``, ``a2x models``, ``load_model``).

    Raises:
        ModelError (a ModelPackageError for damaged JSON, deep nesting included).
    """
    from .regression_folder import read_json_file

    regular_file_status(model_json, missing=ModelError, unusable=ModelError, what="model.json")

    data = read_json_file(model_json, hint="download it again")
    if not isinstance(data, dict):
        raise ModelError("must hold a JSON object", path=model_json, hint="download it again")
    if "modelConfigPaths" in data or "modelDataPaths" in data:
        return "diffusion"
    if "blendshapePaths" in data or "modelDataPath" in data:
        return "regression"
    return "emotion"


def load_model(
    spec: str | os.PathLike[str] = "default",
    *,
    backend: str = "auto",
    threads: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    compile_network: bool = False,
) -> AnimationModel:
    """Load a model once, to animate many clips.

    Args:
        spec: ``"default"`` (the embedded lip-sync model, no download) or the path of an
            Audio2Face-3D ``model.json`` (v2.x regression or v3.0 diffusion) or of the folder
            that holds it.
        backend: inference engine for network models ("auto", "onnxruntime", ...).
        threads: CPU threads for inference (None = all cores).
        device, precision: where and how a GPU engine runs (see ``InferenceOptions``).
        compile_network: regression models on the torch engine with CUDA: ``torch.compile``.

    Raises:
        ModelError: the folder is missing, incomplete or of an unsupported kind.
    """
    if str(spec) == "default":
        from ..lipsync.model import DefaultLipSyncModel

        return DefaultLipSyncModel()
    model_json = resolve_model_json(spec)
    kind = _model_kind(model_json)
    engine = EngineSettings(backend, threads, device, precision)
    if kind == "regression":
        from .regression import RegressionModel

        return RegressionModel.load(model_json, engine, compile_network=compile_network)
    if kind == "diffusion":
        from .diffusion import DiffusionModel

        return DiffusionModel.load(model_json, engine)
    if kind == "emotion":
        raise ModelError(
            "is an Audio2Emotion model, which detects emotions rather than animating a face",
            path=model_json,
            hint="pass it as --emotion-model with an Audio2Face-3D --model",
        )
    raise ModelError(f"is a {kind} model, which a2x does not know", path=model_json)


@dataclass(frozen=True)
class ModelEntry:
    """One model ``a2x models`` lists."""

    spec: str
    kind: str
    description: str


def list_models(
    extra_dirs: Sequence[str | os.PathLike[str]] = (), *, strict: bool = False
) -> list[ModelEntry]:
    """The embedded model plus every model.json found one or two levels below the folders in
    ``A2X_MODEL_PATH`` and ``extra_dirs``.

    A folder that does not exist is skipped with a warning (a DCC's stale preference must not
    empty its model list); with ``strict`` (``a2x models DIR``) one of ``extra_dirs`` that does
    not exist raises :class:`ModelError`, since the user just typed it.
    """
    entries = [ModelEntry("default", "default", "embedded lip-sync model (CPU, no download)")]
    from_env = [Path(p) for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p]
    named = [Path(p) for p in extra_dirs]
    if strict:
        for root in named:
            if not root.is_dir():
                raise ModelError("no such folder" if not root.exists() else "is not a folder",
                                 path=root, hint="name a folder that holds model folders")  # fmt: skip
    seen: set[Path] = set()
    for root in [*from_env, *named]:
        check_path_length(root, ModelError, "model folder")
        if not root.is_dir():
            where = f" (from {MODEL_PATH_ENV})" if root in from_env else ""
            log.warning("%s: no such model folder%s; skipped", root, where)
            continue
        for candidate in [*root.glob("model.json"), *root.glob("*/model.json"), *root.glob("*/*/model.json")]:
            resolved = candidate.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            try:
                kind = _model_kind(candidate)
            except ModelError as error:
                entries.append(ModelEntry(str(candidate), "invalid", str(error)))
                continue
            entries.append(ModelEntry(str(candidate), kind, candidate.parent.name))
    return entries
