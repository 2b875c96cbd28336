"""``a2x engines build | list | clear``: the TensorRT plan cache from the command line.

``list`` and ``clear`` only read and delete files, so they work without TensorRT; ``build``
needs TensorRT and a GPU and says how to install them when they are missing. ``cli.py`` wires
this in with :func:`add_parser` and :func:`run`; ``python -m a2x_core.engines_cli`` runs it alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .backends import tensorrt as trt_cache
from .errors import A2XError, ModelError, ParameterError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``engines`` command (with build/list/clear) to an ``a2x`` subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache", type=Path, help=f"plan cache folder (default: ${trt_cache.CACHE_ENV} or "
        "~/.cache/a2x/engines)",
    )  # fmt: skip
    engines = subparsers.add_parser("engines", help="build, list or clear cached TensorRT plans")
    actions = engines.add_subparsers(dest="engines_command", required=True)
    build = actions.add_parser(
        "build", parents=[common], help="build the plan of a model folder for this GPU"
    )
    build.add_argument("model", help="PATH/model.json, its folder, or a network.onnx")
    build.add_argument("--fp16", action="store_true", help="FP16 kernels (TensorRT 10 only)")
    build.add_argument("--tf32", action="store_true",
                       help="allow TF32 (trtexec's default; faster, ~1e-3 error)")  # fmt: skip
    build.add_argument("--max-batch", type=int,
                       help="largest batch (default trt_info.json's); a2x animate asks for tracks "
                       "x 16 frames per call rounded up to a power of two, at most 256")  # fmt: skip
    build.add_argument("--rebuild", action="store_true", help="build even when cached")
    actions.add_parser("list", parents=[common], help="list cached plans")
    clear = actions.add_parser("clear", parents=[common], help="delete cached plans")
    which = clear.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every plan of the cache")
    which.add_argument(
        "model", nargs="?", help="the plans of this model (model.json, folder, onnx)"
    )
    return engines


def run(args: argparse.Namespace) -> int:
    """Run ``a2x engines ...``; errors are :class:`A2XError` (the CLI prints them, exit 2)."""
    cache = Path(args.cache).expanduser() if args.cache else trt_cache.default_cache_dir()
    if args.engines_command == "build":
        return _build(args, cache)
    if args.engines_command == "list":
        return _list(cache)
    return _clear(args, cache)


def network_of(model: str | Path) -> Path:
    """The ``network.onnx`` of a model given as model.json, its folder or the ONNX itself."""
    path = Path(model).expanduser()
    onnx = path if path.suffix == ".onnx" else (path if path.is_dir() else path.parent)
    onnx = onnx if onnx.suffix == ".onnx" else onnx / "network.onnx"
    if not onnx.is_file():
        raise ModelError("has no network.onnx", path=path,
                         hint="give PATH/model.json of an Audio2Face-3D model folder")  # fmt: skip
    return onnx


def _build(args: argparse.Namespace, cache: Path) -> int:
    if args.fp16 and args.tf32:
        raise ParameterError("--fp16 and --tf32 exclude each other", hint="give one of them")
    if args.max_batch is not None and args.max_batch < 1:
        raise ParameterError(f"--max-batch must be at least 1, got {args.max_batch}")
    onnx = network_of(args.model)
    trt_cache.import_tensorrt()  # says how to install before any work
    precision = "fp16" if args.fp16 else "tf32" if args.tf32 else "fp32"
    path, record = trt_cache.ensure_plan(
        onnx, max_batch=args.max_batch, precision=precision, cache_dir=cache, rebuild=args.rebuild
    )
    print(f"{path}\t{record.precision}\tmax batch {record.max_batch}\tTensorRT {record.tensorrt}"
          f"\t{record.device} (sm {record.compute_capability})")  # fmt: skip
    return 0


def _list(cache: Path) -> int:
    records = trt_cache.plan_index(cache)
    if not records:
        print(f"no cached plans in {cache}", file=sys.stderr)
        return 0
    print("key\tprecision\tmax_batch\ttensorrt\tsm\tMB\tcreated\tnetwork")
    for r in records:
        print(f"{r.key[:12]}\t{r.precision}\t{r.max_batch}\t{r.tensorrt}\t"
              f"{r.compute_capability}\t{r.plan_bytes / 2**20:.1f}\t{r.created}\t{r.onnx}")  # fmt: skip
    return 0


def _clear(args: argparse.Namespace, cache: Path) -> int:
    if args.all:
        removed = trt_cache.remove_plans(cache)
    else:
        onnx = network_of(args.model)
        sha = trt_cache.file_sha256(onnx)
        where = str(onnx.resolve())
        keys = [
            r.key for r in trt_cache.plan_index(cache) if r.onnx_sha256 == sha or r.onnx == where
        ]
        removed = trt_cache.remove_plans(cache, keys)
    print(f"removed {len(removed)} plan(s) from {cache}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m a2x_core.engines_cli ...`` (same as ``a2x engines ...``)."""
    parser = argparse.ArgumentParser(prog="a2x")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except A2XError as error:
        print(f"a2x: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
