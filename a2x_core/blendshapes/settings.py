"""Blendshape-solver settings shared by the Audio2Face-3D models: per-pose columns by name and
``skin.`` / ``tongue.`` parameter overrides validated as the SDK's setters validate them."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelPackageError, ParameterError
from ..models.regression_folder import (
    SOLVER_ARRAYS,
    SOLVER_RANGES,
    BlendshapeConfig,
    BlendshapeSet,
    check_range,
    check_solver_arrays,
    check_weight_scale,
    range_text,
    solver_array,
)
from ..names import match_name

#: The two solvers; their parameters are prefixed by these names (``skin.strengthL2regularization``).
SOLVERS = ("skin", "tongue")

#: ``blendshape_params`` key -> :class:`BlendshapeConfig` field.
SOLVER_FIELDS = {
    "strengthL1regularization": "l1",
    "strengthL2regularization": "l2",
    "strengthTemporalSmoothing": "temporal",
    "strengthSymmetry": "symmetry",
    "templateBBSize": "template_bb_size",
    "bsSolveActivePoses": "active",
    "bsSolveCancelPoses": "cancel",
    "bsSolveSymmetryPoses": "symmetry_ids",
    "bsWeightMultipliers": "multipliers",
    "bsWeightOffsets": "offsets",
}


def pose_index(names: Sequence[str], wanted: Sequence[str], path: Path, what: str) -> np.ndarray:
    """Column of every ``wanted`` name among ``names`` (exact, else case/separator-insensitive).

    Raises:
        ModelPackageError: a wanted pose is missing (a2x outputs weights by name).
    """
    exact = {n: i for i, n in enumerate(names)}
    loose: dict[str, int] = {}
    for i, n in enumerate(names):
        canon = match_name(n, wanted)
        if canon is not None and canon not in loose:
            loose[canon] = i
    index, missing = [], []
    for name in wanted:
        i = exact.get(name, loose.get(name))
        if i is None:
            missing.append(name)
        index.append(-1 if i is None else i)
    if missing:
        raise ModelPackageError(
            f"poseNames lacks the {what} poses {', '.join(missing)}",
            path=path,
            hint=f"a2x outputs {what} weights by name; use a model whose poses include them",
        )
    return np.asarray(index, dtype=np.int64)


def is_solver_key(key: str) -> bool:
    """Whether ``key`` names a solver parameter (``skin.<scalar>``, ``tongue.<array>[.<pose>]``)."""
    solver, _, rest = key.partition(".")
    field, _, pose = rest.partition(".")
    return solver in SOLVERS and ((field in SOLVER_RANGES and not pose) or field in SOLVER_ARRAYS)


def solver_parameter_ranges() -> dict[str, str]:
    """Every solver parameter name -> its accepted values (for ``a2x info``)."""
    out = {}
    for solver in SOLVERS:
        for key, bounds in SOLVER_RANGES.items():
            out[f"{solver}.{key}"] = range_text(*bounds)
        for key, kind in SOLVER_ARRAYS.items():
            what = (
                "0/1"
                if key == "bsSolveActivePoses"
                else ("pair id or -1" if kind == "int" else "number")
            )
            out[f"{solver}.{key}"] = f"list (one {what} per pose) or {{pose: value}}"
            out[f"{solver}.{key}.<pose>"] = what
    return out


def solver_config(bs: BlendshapeSet, over: Mapping[str, Any], solver: str) -> BlendshapeConfig:
    """``bs.config`` with ``over`` (keys without the solver prefix) applied and validated.

    Raises:
        ParameterError: out of range, unknown pose, wrong length or type, broken pairs.
    """
    config = bs.config
    if not over:
        return config
    names = bs.data.pose_names
    changes: dict[str, Any] = {}
    arrays = {key: getattr(config, SOLVER_FIELDS[key]).copy() for key in SOLVER_ARRAYS}
    for rest, value in over.items():
        field, _, pose = rest.partition(".")
        label = f"{solver}.{rest}"
        if field in SOLVER_RANGES:
            why = check_range(label, value, *SOLVER_RANGES[field])
            if why:
                raise ParameterError(why, hint=f"use a value {range_text(*SOLVER_RANGES[field])}")
            changes[SOLVER_FIELDS[field]] = float(value)
            continue
        kind = SOLVER_ARRAYS[field]
        updates = {pose: value} if pose else value
        if isinstance(updates, Mapping):
            for pose_name, item in updates.items():
                if pose_name not in names:
                    raise ParameterError(
                        f"{label}: unknown pose {pose_name!r}",
                        hint=f"{solver} poses: {', '.join(names)}",
                    )
                arrays[field][names.index(pose_name)] = solver_array([item], label, 1, kind)[0]
        else:
            arrays[field] = solver_array(value, label, len(names), kind)
    check_solver_arrays(arrays)
    if any(key.partition(".")[0] in ("bsWeightMultipliers", "bsWeightOffsets") for key in over):
        check_weight_scale(
            arrays["bsWeightMultipliers"], arrays["bsWeightOffsets"], names, f"{solver}.",
            error=ParameterError,
        )  # fmt: skip
    for key, array in arrays.items():
        changes[SOLVER_FIELDS[key]] = array
    return replace(config, **changes)


def solver_values(config: BlendshapeConfig, solver: str, pose_names: Sequence[str]) -> dict[str, Any]:
    """JSON-ready effective solver values, in the override naming."""
    out: dict[str, Any] = {}
    for key, field in SOLVER_FIELDS.items():
        value = getattr(config, field)
        out[f"{solver}.{key}"] = value.tolist() if isinstance(value, np.ndarray) else value
    out[f"{solver}.poseNames"] = list(pose_names)
    return out


def fresh(stage: Any) -> Any:
    """A per-track copy of a prepared stage: shares its read-only arrays, fresh state."""
    clone = copy.copy(stage)
    clone.reset()
    return clone
