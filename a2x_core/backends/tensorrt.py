"""TensorRT 10/11 with cuda-python: plans built from ``network.onnx`` and ``trt_info.json``,
cached on disk, run with ``set_tensor_address`` + ``execute_async_v3`` and CUDA graphs.

The SDK builds its engines with ``trtexec`` and the strings of ``trt_info.json`` (spec §1.2);
this module turns those strings into builder calls, so a2x needs no ``trtexec``. Everything that
needs no GPU (argument parsing, cache keys, the plan index, CUDA error checking, the SDK's
engine I/O checks) is a plain function here, testable without TensorRT. TensorRT and
cuda-python are imported only inside :func:`import_tensorrt`, with an install hint.

Plans are only valid for the exact TensorRT version and GPU they were built with (TensorRT
"Support Policies"), so the cache key holds both, with the ONNX bytes, precision and profile.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import importlib.util
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError
from .base import EngineCapabilities, InferenceEngine, TensorSpec, check_bindings

log = logging.getLogger("a2x_core")

#: Environment variable that moves the plan cache (default ``~/.cache/a2x/engines``).
CACHE_ENV = "A2X_ENGINE_CACHE"
PRECISIONS = ("fp32", "tf32", "fp16")
PLAN_SUFFIX = ".plan"
RECORD_SUFFIX = ".json"

INSTALL_HINT = (
    "install TensorRT 10 or 11 for your CUDA (pip install tensorrt-cu12 or tensorrt-cu13; the "
    "libraries download from pypi.nvidia.com) and cuda-python (pip install 'a2x[gpu]'), "
    "or use --backend onnxruntime"
)

Shape = tuple[int, ...]

# trtexec --memPoolSize pool names -> TensorRT MemoryPoolType members
_POOLS = {
    "workspace": "WORKSPACE",
    "dlasram": "DLA_MANAGED_SRAM",
    "dlalocaldram": "DLA_LOCAL_DRAM",
    "dlaglobaldram": "DLA_GLOBAL_DRAM",
    "tacticsharedmem": "TACTIC_SHARED_MEMORY",
}
_UNITS = {"": 2**20, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30}  # trtexec default unit: MiB
_TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32",
               "INT64": "int64", "INT8": "int8", "BOOL": "bool"}  # fmt: skip


# ----------------------------------------------------------------------------- build parameters


@dataclass(frozen=True)
class Profile:
    """One dynamic input's optimization-profile shapes."""

    min: Shape
    opt: Shape
    max: Shape

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class BuildParams:
    """What ``trt_info.json`` asks of the builder, placeholders filled.

    Attributes:
        profiles: input name -> min/opt/max shapes (one optimization profile, as the SDK builds).
        memory_pools: trtexec pool name (lower case) -> limit in bytes.
        fp16: the groups contain ``--fp16`` (the SDK's ``trt_info_fp16.json``).
        ignored: trtexec arguments that have no builder equivalent here (logged, not fatal).
        batch_axes: input name -> the axis that holds the batch, for inputs whose batch is not
            axis 0 (the diffusion GRU state ``input_latents`` [steps, layers, B, latent]: 2).
    """

    profiles: dict[str, Profile]
    memory_pools: dict[str, int] = field(default_factory=dict)
    fp16: bool = False
    ignored: tuple[str, ...] = ()
    batch_axes: dict[str, int] = field(default_factory=dict)

    def batch_axis(self, name: str) -> int:
        """The batch axis of input ``name`` (0 unless :attr:`batch_axes` says otherwise)."""
        return self.batch_axes.get(name, 0)

    @property
    def max_batch(self) -> int:
        """The largest batch the profile admits: the smallest max extent over every input's
        batch axis."""
        return min(p.max[self.batch_axis(n)] for n, p in self.profiles.items())


def trt_args(trt_info: Mapping[str, Any]) -> list[str]:
    """Every string of every ``trt_build_param`` group, in dict order, as the SDK's trt.py."""
    groups = trt_info.get("trt_build_param")
    if not isinstance(groups, Mapping):
        raise EngineError("trt_info.json has no 'trt_build_param' object", hint=_REDOWNLOAD)
    args: list[str] = []
    for name, group in groups.items():
        if not isinstance(group, list) or not all(isinstance(a, str) for a in group):
            raise EngineError(f"trt_info.json group {name!r} is not a list of strings",
                              hint=_REDOWNLOAD)  # fmt: skip
        args.extend(group)
    return args


def fill_placeholders(args: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """Replace ``{MAX_BATCH_SIZE}``-style placeholders; an unknown one is an error."""
    out = []
    for arg in args:
        missing = [m for m in re.findall(r"\{([A-Za-z0-9_]+)\}", arg) if m not in values]
        if missing:
            raise EngineError(
                f"trt_info.json argument {arg!r} uses {{{missing[0]}}}, which has no value",
                hint="add it to the 'defaults' block of trt_info.json",
            )
        out.append(re.sub(r"\{([A-Za-z0-9_]+)\}", lambda m: str(values[m.group(1)]), arg))
    return out


def placeholder_values(trt_info: Mapping[str, Any], max_batch: int | None = None) -> dict[str, int]:
    """``trt_info["defaults"]`` with ``MAX_BATCH_SIZE`` replaced by ``max_batch`` (the number of
    tracks, as the SDK's executors allocate) and ``OPT_BATCH_SIZE`` capped at it."""
    defaults = trt_info.get("defaults") or {}
    values = {str(k): v for k, v in defaults.items()} if isinstance(defaults, Mapping) else {}
    if max_batch is not None:
        if int(max_batch) < 1:
            raise EngineError(f"max batch must be at least 1, got {max_batch}")
        values["MAX_BATCH_SIZE"] = int(max_batch)
        values["OPT_BATCH_SIZE"] = min(int(values.get("OPT_BATCH_SIZE", max_batch)), max_batch)
    return values


def parse_shapes(spec: str) -> dict[str, Shape]:
    """``input:1x1x8320,emotion:1x1x26`` -> ``{"input": (1, 1, 8320), ...}`` (trtexec syntax;
    names may be quoted and may contain colons, so the shape is what follows the last one)."""
    shapes: dict[str, Shape] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, dims = item.rpartition(":")
        name = name.strip().strip("'\"")
        if not sep or not name or not re.fullmatch(r"\d+(x\d+)*", dims.strip()):
            raise EngineError(f"trt_info.json shape {item!r} is not NAME:DxDxD", hint=_REDOWNLOAD)
        shapes[name] = tuple(int(d) for d in dims.strip().split("x"))
    return shapes


def parse_pool(spec: str) -> dict[str, int]:
    """``tacticSharedMem:0.046875`` -> ``{"tacticsharedmem": 49152}`` (MiB unless suffixed)."""
    pools = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, size = item.partition(":")
        match = re.fullmatch(r"([0-9.]+)\s*([BKMG]?)", size.strip(), re.IGNORECASE)
        if name.strip().lower() not in _POOLS or match is None:
            raise EngineError(
                f"trt_info.json memory pool {item!r} is not POOL:SIZE with POOL one of "
                "workspace, dlaSRAM, dlaLocalDRAM, dlaGlobalDRAM, tacticSharedMem",
                hint=_REDOWNLOAD,
            )
        pools[name.strip().lower()] = int(float(match[1]) * _UNITS[match[2].upper()])
    return pools


def placeholder_axes(args: Sequence[str], placeholder: str = "MAX_BATCH_SIZE") -> dict[str, int]:
    """Input name -> the axis of its ``--maxShapes`` extent written as ``{MAX_BATCH_SIZE}``
    (unfilled arguments): where ``trt_info.json`` itself puts the batch of each input, e.g. 2 in
    ``input_latents:2x2x{MAX_BATCH_SIZE}x256``."""
    axes: dict[str, int] = {}
    token = "{" + placeholder + "}"
    for arg in args:
        key, _, value = arg.partition("=")
        if key != "--maxShapes":
            continue
        for item in filter(None, (x.strip() for x in value.split(","))):
            name, sep, dims = item.rpartition(":")
            parts = dims.strip().split("x")
            if sep and token in parts:
                axes[name.strip().strip("'\"")] = parts.index(token)
    return axes


def parse_build_args(args: Sequence[str], batch_axes: Mapping[str, int] | None = None) -> BuildParams:
    """trtexec arguments (placeholders filled) -> :class:`BuildParams`, checking that every
    input has min <= opt <= max of one rank. ``batch_axes``: inputs whose batch is not axis 0."""
    found: dict[str, dict[str, Shape]] = {"min": {}, "opt": {}, "max": {}}
    pools: dict[str, int] = {}
    fp16 = False
    ignored = []
    for arg in args:
        key, _, value = arg.partition("=")
        kind = {"--minShapes": "min", "--optShapes": "opt", "--maxShapes": "max"}.get(key)
        if kind:
            found[kind].update(parse_shapes(value))
        elif key == "--memPoolSize":
            pools.update(parse_pool(value))
        elif key == "--fp16":
            fp16 = True
        else:
            ignored.append(arg)
    names = set(found["min"]) | set(found["opt"]) | set(found["max"])
    profiles = {}
    for name in sorted(names):
        try:
            shapes = tuple(found[k][name] for k in ("min", "opt", "max"))
        except KeyError:
            raise EngineError(
                f"trt_info.json gives {name!r} only some of --minShapes/--optShapes/--maxShapes",
                hint=_REDOWNLOAD,
            ) from None
        low, opt, high = shapes
        if not (len(low) == len(opt) == len(high)) or not all(
            1 <= a <= b <= c for a, b, c in zip(low, opt, high, strict=True)
        ):
            raise EngineError(
                f"trt_info.json profile for {name!r} needs min <= opt <= max of one rank, got "
                f"{list(low)} / {list(opt)} / {list(high)}",
                hint="check --max-batch and the 'defaults' block of trt_info.json",
            )
        profiles[name] = Profile(low, opt, high)
    if not profiles:
        raise EngineError("trt_info.json defines no --minShapes/--optShapes/--maxShapes",
                          hint=_REDOWNLOAD)  # fmt: skip
    axes = {n: int(a) for n, a in (batch_axes or {}).items() if n in profiles and int(a) != 0}
    for name, axis in axes.items():
        if not 0 <= axis < len(profiles[name].max):
            raise EngineError(f"batch axis {axis} of {name!r} is outside its profile shape "
                              f"{list(profiles[name].max)}", hint=_REDOWNLOAD)  # fmt: skip
    return BuildParams(profiles, pools, fp16, tuple(ignored), axes)


def build_params(
    trt_info: Mapping[str, Any],
    max_batch: int | None = None,
    batch_axes: Mapping[str, int] | None = None,
) -> BuildParams:
    """The builder settings of a model folder's ``trt_info.json`` for ``max_batch`` tracks
    (None = its ``MAX_BATCH_SIZE`` default). Each input's batch axis is where its
    ``--maxShapes`` extent is ``{MAX_BATCH_SIZE}``, else ``batch_axes`` (the model's
    :class:`~.base.TensorSpec` ``batch_axis``), else 0."""
    args = trt_args(trt_info)
    axes = {**dict(batch_axes or {}), **placeholder_axes(args)}
    return parse_build_args(fill_placeholders(args, placeholder_values(trt_info, max_batch)), axes)


def read_trt_info(onnx_path: Path) -> dict[str, Any]:
    """``trt_info.json`` beside ``network.onnx``."""
    path = Path(onnx_path).with_name("trt_info.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError("missing; TensorRT builds need it", path=path, hint=_REDOWNLOAD) from None
    except (OSError, ValueError) as error:
        raise EngineError(f"unreadable ({error})", path=path, hint=_REDOWNLOAD) from None
    except RecursionError:  # deeply nested JSON (reliability_fuzz M1)
        raise EngineError("unreadable (nested too deeply)", path=path, hint=_REDOWNLOAD) from None
    if not isinstance(data, dict):
        raise EngineError("is not a JSON object", path=path, hint=_REDOWNLOAD)
    return data


_REDOWNLOAD = "download the model folder again"


# ----------------------------------------------------------------------------- plan cache


def default_cache_dir() -> Path:
    """``$A2X_ENGINE_CACHE`` or ``~/.cache/a2x/engines``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "a2x" / "engines"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (networks can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plan_key(
    onnx_sha256: str,
    trt_version: str,
    compute_capability: str,
    precision: str,
    params: BuildParams,
) -> str:
    """A stable key for one plan: everything that makes a serialized plan valid or different.
    Dict order never matters (canonical JSON); the ``ignored`` arguments do not change plans."""
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}", hint=f"use one of {PRECISIONS}")
    material = {
        "onnx": onnx_sha256,
        "tensorrt": trt_version,
        "sm": compute_capability,
        "precision": precision,
        "profiles": {n: p.to_json() for n, p in sorted(params.profiles.items())},
        "pools": dict(sorted(params.memory_pools.items())),
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def plan_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """The plan file and its JSON record."""
    return Path(cache_dir) / f"{key}{PLAN_SUFFIX}", Path(cache_dir) / f"{key}{RECORD_SUFFIX}"


@dataclass(frozen=True)
class PlanRecord:
    """The JSON record written beside each plan (one file per plan, so that concurrent builds in
    several processes never rewrite a shared index)."""

    key: str
    onnx: str
    onnx_sha256: str
    tensorrt: str
    compute_capability: str
    device: str
    precision: str
    max_batch: int
    profiles: dict[str, dict[str, list[int]]]
    memory_pools: dict[str, int]
    created: str
    plan_bytes: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanRecord:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def write_record(cache_dir: Path, record: PlanRecord) -> Path:
    """Write a plan's record atomically (temp file + rename)."""
    _, path = plan_paths(cache_dir, record.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_plan(cache_dir: Path, key: str, plan: bytes) -> Path:
    """Write a plan atomically, so that a crashed build never leaves a truncated plan."""
    path, _ = plan_paths(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(plan)
    os.replace(tmp, path)
    return path


def plan_index(cache_dir: Path) -> list[PlanRecord]:
    """Every plan of the cache that has both its plan file and a readable record, oldest first;
    unreadable records are logged and skipped (``clear --all`` removes them)."""
    records = []
    folder = Path(cache_dir)
    if not folder.is_dir():
        return []
    for path in sorted(folder.glob(f"*{RECORD_SUFFIX}")):
        try:
            record = PlanRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("skipping unreadable plan record %s (%s)", path, error)
            continue
        if plan_paths(folder, record.key)[0].is_file():
            records.append(record)
    return sorted(records, key=lambda r: (r.created, r.key))


def remove_plans(cache_dir: Path, keys: Sequence[str] | None = None) -> list[str]:
    """Delete the given plans (None = every plan, record and stale temp file of the cache);
    returns the keys removed."""
    folder = Path(cache_dir)
    if not folder.is_dir():
        return []
    if keys is None:
        removed = sorted({p.stem for p in folder.glob(f"*{PLAN_SUFFIX}")}
                         | {p.stem for p in folder.glob(f"*{RECORD_SUFFIX}")})  # fmt: skip
        for path in [*folder.glob(f"*{PLAN_SUFFIX}"), *folder.glob(f"*{RECORD_SUFFIX}"),
                     *folder.glob(".*.tmp")]:  # fmt: skip
            path.unlink(missing_ok=True)
        return removed
    for key in keys:
        for path in plan_paths(folder, key):
            path.unlink(missing_ok=True)
    return list(keys)


# ----------------------------------------------------------------------------- checks


def check_cuda(result: Any, what: str) -> Any:
    """cuda-python returns ``(cudaError_t, *results)``: raise :class:`EngineError` naming the
    call and the error unless the error is 0; return None, the one result, or the tuple."""
    if not isinstance(result, tuple) or not result:
        raise EngineError(f"CUDA {what} returned {result!r}, expected (error, ...)")
    error, rest = result[0], result[1:]
    if int(error) != 0:
        name = getattr(error, "name", str(error))
        raise EngineError(
            f"CUDA {what} failed: {name} ({int(error)})",
            hint="check the NVIDIA driver and that the GPU is visible (nvidia-smi)",
        )
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def trt_dtype_name(dtype: Any) -> str:
    """A TensorRT ``DataType`` as a numpy-style name ("float32")."""
    name = getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])
    return _TRT_DTYPES.get(name, name.lower())


def check_engine_io(
    found_inputs: Sequence[TensorSpec],
    found_outputs: Sequence[TensorSpec],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    num_profiles: int,
    profile_max_batch: int,
    tracks: int,
    path: Path,
) -> None:
    """The SDK's checks of a deserialized engine (spec §1.2): exactly one optimization profile,
    I/O names, modes (inputs vs outputs), ranks, fixed extents and dtypes as the model expects,
    and a profile whose max batch holds every track."""
    if num_profiles != 1:
        raise EngineError(
            f"the engine has {num_profiles} optimization profiles, expected 1",
            path=path, hint="rebuild it with: a2x engines build MODEL",
        )  # fmt: skip
    check_bindings(found_inputs, inputs, "input", path)
    check_bindings(found_outputs, outputs, "output", path)
    if profile_max_batch < tracks:
        raise EngineError(
            f"the engine's profile admits batches up to {profile_max_batch}, but {tracks} are "
            "needed",
            path=path, hint=f"rebuild it with: a2x engines build MODEL --max-batch {tracks}",
        )  # fmt: skip


# ----------------------------------------------------------------------------- TensorRT imports


def import_tensorrt() -> tuple[Any, Any]:
    """``(tensorrt, cuda.bindings.runtime)``, or :class:`EngineError` saying how to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError(
            "TensorRT is not available: the tensorrt package is not installed", hint=INSTALL_HINT
        ) from None
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise EngineError(
            "cuda-python (cuda.bindings) is not installed; the TensorRT engine needs it for "
            "memory, copies and streams",
            hint="pip install 'cuda-python>=12' (or pip install 'a2x[gpu]')",
        ) from None
    return trt, cudart


@lru_cache(maxsize=1)
def tensorrt_available() -> bool:
    """TensorRT and cuda-python import and a CUDA GPU is visible (for ``--backend auto``)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        if importlib.util.find_spec("cuda.bindings") is None:
            return False
        _, cudart = import_tensorrt()
        return int(check_cuda(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")) > 0
    except (EngineError, ImportError, ValueError):
        return False


def _native(handle: Any) -> int:
    """A cuda-python handle as an int (``int(obj)`` is deprecated in cuda-bindings 13)."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle

        return int(get_cuda_native_handle(handle))
    except (ImportError, TypeError):
        return int(handle)


def device_identity(cudart: Any, device: int = 0) -> tuple[str, str]:
    """``("9.0", "NVIDIA H200")``: the compute capability (part of the cache key) and name."""
    attr = cudart.cudaDeviceAttr
    major = check_cuda(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor,
                                                     device), "cudaDeviceGetAttribute")  # fmt: skip
    minor = check_cuda(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor,
                                                     device), "cudaDeviceGetAttribute")  # fmt: skip
    props = check_cuda(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else name
    return f"{major}.{minor}", str(name)


def build_plan(trt: Any, onnx_path: Path, params: BuildParams, precision: str) -> bytes:
    """Parse the ONNX, configure one optimization profile, memory pools and precision, and
    return the serialized plan.

    fp32 clears TF32 so that results match ONNX Runtime to ~1e-6; tf32 is trtexec's (and so the
    SDK's) default; fp16 needs TensorRT 10 (11 removed weak-typing precision flags).
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse the network ({errors})", path=onnx_path,
                          hint=_REDOWNLOAD)  # fmt: skip
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if names != set(params.profiles):
        raise EngineError(
            f"network inputs {sorted(names)} differ from the trt_info.json profile inputs "
            f"{sorted(params.profiles)}",
            path=onnx_path, hint="network.onnx and trt_info.json come from different models",
        )  # fmt: skip
    config = builder.create_builder_config()
    for pool, size in params.memory_pools.items():
        config.set_memory_pool_limit(getattr(trt.MemoryPoolType, _POOLS[pool]), size)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    elif precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise EngineError(
                f"TensorRT {trt.__version__} has no FP16 builder flag (removed in 11)",
                hint="use --precision fp32 or tf32, or install TensorRT 10",
            )
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, shapes in params.profiles.items():
        profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
    if config.add_optimization_profile(profile) < 0:
        raise EngineError("TensorRT rejected the trt_info.json optimization profile",
                          path=onnx_path, hint=_REDOWNLOAD)  # fmt: skip
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(
            "TensorRT could not build the engine (see the TensorRT messages above)",
            path=onnx_path, hint="try a smaller --max-batch, or --backend onnxruntime",
        )  # fmt: skip
    return bytes(plan)


def ensure_plan(
    onnx_path: Path,
    *,
    max_batch: int | None = None,
    precision: str = "fp32",
    cache_dir: Path | None = None,
    rebuild: bool = False,
    device: int = 0,
    batch_axes: Mapping[str, int] | None = None,
) -> tuple[Path, PlanRecord]:
    """The cached plan for this network, TensorRT, GPU, precision and profile; built (minutes
    for large networks) and recorded when missing or when ``rebuild``. ``batch_axes``: the
    inputs' batch axes where ``trt_info.json`` does not mark them (see :func:`build_params`)."""
    trt, cudart = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EngineError("network file missing", path=onnx_path, hint=_REDOWNLOAD)
    params = build_params(read_trt_info(onnx_path), max_batch, batch_axes)
    if params.fp16 and precision == "fp32":
        precision = "fp16"  # a trt_info_fp16.json-style folder asks for it
    for arg in params.ignored:
        log.info("TensorRT build: ignoring trtexec argument %s", arg)
    check_cuda(cudart.cudaSetDevice(device), "cudaSetDevice")
    capability, device_name = device_identity(cudart, device)
    sha = file_sha256(onnx_path)
    key = plan_key(sha, str(trt.__version__), capability, precision, params)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    plan_path, record_path = plan_paths(folder, key)
    if not rebuild and plan_path.is_file() and record_path.is_file():
        return plan_path, PlanRecord.from_json(json.loads(record_path.read_text("utf-8")))
    log.warning("building a TensorRT %s plan for %s (max batch %d); this runs once per GPU",
                precision, onnx_path, params.max_batch)  # fmt: skip
    plan = build_plan(trt, onnx_path, params, precision)
    write_plan(folder, key, plan)
    record = PlanRecord(
        key=key, onnx=str(onnx_path.resolve()), onnx_sha256=sha, tensorrt=str(trt.__version__),
        compute_capability=capability, device=device_name, precision=precision,
        max_batch=params.max_batch,
        profiles={n: p.to_json() for n, p in params.profiles.items()},
        memory_pools=dict(params.memory_pools),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        plan_bytes=len(plan),
    )  # fmt: skip
    write_record(folder, record)
    return plan_path, record


# ----------------------------------------------------------------------------- the engine


class _Buffer:
    """A pinned host array and a device allocation of the same size (profile max shape)."""

    def __init__(self, cudart: Any, shape: Shape) -> None:
        count = int(np.prod(shape))
        self.nbytes = count * 4
        self.shape = shape
        self.device = 0
        self.host_ptr = check_cuda(cudart.cudaMallocHost(self.nbytes), "cudaMallocHost")
        pointer = ctypes.cast(int(self.host_ptr), ctypes.POINTER(ctypes.c_float))
        self.host = np.ctypeslib.as_array(pointer, (count,))
        try:
            self.device = int(check_cuda(cudart.cudaMalloc(self.nbytes), "cudaMalloc"))
        except EngineError:
            self.free(cudart)
            raise

    def free(self, cudart: Any) -> None:
        if self.device:
            cudart.cudaFree(self.device)
            self.device = 0
        if self.host_ptr:
            cudart.cudaFreeHost(self.host_ptr)
            self.host_ptr = 0


class TensorRTEngine(InferenceEngine):
    """A cached TensorRT plan of ``network.onnx`` run on one CUDA stream.

    Buffers are allocated once for the profile's max batch (pinned host + device) and their
    addresses set once; each :meth:`run` copies inputs in, enqueues, copies outputs out and
    synchronizes. The first run at a batch size enqueues normally (which also flushes TensorRT's
    deferred setup), later runs at that size replay a CUDA graph of the enqueue; if capture is
    refused the engine logs it once and keeps enqueueing.

    The batch of each tensor sits at its :class:`~.base.TensorSpec` ``batch_axis`` (0, or 2 for
    the diffusion GRU state). :meth:`ensure_max_batch` lets a pipeline that knows its track count
    grow the profile (the SDK builds its engine for the number of tracks).
    """

    name = "tensorrt"
    #: host arrays in and out on a CUDA GPU, a profile that grows; each instance names its GPU
    capabilities = EngineCapabilities(
        device="cuda:0", grows_batch=True, cuda_graphs=True, precisions=PRECISIONS
    )

    def __init__(
        self,
        path: Path,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        *,
        max_batch: int | None = None,
        precision: str = "fp32",
        cache_dir: Path | None = None,
        cuda_graphs: bool = True,
        device: int = 0,
    ) -> None:
        self._trt, self._cudart = import_tensorrt()
        self.path = Path(path)
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        self._buffers: dict[str, _Buffer] = {}
        self._stream: Any = None
        self._graph_exec: Any = None
        self._graph_batch = 0
        self._batch = 0
        self._use_graphs = cuda_graphs
        self.gpu = int(device)
        self.capabilities = EngineCapabilities(
            device=f"cuda:{self.gpu}", grows_batch=True, cuda_graphs=bool(cuda_graphs),
            precisions=PRECISIONS,
        )  # fmt: skip
        self._options = {"precision": precision, "cache_dir": cache_dir, "cuda_graphs": cuda_graphs}
        self._axes = {t.name: t.batch_axis for t in (*self.inputs, *self.outputs)}
        self.plan_path, self.record = ensure_plan(
            self.path, max_batch=max_batch, precision=precision, cache_dir=cache_dir,
            device=device, batch_axes=self._axes,
        )  # fmt: skip
        trt = self._trt
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self._engine is None:  # stale or foreign plan: rebuild once
            log.warning("cached TensorRT plan %s does not load; rebuilding", self.plan_path)
            self.plan_path, self.record = ensure_plan(
                self.path, max_batch=max_batch, precision=precision, cache_dir=cache_dir,
                rebuild=True, device=device, batch_axes=self._axes,
            )  # fmt: skip
            self._engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
            if self._engine is None:
                raise EngineError("TensorRT cannot load the plan it just built",
                                  path=self.plan_path, hint=INSTALL_HINT)  # fmt: skip
        found_in, found_out, max_shapes = self._engine_io()
        self.max_batch = min(shape[self._axes.get(name, 0)] for name, shape in max_shapes.items())
        check_engine_io(
            found_in, found_out, self.inputs, self.outputs,
            num_profiles=int(self._engine.num_optimization_profiles),
            profile_max_batch=self.max_batch, tracks=max_batch or 1, path=self.plan_path,
        )  # fmt: skip
        self._context = self._engine.create_execution_context()
        try:
            self._stream = check_cuda(
                self._cudart.cudaStreamCreateWithFlags(self._cudart.cudaStreamNonBlocking),
                "cudaStreamCreateWithFlags",
            )
            for name, shape in max_shapes.items():
                self._buffers[name] = _Buffer(self._cudart, shape)
                if not self._context.set_tensor_address(name, self._buffers[name].device):
                    raise EngineError(f"TensorRT refused the address of {name!r}",
                                      path=self.plan_path)  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _engine_io(self) -> tuple[list[TensorSpec], list[TensorSpec], dict[str, Shape]]:
        """Inputs and outputs of the deserialized engine, and each tensor's max shape (inputs:
        profile 0's max; outputs: the engine shape with the batch at the profile max)."""
        trt, engine = self._trt, self._engine
        found_in, found_out = [], []
        max_shapes: dict[str, Shape] = {}
        profile_batch = None
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            spec = TensorSpec(name, tuple(None if d < 0 else d for d in shape),
                              trt_dtype_name(engine.get_tensor_dtype(name)))  # fmt: skip
            axis = self._axes.get(name, 0)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                found_in.append(spec)
                high = tuple(int(d) for d in engine.get_tensor_profile_shape(name, 0)[2])
                max_shapes[name] = high
                batch = high[axis] if axis < len(high) else 1
                profile_batch = batch if profile_batch is None else min(profile_batch, batch)
            else:
                found_out.append(spec)
        for spec in found_out:
            axis = self._axes.get(spec.name, 0)
            if any(d is None for i, d in enumerate(spec.shape) if i != axis):
                raise EngineError(f"output {spec.describe()} has a dynamic non-batch extent",
                                  path=self.plan_path)  # fmt: skip
            max_shapes[spec.name] = tuple((profile_batch or 1) if d is None else int(d)
                                          for d in spec.shape)  # fmt: skip
        return found_in, found_out, max_shapes

    def _shape(self, name: str, template: Sequence[int | None], batch: int) -> Shape:
        """``template`` with ``batch`` at tensor ``name``'s batch axis."""
        axis = self._axes.get(name, 0)
        return tuple(batch if i == axis else int(d or 0) for i, d in enumerate(template))

    def ensure_max_batch(self, batch: int) -> None:
        """Make one :meth:`run` hold ``batch`` rows: when the profile is smaller, load (or build
        once and cache) the plan for ``max_batch = batch`` in place of this one."""
        if self.max_batch is not None and int(batch) <= self.max_batch:
            return
        opts = self._options
        log.info("TensorRT: growing the profile of %s to batch %d", self.path, batch)
        self.close()
        self.__init__(self.path, self.inputs, self.outputs, max_batch=int(batch),
                      precision=opts["precision"], cache_dir=opts["cache_dir"],
                      cuda_graphs=opts["cuda_graphs"], device=self.gpu)  # fmt: skip

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = self.check_feeds(feeds)
        cudart, stream = self._cudart, self._stream
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for spec in self.inputs:
            buf = self._buffers[spec.name]
            data = np.ascontiguousarray(feeds[spec.name]).reshape(-1)
            buf.host[: data.size] = data
            check_cuda(cudart.cudaMemcpyAsync(buf.device, buf.host_ptr, data.size * 4, to_device,
                                              stream), "cudaMemcpyAsync")  # fmt: skip
        if batch != self._batch:
            for spec in self.inputs:
                if not self._context.set_input_shape(spec.name,
                                                     self._shape(spec.name, spec.shape, batch)):
                    raise EngineError(f"TensorRT refused batch {batch} for {spec.name!r}",
                                      path=self.plan_path)  # fmt: skip
            self._batch = batch
        if self._graph_exec is not None and self._graph_batch == batch:
            check_cuda(cudart.cudaGraphLaunch(self._graph_exec, stream), "cudaGraphLaunch")
        else:
            self._enqueue()
        results = {}
        for spec in self.outputs:
            buf = self._buffers[spec.name]
            shape = self._shape(spec.name, buf.shape, batch)
            nbytes = int(np.prod(shape)) * 4
            check_cuda(cudart.cudaMemcpyAsync(buf.host_ptr, buf.device, nbytes, to_host, stream),
                       "cudaMemcpyAsync")  # fmt: skip
            results[spec.name] = shape
        check_cuda(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        out = {n: self._buffers[n].host[: int(np.prod(s))].reshape(s).copy()
               for n, s in results.items()}  # fmt: skip
        if self._use_graphs and self._graph_batch != batch:
            self._capture(batch)
        return out

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(_native(self._stream)):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT messages)",
                              path=self.plan_path)  # fmt: skip

    def _capture(self, batch: int) -> None:
        """Capture one enqueue at ``batch`` into a CUDA graph (after a plain enqueue at that
        shape has run and been synchronized, as trtexec does); a refusal disables graphs."""
        cudart, stream = self._cudart, self._stream
        self._drop_graph()
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        try:
            check_cuda(cudart.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
        except EngineError as error:
            return self._no_graphs(str(error))
        enqueued = bool(self._context.execute_async_v3(_native(stream)))
        ended = cudart.cudaStreamEndCapture(stream)  # always end capture, even after a refusal
        graph = ended[1] if len(ended) > 1 else None
        try:
            check_cuda(ended, "cudaStreamEndCapture")
            if not enqueued:
                return self._no_graphs("TensorRT refused to enqueue inside stream capture")
            self._graph_exec = check_cuda(cudart.cudaGraphInstantiate(graph, 0),
                                          "cudaGraphInstantiate")  # fmt: skip
            self._graph_batch = batch
        except EngineError as error:
            self._no_graphs(str(error))
        finally:
            if graph is not None:
                cudart.cudaGraphDestroy(graph)

    def _no_graphs(self, why: str) -> None:
        log.warning("TensorRT: CUDA graph capture unavailable (%s); using plain enqueue", why)
        self._use_graphs = False
        self._graph_batch = 0

    def _drop_graph(self) -> None:
        if self._graph_exec is not None:
            self._cudart.cudaGraphExecDestroy(self._graph_exec)
            self._graph_exec = None
            self._graph_batch = 0

    def close(self) -> None:
        """Free graphs, buffers and the stream after a final synchronize; idempotent."""
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        if self._stream is not None:
            cudart.cudaStreamSynchronize(self._stream)
        self._drop_graph()
        for buf in self._buffers.values():
            buf.free(cudart)
        self._buffers = {}
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = self._engine = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "plan": str(self.plan_path),
            "precision": self.record.precision,
            "tensorrt": self.record.tensorrt,
            "device": f"{self.record.device} (sm {self.record.compute_capability})",
            "cuda_graphs": self._use_graphs,
        }
