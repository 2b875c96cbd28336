"""The ``a2x`` command line: ``animate``, ``live``, ``serve``, ``batch``, ``preview``, ``render``,
``info``, ``models``.

Bad input never shows a traceback: every :class:`A2XError` becomes one line on stderr and
exit code 2 (130 when cancelled with Ctrl-C, 143 on SIGTERM, 141 when stdout's reader has gone,
as with ``| head``; cancelled runs leave no file behind).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import A2XError, CancelledError, OutputError, ParameterError
from .version import __version__

log = logging.getLogger("a2x_core")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2x", description="Speech audio → ARKit-52 facial animation (JSON, Live Link Face CSV, NPZ)."
    )
    parser.add_argument("--version", action="version", version=f"a2x {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("animate", help="animate one or more audio files")
    run.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, mp3; any rate/channels)")
    run.add_argument(
        "-o", "--output", required=True, action="append",
        help="output file (.json, .csv, .npz; repeat for several formats) for one clip, "
        "or a folder for several clips",
    )  # fmt: skip
    run.add_argument("--raw-rate", type=int, metavar="HZ",
                     help="headerless audio (.raw, .pcm): its sample rate; needs --raw-format")  # fmt: skip
    run.add_argument("--raw-format", metavar="FORMAT", help="headerless mono audio: its sample "
                     "format, one of s8, u8, s16le, s16be, s24le, s24be, s32le, s32be, f32le, "
                     "f32be, f64le, f64be")  # fmt: skip
    run.add_argument("--model", default="default",
                     help="'default' (embedded lip-sync, any language: see --language) or PATH/model.json "
                     "of an Audio2Face-3D model (default: default)")  # fmt: skip
    run.add_argument("--fps", default="60", help="frame rate, N or N/D, e.g. 30000/1001 (default 60)")
    words = run.add_mutually_exclusive_group()
    words.add_argument("--transcript", help="the exact words spoken (one clip only)")
    words.add_argument("--transcript-file", type=Path, help="a text file with the exact words")
    run.add_argument("--language", default="auto", metavar="CODE",
                     help="default model: the spoken language, ISO 639-1 (en, de, ru, zh, ...) "
                     "or auto (default: from the transcript; English without one)")  # fmt: skip
    run.add_argument("--start", type=float, help="start of the part to animate, in seconds")
    run.add_argument("--end", type=float, help="end of the part to animate, in seconds")
    run.add_argument("--plot", type=Path, help="also write a PNG of the main curves (one clip only)")
    run.add_argument("--preview", type=Path, metavar="VIDEO.mp4",
                     help="also write a preview video: a face driven by the curves, the curves "
                     "and phones below, the clip's sound (one clip only)")  # fmt: skip
    run.add_argument("--format", choices=("json", "csv", "npz"), default="json",
                     help="file format when -o is a folder (default json)")  # fmt: skip
    run.add_argument("--fast", action="store_true", help="faster, slightly less accurate lip-sync")
    run.add_argument("--seed", type=int, default=0, help="seed for blinks and saccades (default 0)")
    run.add_argument("--strength", type=float, default=1.0, help="overall weight multiplier (default 1)")
    run.add_argument("--smoothing", type=float, default=0.0,
                     help="extra zero-phase smoothing in seconds (default 0); lip closures "
                     "(p b m, f v) and blinks are kept at any value, the rest softens: "
                     "0.02-0.05 takes out jitter, beyond 0.1 vowels blur into each other")  # fmt: skip
    run.add_argument("--no-blinks", action="store_true", help="no procedural blinks")
    run.add_argument("--head-motion", type=float, default=1.0, metavar="AMOUNT",
                     help="voice-driven head motion and gaze of the default model: 1 natural "
                     "(default), 0 none, up to 3")  # fmt: skip
    run.add_argument("--emotion", action="append", default=[], metavar="NAME=VALUE",
                     help="emotion input for models that take one, e.g. joy=0.7 (repeatable)")  # fmt: skip
    run.add_argument("--emotion-file", type=Path, help="emotion track file (JSON or CSV)")
    _add_emotion_model_arguments(run)
    run.add_argument("--emotion-mix", choices=("blend", "override"), default="blend",
                     help="--emotion with --emotion-model: blend = A2E's preferred emotion "
                     "(default), override = replaces the detected emotions it names")  # fmt: skip
    run.add_argument("--identity", metavar="NAME",
                     help="diffusion models: the identity to animate (default: the first)")  # fmt: skip
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a model parameter, e.g. input_strength=1.0 (repeatable)")  # fmt: skip
    run.add_argument("--geometry", action="store_true", help="NPZ: also store per-frame geometry")
    _add_engine_arguments(run)
    run.add_argument("--compile", dest="compile_network", action="store_true",
                     help="torch engine on CUDA, regression models: torch.compile the network "
                     "(seconds to start, highest throughput)")  # fmt: skip
    run.add_argument("--overwrite", action="store_true", help="replace existing output files")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")

    info = commands.add_parser("info", help="describe a model")
    info.add_argument("model", help="'default' or PATH/model.json")
    info.add_argument("--json", action="store_true", help="print JSON")

    _add_live_parser(commands)
    _add_serve_parser(commands)
    _add_preview_parser(commands)
    _add_render_parser(commands)


    _add_batch_parser(commands)

    models = commands.add_parser("models", help="list available models")
    models.add_argument("dirs", nargs="*", type=Path, help="extra folders to search for model.json")

    from . import engines_cli

    engines_cli.add_parser(commands)
    return parser


def _add_engine_arguments(command: Any, gpu: bool = True,
                          threads: str = "CPU threads for inference (default: all)") -> None:  # fmt: skip
    """The inference engine's options, the same for animate, live, serve and batch (``gpu``:
    also the device and the precision)."""
    from .engine_choices import BACKENDS, PRECISIONS

    command.add_argument("--engine", "--backend", dest="backend", default="auto",
                         choices=BACKENDS, help="inference engine (default auto: TensorRT, "
                         "then PyTorch on a GPU, else ONNX Runtime; the choice is recorded in "
                         "the output)")  # fmt: skip
    if gpu:
        command.add_argument("--device", default="auto",
                             help="auto, cpu, cuda or cuda:N (GPU engines)")  # fmt: skip
        command.add_argument("--precision", default="fp32", choices=PRECISIONS,
                             help="GPU engines only; fp32 (default) matches the CPU exactly")  # fmt: skip
    command.add_argument("--threads", type=int, help=threads)


def _add_stream_language_argument(command: Any) -> None:
    """``--language`` of the commands that stream (live, serve): a stream has no transcript."""
    command.add_argument("--language", default="auto", metavar="CODE",
                         help="default model: the spoken language, ISO 639-1 (en, de, ru, zh, "
                         "...); auto/en: English word recognition (default), another code: "
                         "the language-independent phone loop")  # fmt: skip


def _add_emotion_model_arguments(run: Any) -> None:
    """Audio2Emotion's options, the same for ``animate`` and ``live``."""
    run.add_argument("--emotion-model", metavar="PATH", help="Audio2Emotion model.json: detect "
                     "each clip's emotions from its audio (Audio2Face-3D models)")  # fmt: skip
    run.add_argument("--emotion-window", type=int, default=60000, metavar="SAMPLES",
                     help="Audio2Emotion window in 16 kHz samples (default 60000 = 3.75 s)")  # fmt: skip
    run.add_argument("--emotion-cadence", choices=("sdk", "per-frame"), default="sdk",
                     help="when Audio2Emotion runs: sdk = at 30 fps, skip 30, as NVIDIA's sample "
                     "and Maya-ACE (default); per-frame = at --fps, one inference per frame")  # fmt: skip
    run.add_argument("--emotion-skip", type=int, default=None, metavar="N",
                     help="frames that reuse one Audio2Emotion inference "
                     "(default: 30 with --emotion-cadence sdk, 0 with per-frame)")  # fmt: skip
    run.add_argument("--emotion-param", action="append", default=[], metavar="KEY=VALUE",
                     help="override an Audio2Emotion post_processing_config key, "
                     "e.g. emotion_strength=1.0 (repeatable)")  # fmt: skip


def _add_live_parser(commands: Any) -> None:
    """``a2x live``: the model options are animate's (same names, same parsing in ``_options``);
    the ones a stream does not use keep animate's defaults."""
    from .live.outputs import LIVELINK_DEFAULT_PORT, VMC_DEFAULT_PORT

    live = commands.add_parser("live", help="animate a microphone, a file at real-time pace or "
                               "stdin PCM, to Live Link Face / VMC / JSON lines")  # fmt: skip
    live.add_argument("--source", metavar="FILE|-", help="an audio file played at real-time "
                      "pace, or - for headerless PCM on stdin (default: the microphone)")  # fmt: skip
    live.add_argument("--device", dest="input_device", metavar="NAME",
                      help="microphone: the input device (default: the system's)")  # fmt: skip
    live.add_argument("--duration", type=float, metavar="SECONDS",
                      help="stop after this much audio (default: the end of the source, or "
                      "Ctrl-C)")  # fmt: skip
    live.add_argument("--as-fast-as-possible", action="store_true",
                      help="--source FILE: push blocks without waiting for the clock (tests)")
    live.add_argument("--block-ms", type=float, default=10.0, metavar="MS",  # live.runner.BLOCK_S
                      help="source block length (default 10; 5..100): a frame waits up to one "
                      "block for its audio; longer blocks cost fewer calls and add latency")  # fmt: skip
    live.add_argument("--int8", metavar="SPEECH", help="Audio2Face-3D regression on ONNX "
                      "Runtime: run an int8 network calibrated on this speech file (about half "
                      "the CPU per frame; results change slightly: check them on your model)")  # fmt: skip
    live.add_argument("--raw-rate", type=int, metavar="HZ", help="--source -: its sample rate")
    live.add_argument("--raw-format", metavar="FORMAT",
                      help="--source -: its sample format, e.g. s16le, f32le")  # fmt: skip
    live.add_argument("--model", default="default",
                      help="'default' or PATH/model.json of an Audio2Face-3D model")
    live.add_argument("--fps", default="60", help="frame rate, N or N/D (default 60)")
    _add_stream_language_argument(live)
    live.add_argument("--emotion", action="append", default=[], metavar="NAME=VALUE",
                      help="emotion input for models that take one, e.g. joy=0.7 (repeatable)")
    live.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                      help="override a model parameter (repeatable)")
    _add_emotion_model_arguments(live)
    live.add_argument("--seed", type=int, default=0, help="seed for blinks and saccades")
    live.add_argument("--no-blinks", action="store_true", help="no procedural blinks")
    live.add_argument("--head-motion", type=float, default=1.0, metavar="AMOUNT",
                      help="head motion and gaze amplitude (default model; 0 = none)")
    _add_engine_arguments(live, gpu=False)  # live's --device is the sound input
    live.add_argument("--livelink", action="append", default=[], metavar="HOST[:PORT]",
                      help=f"send Live Link Face packets (Unreal; default port "
                      f"{LIVELINK_DEFAULT_PORT}; repeatable)")  # fmt: skip
    live.add_argument("--vmc", action="append", default=[], metavar="HOST[:PORT]",
                      help=f"send VMC/OSC blend shapes (default port {VMC_DEFAULT_PORT}; "
                      "repeatable)")  # fmt: skip
    live.add_argument("--jsonl", metavar="-|FILE", help="one JSON object per frame and line")
    live.add_argument("--delay-audio", nargs="?", const="auto", metavar="MS",
                      help="play the input back delayed (default: the model's look-ahead + 50 "
                      "ms) so lips and sound arrive together")  # fmt: skip
    live.add_argument("--audio-out", metavar="NAME",
                      help="--delay-audio: the output device (default: the system's)")
    live.add_argument("--record", type=Path, metavar="TAKE",
                      help="write the whole take when it stops (.json, .csv, .npz; atomic)")
    live.add_argument("--preview", type=Path, metavar="VIDEO.mp4",
                      help="when it stops, also write a preview video of the take with its "
                      "sound (the preview extra)")  # fmt: skip
    live.add_argument("--overwrite", action="store_true", help="replace existing output files")
    live.add_argument("-q", "--quiet", action="store_true", help="no status line, no summary")
    live.set_defaults(
        audio=[], transcript=None, transcript_file=None, start=None, end=None, fast=False,
        strength=1.0, smoothing=0.0, emotion_file=None, emotion_mix="blend", identity=None, geometry=False, device="auto", precision="fp32",
        compile_network=False,
    )  # fmt: skip


def _add_serve_parser(commands: Any) -> None:
    """``a2x serve``: the NIM-compatible gRPC service and the HTTP API (docs/service.md)."""
    serve = commands.add_parser("serve", help="serve a model: NIM-compatible gRPC "
                                "(Audio2Face-3D clients) and an HTTP API")  # fmt: skip
    serve.add_argument("--model", default="default",
                       help="'default' or PATH/model.json of an Audio2Face-3D model")
    serve.add_argument("--fps", default="30", help="output frame rate, N or N/D (default 30)")
    _add_stream_language_argument(serve)
    serve.add_argument("--emotion-model", metavar="PATH",
                       help="Audio2Emotion model.json: detect each stream's emotions from its "
                       "audio, as the NIM does (the header's emotion_post_processing_params "
                       "apply to it)")  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--grpc-port", type=int, default=52000,
                       help="NIM gRPC port (default 52000, the NIM's); 0 = no gRPC")
    serve.add_argument("--http-port", type=int, default=8000,
                       help="HTTP port (default 8000); 0 = no HTTP")
    serve.add_argument("--token", default=os.environ.get("A2X_SERVE_TOKEN"),
                       help="require 'authorization: Bearer TOKEN' on every call "
                       "(default: $A2X_SERVE_TOKEN, else none)")  # fmt: skip
    serve.add_argument("--tls-cert", type=Path, help="gRPC over TLS: the server certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="gRPC over TLS: the private key (PEM)")
    serve.add_argument("--max-streams", type=int, default=10,
                       help="concurrent streams and uploads (default 10, as the NIM)")
    serve.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="end a stream that sends nothing this long (default 30)")
    serve.add_argument("--max-stream-seconds", type=float, default=300.0,
                       help="longest audio per stream (default 300, as the NIM)")
    serve.add_argument("--max-request-mb", type=float, default=64.0,
                       help="largest HTTP upload in MB (default 64)")
    serve.add_argument("--grace", type=float, default=25.0, metavar="SECONDS",
                       help="on Ctrl-C/SIGTERM, how long running streams may take to finish "
                       "(default 25: inside Kubernetes' 30 s before SIGKILL)")  # fmt: skip
    _add_engine_arguments(serve, threads="CPU threads for inference per process (default: all)")
    serve.add_argument("--processes", type=int, default=1, metavar="N",
                       help="N server processes on the same ports (SO_REUSEPORT; each loads "
                       "the model; --max-streams counts them all): one Python process "
                       "delivers a few thousand frames/s")  # fmt: skip
    serve.add_argument("-q", "--quiet", action="store_true", help="no start-up lines")


def _add_batch_parser(commands: Any) -> None:
    """``a2x batch``: the model options are animate's (same names, parsed by ``_options``);
    a manifest row can change the model, transcript, language, identity, emotions and fps per
    clip."""
    batch = commands.add_parser("batch", help="animate a manifest or folder of clips on a Dask "
                                "cluster (local or remote); resumable, with a report")  # fmt: skip
    batch.add_argument("source", metavar="MANIFEST|FOLDER",
                       help="a .csv or .jsonl manifest (columns: audio, output, model, "
                       "transcript, language, identity, emotions, fps, rig, emotion_model) or "
                       "a folder of audio files")  # fmt: skip
    batch.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR",
                       help="output folder: one file per clip and format, report.csv/.json")  # fmt: skip
    batch.add_argument("--format", action="append", choices=("json", "csv", "npz"),
                       help="output format (repeatable; default json)")
    batch.add_argument("--model", default="default",
                       help="the model of rows without one: 'default' or PATH/model.json")
    batch.add_argument("--fps", default="60", help="frame rate of rows without one (default 60)")
    batch.add_argument("--fast", action="store_true", help="faster, slightly less accurate lip-sync")
    batch.add_argument("--language", default="auto", metavar="CODE",
                       help="default model: the spoken language of rows without one, ISO 639-1 "
                       "(en, de, ru, zh, ...) or auto (default: from the transcript; English "
                       "without one)")  # fmt: skip
    batch.add_argument("--seed", type=int, default=0, help="seed for blinks and saccades")
    batch.add_argument("--strength", type=float, default=1.0, help="overall weight multiplier")
    batch.add_argument("--smoothing", type=float, default=0.0, help="extra smoothing in seconds")
    batch.add_argument("--no-blinks", action="store_true", help="no procedural blinks")
    batch.add_argument("--emotion", action="append", default=[], metavar="NAME=VALUE",
                       help="emotion input of rows without one (repeatable)")
    batch.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="override a model parameter (repeatable)")
    _add_emotion_model_arguments(batch)
    batch.add_argument("--emotion-mix", choices=("blend", "override"), default="blend",
                       help="--emotion with --emotion-model: blend (default) or override")
    _add_engine_arguments(batch, threads="CPU threads for inference per worker")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="local cluster of N worker processes (default: one per core; with "
                       "--device cuda one per GPU where dask-cuda is installed, else one)")  # fmt: skip
    where.add_argument("--scheduler", metavar="tcp://HOST:8786",
                       help="an existing Dask cluster (workers need a2x installed and the "
                       "audio and OUTDIR paths)")  # fmt: skip
    batch.add_argument("--chunk", type=int, metavar="N",
                       help="clips per task, animated in one batched call (default 4 on CPU, "
                       "256 with --device cuda)")  # fmt: skip
    batch.add_argument("--step", type=int, metavar="N",
                       help="clips per batched call inside a task (default: the whole task); "
                       "one step's clips are written while the next step runs")  # fmt: skip
    batch.add_argument("--retries", type=int, default=1,
                       help="re-runs of a task that raised (default 1)")
    batch.add_argument("--blend", type=Path, metavar="SCENE.blend",
                       help="also bake each clip into its own copy of this scene, OUTDIR/CLIP.blend")
    batch.add_argument("--object", dest="object_name", metavar="NAME",
                       help="--blend: the object with the shape keys (or a 'rig' column)")
    blender = batch.add_mutually_exclusive_group()
    blender.add_argument("--blender-python", metavar="PYTHON",
                         help="--blend: a Python with the bpy module (Blender as a module)")
    blender.add_argument("--blender-exe", metavar="BLENDER",
                         help="--blend: Blender's binary, run in background mode")
    batch.add_argument("--overwrite", action="store_true",
                       help="redo every clip and replace files no batch wrote")
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    _add_batch_render_options(batch)
    batch.set_defaults(
        audio=[], transcript=None, transcript_file=None, start=None, end=None, emotion_file=None,
        identity=None, geometry=False, compile_network=False,
    )  # fmt: skip


def _add_batch_render_options(batch: Any) -> None:
    """``a2x batch --render/--export-fbx``: each clip through ``a2x render`` on the --blend rig."""
    batch.add_argument("--render", action="store_true",
                       help="--blend: render each clip with the scene's camera to OUTDIR/CLIP.mp4 "
                       "(as a2x render; instead of the .blend copy)")  # fmt: skip
    batch.add_argument("--export-fbx", action="store_true",
                       help="--blend: export each clip's baked rig to OUTDIR/CLIP.fbx (as a2x "
                       "render --export-fbx; instead of the .blend copy)")  # fmt: skip
    batch.add_argument("--render-engine", default="workbench",
                       choices=("workbench", "eevee", "cycles"), help="--render: render engine")
    batch.add_argument("--resolution-percentage", type=int, metavar="PCT",
                       help="--render: render at this share of the scene's resolution")


def _batch_render(args: argparse.Namespace) -> dict[str, Any] | None:
    from .batch.render_step import render_settings

    return render_settings(video=args.render, fbx=args.export_fbx, blend=args.blend,
                           engine=args.render_engine,
                           resolution_percentage=args.resolution_percentage)  # fmt: skip


class _ProgressBar:
    """A tqdm bar on stderr that only appears for work longer than a second
    (``A2X_PROGRESS_DELAY`` changes that delay)."""

    def __init__(self, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            class Bar(tqdm):  # type: ignore[type-arg]
                # No monitor thread: the bar is updated often anyway, and a second thread
                # would keep the default model's workers from starting by fork (parallel.py).
                monitor_interval = 0

            delay = float(os.environ.get("A2X_PROGRESS_DELAY", "1.0"))
            self._bar = Bar(total=1000, delay=delay, file=sys.stderr, unit="‰", leave=False,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")  # fmt: skip

    def __call__(self, progress: Any) -> None:
        if self._bar is not None:
            self._bar.set_description_str(progress.stage[:24].ljust(24), refresh=False)
            self._bar.update(int(progress.fraction * 1000) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _options(args: argparse.Namespace) -> Any:
    from .options import InferenceOptions

    transcript = args.transcript
    if args.transcript_file is not None:
        from .inputs import read_text_file

        transcript = read_text_file(args.transcript_file, what="transcript", flag="--transcript-file")
    if transcript is not None and len(args.audio) > 1:
        raise ParameterError("--transcript applies to one clip only", hint="animate the clips one at a time")
    emotions: tuple[Any, ...] = ()
    parameters: dict[str, Any] = {}
    emotion_parameters: dict[str, Any] = {}
    if args.emotion or args.emotion_file:
        from .models.emotion_input import load_emotion_track, parse_emotion_args

        if args.emotion and args.emotion_file:
            raise ParameterError("use --emotion or --emotion-file, not both")
        emotions = parse_emotion_args(args.emotion) if args.emotion else load_emotion_track(args.emotion_file)
    if args.param or args.emotion_param:
        from .models.emotion_input import parse_parameter_args

        parameters = parse_parameter_args(args.param)
        emotion_parameters = parse_parameter_args(args.emotion_param, flag="--emotion-param")
    return InferenceOptions(
        fps=args.fps, start_s=args.start, end_s=args.end, transcript=transcript, fast=args.fast,
        language=getattr(args, "language", "auto"), seed=args.seed, strength=args.strength, smoothing_s=args.smoothing,
        blinks=not args.no_blinks, parameters=parameters, emotions=emotions,
        head_motion=getattr(args, "head_motion", 1.0),
        geometry=args.geometry, backend=args.backend, threads=args.threads,
        device=args.device, precision=args.precision, identity=args.identity,
        compile_network=args.compile_network,
        emotion_window=args.emotion_window, emotion_skip=args.emotion_skip,
        emotion_cadence=args.emotion_cadence,
        emotion_mix=args.emotion_mix, emotion_parameters=emotion_parameters,
    )  # fmt: skip


def _is_folder_output(output: str, clips: int) -> bool:
    """``-o`` names a folder when it ends with a slash, has no extension, or already is one."""
    if output.endswith(("/", "\\")) or not Path(output).suffix or os.path.isdir(output):
        return True
    from .export.writers import FORMATS

    if clips > 1 and Path(output).suffix.lower() not in FORMATS:
        return True  # e.g. -o takes.v2 for several clips: a folder with a dot in its name
    return False


def _output_paths(args: argparse.Namespace, created: list[Path]) -> list[list[Path]]:
    """Output files per clip, all checked before any work runs; folders made for them are added
    to ``created`` (removed again when the run fails)."""
    from .export.writers import check_new_file, check_output_path, make_output_folder

    clips = len(args.audio)
    is_folder = [_is_folder_output(o, clips) for o in args.output]
    if clips == 1 and not any(is_folder):
        paths = [Path(o) for o in args.output]
        if len(set(paths)) < len(paths):
            raise ParameterError("the same -o is given twice", hint="name each output once")
        for path in paths:
            check_output_path(path, overwrite=args.overwrite)
        if getattr(args, "preview", None) is not None:
            from .preview.video import check_preview_path

            check_preview_path(args.preview, overwrite=args.overwrite)
        if args.plot is not None:
            if args.plot.suffix.lower() != ".png":
                raise OutputError("--plot writes a PNG", path=args.plot, hint="name it *.png")
            check_new_file(args.plot, overwrite=args.overwrite)
        return [paths]
    if clips > 1 and not all(is_folder):
        files = [o for o, folder in zip(args.output, is_folder, strict=True) if not folder]
        raise ParameterError(f"{clips} clips need an output folder, not the file name {files[0]}",
                             hint=f"use -o {Path(files[0]).stem}/ --format "
                             f"{Path(files[0]).suffix.lower().lstrip('.')}")  # fmt: skip
    if len(args.output) != 1:
        raise ParameterError("several clips need exactly one output folder", hint="use -o out/")
    if args.plot is not None or args.preview is not None:
        raise ParameterError("--plot and --preview apply to one clip with a file output")
    output = Path(args.output[0])
    stems = [Path(a).stem for a in args.audio]
    duplicates = {s for s in stems if stems.count(s) > 1}
    if duplicates:
        raise ParameterError(f"several clips share the name(s) {', '.join(sorted(duplicates))}",
                             hint="rename them or animate them in separate runs")  # fmt: skip
    created.extend(make_output_folder(output))
    per_clip = [[output / f"{stem}.{args.format}"] for stem in stems]
    for paths in per_clip:
        check_output_path(paths[0], overwrite=args.overwrite)
    return per_clip


def _export_geometry(animator: Any, options: Any, outputs: list[list[Path]]) -> Any:
    """An Audio2Face model's own head for the USD/glTF outputs (None: none of those, or the
    default model, which has no head)."""
    from .export.writers import GEOMETRY_FORMATS

    if not any(Path(p).suffix.lower() in GEOMETRY_FORMATS for paths in outputs for p in paths):
        return None
    from .models.a2f_geometry import geometry_of

    return geometry_of(animator.model, options.identity)


def _animate(args: argparse.Namespace) -> int:
    from .api import Animator
    from .audio.decode import decode_audio
    from .export.writers import OutputSet, remove_empty_folders, stage_result
    from .jobs import CancelToken

    options = _options(args)
    if _OWN_PROCESS and args.model == "default" and args.emotion_model is None:
        from .lipsync import parallel

        parallel.allow_fork()  # this process is a2x's alone: workers start ready (fork)
    created: list[Path] = []
    try:
        outputs = _output_paths(args, created)
        tracks = [decode_audio(a, start_s=options.start_s, end_s=options.end_s,
                               raw_rate=args.raw_rate, raw_format=args.raw_format)
                  for a in args.audio]  # fmt: skip
        animator = Animator(args.model, options, emotion_model=args.emotion_model)
        bar = _ProgressBar(enabled=not args.quiet)
        cancel = CancelToken()
        try:
            results = animator.animate_many(tracks, progress=bar, cancel=cancel)
        finally:
            bar.close()
        # All or nothing: every output is written to its hidden temporary file first, and only
        # then published; a failure or a signal restores what was there before.
        geometry = _export_geometry(animator, options, outputs)
        with OutputSet(overwrite=args.overwrite) as staged:
            for result, paths in zip(results, outputs, strict=True):
                for path in paths:
                    stage_result(staged, result, path, geometry)
            if args.plot is not None:
                from .export.plot import stage_plot

                stage_plot(staged, results[0], tracks[0], args.plot)
            if args.preview is not None:
                from .jobs import Progress
                from .preview.video import stage_preview

                preview_bar = _ProgressBar(enabled=not args.quiet)
                try:
                    stage_preview(staged, args.preview, results[:1], audio=args.audio[0],
                                  progress=lambda done: preview_bar(Progress(done, "rendering preview")))  # fmt: skip
                finally:
                    preview_bar.close()
            written = staged.commit()
    except BaseException:
        remove_empty_folders(created)
        raise
    if not args.quiet:
        for text, line in _warning_lines(results, args.audio):
            if text not in _ONCE.seen:  # already shown while the run went on
                print(f"warning: {line}", file=sys.stderr)
        for path in written:
            print(path)
    return 0


def _live(args: argparse.Namespace) -> int:
    """Source → stream → outputs until the audio ends or Ctrl-C; then the tail frames, the
    record and the summary. Exit 0 at the end of the audio; a stop by Ctrl-C or SIGTERM keeps
    the CLI's codes (130, 143) after the same clean stop, with the record written."""
    from .api import Animator
    from .export.writers import check_output_path, write_result
    from .live.outputs import (
        LIVELINK_DEFAULT_PORT,
        VMC_DEFAULT_PORT,
        FanOut,
        JsonLinesSink,
        LiveLinkFaceSender,
        VmcSender,
        parse_endpoint,
    )  # fmt: skip
    from .live.runner import (
        StatusLine,
        StopSignals,
        check_block_ms,
        first_seconds,
        open_source,
        run_live,
        summary_lines,
        take_result,
        tee_blocks,
    )  # fmt: skip

    options = _options(args)
    if args.record is not None:
        check_output_path(args.record, overwrite=args.overwrite)
    if args.preview is not None:
        from .preview.video import check_preview_path

        check_preview_path(args.preview, overwrite=args.overwrite)
    blocks = open_source(args.source, device=args.input_device,
                         real_time=not args.as_fast_as_possible,
                         raw_rate=args.raw_rate, raw_format=args.raw_format,
                         block_s=check_block_ms(args.block_ms))  # fmt: skip
    source = blocks
    if args.duration is not None:
        blocks = first_seconds(blocks, args.duration)
    heard: list[tuple[Any, int]] = []  # the take's sound, for --preview
    if args.preview is not None:
        blocks = tee_blocks(blocks, lambda samples, rate: heard.append((samples, rate)))
    endpoints = [(parse_endpoint(text, LIVELINK_DEFAULT_PORT, "--livelink"), LiveLinkFaceSender)
                 for text in args.livelink]  # fmt: skip
    endpoints += [(parse_endpoint(text, VMC_DEFAULT_PORT, "--vmc"), VmcSender) for text in args.vmc]
    from .backends.onnxruntime import spin_threads

    spin_threads()  # one latency-bound stream: ONNX Runtime's threads spin between operators
    animator = Animator(args.model, options, emotion_model=args.emotion_model)
    model = animator.model
    if args.int8 is not None:
        _quantize_for_live(model, args.int8, options)
    sinks: list[Any] = []
    try:
        for endpoint, sender in endpoints:
            sinks.append(sender(endpoint.host, endpoint.port))
        if args.jsonl is not None:
            sinks.append(JsonLinesSink(args.jsonl, overwrite=args.overwrite))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    stream = animator.open_stream()
    if not args.quiet:
        _print_live_notes(model, options, animator.emotion_model, stream)
    fps = options.fps
    playback = _delayed_playback(args, stream)
    if playback is not None:
        blocks = playback.tee(blocks)
    with StopSignals() as stop, FanOut(sinks) as fanout:
        status = StatusLine(sys.stderr, enabled=not args.quiet)
        try:
            frames, stats = run_live(stream, blocks, fanout, fps, status, stop)
        finally:
            if playback is not None:
                playback.close()
        result = take_result(frames, model, options, fps,
                             audio_path=args.source if args.source not in (None, "-") else "",
                             duration_s=stats.received_s)  # fmt: skip
        if args.record is not None:
            written = write_result(result, args.record, overwrite=args.overwrite)
            if not args.quiet:
                print(f"live: recorded {written}", file=sys.stderr)
        if args.preview is not None:
            _live_preview(args, result, heard)
    if not args.quiet:
        for line in summary_lines(stats, fanout):
            print(line, file=sys.stderr)
        if playback is not None:
            print(f"live: input played back {playback.delay_s * 1000:.0f} ms late"
                  + (f" (stopped: {playback.error})" if playback.error else ""), file=sys.stderr)
        if getattr(source, "dropped_s", 0.0) > 0:
            print(f"live: warning: {source.dropped_s:.2f} s of microphone input dropped (the model "
                  "ran slower than real time; try --fps 30 or a faster --engine)", file=sys.stderr)
    return stop.exit_code or 0


def _print_live_notes(model: Any, options: Any, emotion_model: Any, stream: Any) -> None:
    """Before a take: the options this model ignores (as ``animate`` warns) and, for the
    default model, the route its language takes (English words or the phone loop)."""
    from .api import unused_option_warnings

    for note in unused_option_warnings(model, options, emotion_model, streaming=True):
        print(f"live: warning: {note}", file=sys.stderr)
    language = getattr(stream, "language", None)
    if language is not None:
        print(f"live: language {language.code}: {language.phones()}", file=sys.stderr)


def _add_preview_parser(commands: Any) -> None:
    """``a2x preview``: a video of a clip (animated now) or of a take animated earlier."""
    preview = commands.add_parser("preview", help="render a preview video (MP4 with sound) of "
                                  "a clip or of a result file, to judge lip sync by eye")  # fmt: skip
    preview.add_argument("input", metavar="CLIP|RESULT",
                         help="an audio clip (animated with --model first) or an a2x result "
                         "(.json, or .npz, which also keeps the phones and words)")  # fmt: skip
    preview.add_argument("-o", "--output", type=Path, required=True, metavar="VIDEO.mp4")
    preview.add_argument("--compare", metavar="RESULT|CLIP",
                         help="a second result (or clip) shown side by side, e.g. another "
                         "model or other options on the same audio")  # fmt: skip
    preview.add_argument("--audio", metavar="FILE",
                         help="the sound to mux (default: the clip the result names)")
    preview.add_argument("--model", default="default",
                         help="model for CLIP inputs: 'default' or PATH/model.json")
    preview.add_argument("--video-fps", default="30", help="frame rate of the video (default 30)")
    preview.add_argument("--size", default="1280x720", help="video size WxH (default 1280x720)")
    preview.add_argument("--overwrite", action="store_true", help="replace an existing video")
    preview.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _preview(args: argparse.Namespace) -> int:
    from fractions import Fraction

    from .preview.video import check_preview_path, load_for_preview, write_preview

    check_preview_path(args.output, overwrite=args.overwrite)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        fps = Fraction(args.video_fps)
    except (ValueError, ZeroDivisionError):
        raise ParameterError(f"--size {args.size} / --video-fps {args.video_fps}: expected WxH "
                             "and N or N/D", hint="e.g. --size 1280x720 --video-fps 30") from None  # fmt: skip
    if fps <= 0 or fps > 120:
        raise ParameterError(f"--video-fps {args.video_fps}: must be above 0 and at most 120")
    inputs = [args.input] + ([args.compare] if args.compare else [])
    results = [load_for_preview(item, model=args.model) for item in inputs]
    bar = _ProgressBar(enabled=not args.quiet)
    try:
        from .jobs import Progress

        write_preview(args.output, results, audio=args.audio, fps=fps, size=(width, height),
                      overwrite=args.overwrite,
                      progress=lambda done: bar(Progress(done, "rendering preview")))  # fmt: skip
    finally:
        bar.close()
    if not args.quiet:
        print(args.output)
    return 0


def _add_render_parser(commands: Any) -> None:
    """``a2x render``: the take on the user's rig, rendered by headless Blender."""
    render = commands.add_parser("render", help="bake a clip onto your rig in headless Blender "
                                 "and render the scene's camera to an MP4 with sound")  # fmt: skip
    render.add_argument("input", metavar="CLIP|RESULT",
                        help="an audio clip (animated with --model first) or an a2x result")
    render.add_argument("--blend", type=Path, required=True, help="the scene with the rig")
    render.add_argument("--object", dest="objects", action="append", required=True,
                        metavar="NAME", help="the mesh with ARKit-named shape keys (repeatable)")
    render.add_argument("-o", "--output", type=Path, required=True, metavar="VIDEO.mp4")
    render.add_argument("--export-fbx", type=Path, metavar="TAKE.fbx",
                        help="also export the baked objects with their shape-key animation")
    render.add_argument("--engine", default="workbench", choices=("workbench", "eevee", "cycles"),
                        help="render engine (default workbench; the scene's other settings are kept)")
    render.add_argument("--start-frame", type=int, help="scene frame of the audio's start "
                        "(default: the scene's first frame)")  # fmt: skip
    render.add_argument("--resolution-percentage", type=int, metavar="PCT",
                        help="render at this share of the scene's resolution")
    render.add_argument("--blender", metavar="PATH", help="a blender executable or a Python with "
                        "bpy (default: $A2X_BLENDER, else blender on the PATH)")  # fmt: skip
    render.add_argument("--model", default="default",
                        help="model for CLIP inputs: 'default' or PATH/model.json")
    render.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    render.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def _render(args: argparse.Namespace) -> int:
    from .preview.render import RenderRequest, check_outputs, check_request, render_take
    from .preview.video import load_for_preview

    request = RenderRequest(blend=args.blend, objects=args.objects, engine=args.engine,
                            start_frame=args.start_frame, blender=args.blender,
                            resolution_percentage=args.resolution_percentage)  # fmt: skip
    check_request(request)
    check_outputs(args.output, args.export_fbx, overwrite=args.overwrite)
    result = load_for_preview(args.input, model=args.model)
    written = render_take(result, request, args.output, fbx=args.export_fbx, overwrite=args.overwrite)
    if not args.quiet:
        for path in written:
            print(path)
    return 0


def _live_preview(args: argparse.Namespace, result: Any, heard: list[tuple[Any, int]]) -> None:
    """``live --preview``: the take's video with the sound that was heard (kept in memory
    while the take ran: 64 kB per second at 16 kHz), written atomically."""
    import tempfile

    import numpy as np
    import soundfile

    from .preview.video import write_preview

    if result.num_frames == 0 or not heard:
        print("live: no frames, no preview written", file=sys.stderr)
        return
    rate = heard[0][1]
    sound = np.concatenate([np.asarray(samples, np.float32).reshape(-1) for samples, _ in heard])
    with tempfile.TemporaryDirectory(prefix="a2x-live-") as folder:
        wav = Path(folder) / "take.wav"
        soundfile.write(wav, sound, rate, subtype="FLOAT")
        written = write_preview(args.preview, [result], audio=wav, overwrite=args.overwrite)
    if not args.quiet:
        print(f"live: preview {written}", file=sys.stderr)


def _delayed_playback(args: argparse.Namespace, stream: Any) -> Any:
    """``--delay-audio [MS]``: a :class:`a2x_core.live.playback.DelayedPlayback` (default delay: the
    stream's look-ahead plus one block and a typical compute time), or None."""
    from .live.playback import DEFAULT_EXTRA_DELAY_S, DelayedPlayback
    from .timing import SAMPLE_RATE

    if args.delay_audio is None:
        if args.audio_out is not None:
            raise ParameterError("--audio-out applies with --delay-audio")
        return None
    if args.delay_audio == "auto":
        delay_s = stream.lookahead_samples / SAMPLE_RATE + DEFAULT_EXTRA_DELAY_S
    else:
        try:
            delay_s = float(args.delay_audio) / 1000
        except ValueError:
            raise ParameterError(f"--delay-audio {args.delay_audio!r}: not a number of "
                                 "milliseconds", hint="e.g. --delay-audio 350") from None  # fmt: skip
    return DelayedPlayback(delay_s, args.audio_out)


def _quantize_for_live(model: Any, speech_path: str, options: Any) -> None:
    """``a2x live --int8 SPEECH``: the regression model's int8 network, calibrated on speech
    (issue 13.4: one stream within look-ahead + 30 ms on a 2-core CPU; docs/live.md)."""
    from .audio.decode import decode_audio
    from .models.regression import RegressionModel

    if not isinstance(model, RegressionModel):
        raise ParameterError(f"--int8 applies to Audio2Face-3D regression models, not the "
                             f"{model.kind} model", hint="leave --int8 out")  # fmt: skip
    model.quantize_int8(decode_audio(speech_path), options)


def _serve(args: argparse.Namespace) -> int:
    """Load the model once, serve until Ctrl-C/SIGTERM, then stop gracefully: no new calls,
    running ones get ``--grace`` seconds to finish (exit 130/143 as the other commands)."""
    from .service.server import is_loopback

    for flag, port in (("--grpc-port", args.grpc_port), ("--http-port", args.http_port)):
        if not 0 <= port <= 65535:
            raise ParameterError(f"{flag} {port} is not a port", hint="use 1..65535, or 0 to turn it off")
    if args.grpc_port == 0 and args.http_port == 0:
        raise ParameterError("--grpc-port 0 and --http-port 0 leave nothing to serve")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ParameterError("TLS needs both --tls-cert and --tls-key")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not path.is_file():
            raise ParameterError(f"{flag} {path} is not a file", hint="give the PEM file's path")
    if args.max_streams < 1 or args.idle_timeout <= 0 or args.max_stream_seconds <= 0 \
            or args.max_request_mb <= 0:  # fmt: skip
        raise ParameterError("--max-streams, --idle-timeout, --max-stream-seconds and "
                             "--max-request-mb must be > 0")  # fmt: skip
    if not 0 <= args.grace <= 3600:
        raise ParameterError(f"--grace {args.grace:g} is not 0..3600 seconds",
                             hint="e.g. --grace 25; 0 cancels running streams at once")  # fmt: skip
    if args.token is not None and not args.token.strip():
        raise ParameterError("--token is empty", hint="give a secret, or leave --token out")
    if args.processes < 1:
        raise ParameterError(f"--processes {args.processes} must be >= 1")
    if not is_loopback(args.host):
        log.warning("listening on %s: other machines can reach this server%s", args.host,
                    "" if args.token else "; set --token (and --tls-cert/--tls-key for gRPC)")  # fmt: skip
    if args.processes > 1:
        return _serve_group(args)
    server = _serve_server(args)
    try:
        server.start()
    except BaseException:
        server.hub.stop()
        raise
    if not args.quiet:
        _print_serving(args, server.grpc_port, server.http_port, server.hub)
    try:
        while True:
            threading.Event().wait(0.5)
    finally:
        server.stop(grace=args.grace)


def _serve_server(args: argparse.Namespace, slots: Any = None) -> Any:
    """The model loaded, its hub and an unstarted ServiceServer for ``args`` (``slots``: the
    shared stream count of a ``--processes`` group: then the ports are shared)."""
    from .models.registry import load_model
    from .options import InferenceOptions
    from .service.hub import Limits, ModelHub
    from .service.server import ServeConfig, ServiceServer, warm_streams_for

    options = InferenceOptions(fps=args.fps, backend=args.backend, device=args.device,
                               threads=args.threads, precision=args.precision,
                               language=args.language)  # fmt: skip
    model = load_model(args.model, backend=options.backend, threads=options.threads,
                       device=options.device, precision=args.precision)  # fmt: skip
    limits = Limits(max_streams=args.max_streams, idle_timeout_s=args.idle_timeout,
                    max_stream_s=args.max_stream_seconds,
                    max_request_bytes=int(args.max_request_mb * (1 << 20)))  # fmt: skip
    emotion_model = None
    if args.emotion_model is not None:
        from .api import Animator

        emotion_model = Animator(model, options, emotion_model=args.emotion_model).emotion_model
    hub = ModelHub(model, fps=options.fps, limits=limits, base_options=options,
                   emotion_model=emotion_model, shared_slots=slots)  # fmt: skip
    config = ServeConfig(host=args.host, grpc_port=args.grpc_port or None,
                         http_port=args.http_port or None, token=args.token,
                         tls_cert=args.tls_cert, tls_key=args.tls_key,
                         reuse_port=slots is not None, serving=slots is None,
                         # the CUDA bank warmed up before SERVING (first-round tail)
                         warm_streams=warm_streams_for(hub, args.max_streams, args.processes))  # fmt: skip
    return ServiceServer(hub, config)


def _serve_group(args: argparse.Namespace) -> int:
    """``--processes N``: N servers on the same ports, started, watched and stopped together
    (docs/service.md, "Several processes")."""
    from .service.group import ServerGroup

    ports = {flag: port for flag, port in (("--grpc-port", args.grpc_port),
                                          ("--http-port", args.http_port)) if port}  # fmt: skip
    group = ServerGroup(args.processes, _serve_server, (args,), args.host, ports)
    group.start()
    try:
        if not args.quiet:
            _print_serving(args, args.grpc_port, args.http_port, None)
            hint = _mps_hint(args)
            if hint:
                print(hint, file=sys.stderr, flush=True)
        while True:
            group.poll(0.5)
    finally:
        group.stop(grace=args.grace)


def _mps_hint(args: argparse.Namespace) -> str:
    """Advice for several processes on one NVIDIA GPU where NVIDIA's Multi-Process Service can
    run ("" elsewhere): without it their CUDA contexts time-slice the GPU (docs/service.md)."""
    import shutil

    on_gpu = args.device != "cpu" and args.backend != "onnxruntime"
    if args.processes < 2 or not on_gpu or shutil.which("nvidia-cuda-mps-control") is None:
        return ""
    return (f"a2x serve: {args.processes} processes share the GPU: if NVIDIA's MPS is not "
            "running, start it (nvidia-cuda-mps-control -d) so that their kernels run side by "
            "side instead of time-slicing (docs/service.md, \"Several processes\")")


def _print_serving(args: argparse.Namespace, grpc_port: int | None, http_port: int | None,
                   hub: Any) -> None:  # fmt: skip
    if grpc_port:
        print(f"a2x serve: gRPC (NIM ProcessAudioStream + health) on {args.host}:{grpc_port}"
              f"{' (TLS)' if args.tls_cert else ''}", file=sys.stderr)  # fmt: skip
    if http_port:
        print(f"a2x serve: HTTP on http://{args.host}:{http_port} (API docs at /docs)",
              file=sys.stderr)  # fmt: skip
    what = f"{hub.model.name} ({hub.model.kind})" if hub is not None else args.model
    where = f" in {args.processes} processes" if args.processes > 1 else ""
    print(f"a2x serve: {what} at {args.fps} fps{where}; Ctrl-C stops", file=sys.stderr,
          flush=True)  # fmt: skip


def _batch(args: argparse.Namespace) -> int:
    """Manifest → plan (skip what is done) → Dask → report. Exit 0 when every clip is done or
    skipped, 1 when any failed, 130 on Ctrl-C (the report says which clips were cancelled)."""
    from .batch.manifest import read_clips
    from .batch.runner import (
        DEFAULT_CHUNK,
        DEFAULT_STEP,
        BatchSettings,
        open_client,
        plan_batch,
        require_dask,
        run_batch,
    )  # fmt: skip
    from .export.writers import make_output_folder, remove_empty_folders

    require_dask()
    for flag, value, least in (("--workers", args.workers, 1), ("--chunk", args.chunk, 1),
                               ("--step", args.step, 1), ("--retries", args.retries, 0)):  # fmt: skip
        if value is not None and value < least:
            raise ParameterError(f"{flag} must be at least {least}, found {value}")
    options = _options(args)
    clips = read_clips(args.source)
    if args.blend is not None and not args.blend.is_file():
        raise ParameterError("no such scene", path=args.blend, hint="pass an existing .blend")
    gpu = str(args.device).startswith("cuda")
    where = "gpu" if gpu else "cpu"
    emotion_model = args.emotion_model and str(Path(args.emotion_model).expanduser().resolve())
    settings = BatchSettings(
        outdir=args.output, formats=tuple(f".{f}" for f in dict.fromkeys(args.format or ["json"])),
        model=args.model, options=options, overwrite=args.overwrite, blend=args.blend,
        engine={"backend": args.backend, "device": args.device, "precision": args.precision,
                "threads": args.threads},
        object_name=args.object_name, chunk=args.chunk or DEFAULT_CHUNK[where],
        step=args.step or DEFAULT_STEP[where], emotion_model=emotion_model,
        blender={"python": args.blender_python, "exe": args.blender_exe}, retries=args.retries,
        render=_batch_render(args),
    )  # fmt: skip
    plan = plan_batch(clips, settings)
    created = make_output_folder(args.output)
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(clips), initial=len(plan.rows), unit="clip", file=sys.stderr,
                   dynamic_ncols=True)  # fmt: skip

    def progress(rows: dict[str, Any]) -> None:
        if bar is not None:
            failed = sum(1 for r in rows.values() if r["status"] == "failed")
            bar.set_postfix_str(f"{failed} failed", refresh=False)
            bar.update(len(rows) - bar.n)

    try:
        if plan.tasks:
            with open_client(args.workers, args.scheduler, gpu) as client:
                rows = run_batch(plan, client, settings, progress)
        else:  # everything done already: no cluster to start
            from .batch.report import write_report

            rows = [plan.rows[name] for name in plan.order]
            write_report(args.output, rows, {"interrupted": False})
    except BaseException:
        remove_empty_folders(created)  # e.g. no scheduler: no empty OUTDIR left behind
        raise
    finally:
        if bar is not None:
            bar.close()
    from .batch.report import summary

    counts = summary(rows)
    if not args.quiet:
        for row in rows:
            if row["status"] == "failed":
                print(f"a2x: {row['clip']}: failed: {row['error']}", file=sys.stderr)
        print(f"a2x batch: {counts['done']} done, {counts['skipped']} skipped, "
              f"{counts['failed']} failed; report in {args.output / 'report.csv'}",
              file=sys.stderr)  # fmt: skip
    return 1 if counts["failed"] else 0


def _warning_lines(results: Sequence[Any], clips: Sequence[str]) -> list[tuple[str, str]]:
    """``(warning, line to print)`` for each distinct warning, once; with several clips, a
    warning raised by only some of them names them."""
    by_text: dict[str, list[str]] = {}
    for result, clip in zip(results, clips, strict=True):
        for warning in result.warnings:
            names = by_text.setdefault(warning, [])
            if Path(clip).name not in names:
                names.append(Path(clip).name)
    lines = []
    for text, names in by_text.items():
        partial = len(clips) > 1 and len(names) < len(clips)
        lines.append((text, f"{', '.join(names)}: {text}" if partial else text))
    return lines


class _Once(logging.Filter):
    """Drops a log message already shown in this run (several clips, or several stages, can
    report the same thing); remembers what it let through, so the end-of-run summary skips it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


_ONCE = _Once()


def _info(args: argparse.Namespace) -> int:
    from .models.registry import load_model

    model = load_model(args.model)
    info = model.info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for sub_key, sub_value in value.items():
                print(f"  {sub_key}: {sub_value}")
        else:
            print(f"{key}: {value}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models.registry import list_models

    for entry in list_models(args.dirs, strict=True):
        print(f"{entry.spec}\t{entry.kind}\t{entry.description}")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that the same clean-up runs (hidden
    temporary files removed, outputs restored, helper processes stopped)."""

    exit_code = 143


def _on_sigterm(signum: int, frame: object) -> None:
    # The first SIGTERM cleans up; a second one, while that runs, ends the process at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


@contextlib.contextmanager
def _cli_process_state(quiet: bool) -> Iterator[None]:
    """Log format and once-only filter, SIGTERM handler; all undone on the way out (``main``
    may run inside a host process, e.g. tests)."""
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, format="a2x: %(message)s")
    _ONCE.seen.clear()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(_ONCE)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for handler in handlers:
            handler.removeFilter(_ONCE)


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``a2x info … | head``): stop quietly, as ``cat`` does.

    stdout is pointed at /dev/null so that the interpreter's final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a process ended by the signal reports


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``a2x`` console script and ``python -m a2x_core``."""
    args = _build_parser().parse_args(argv)
    from . import engines_cli

    handlers = {"animate": _animate, "live": _live, "batch": _batch, "preview": _preview, "render": _render, "info": _info, "models": _models, "engines": engines_cli.run}
    handlers["serve"] = _serve
    with _cli_process_state(getattr(args, "quiet", False)):
        try:
            code = handlers[args.command](args)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            return _quiet_broken_pipe()
        except Terminated:
            print("a2x: terminated", file=sys.stderr)
            return Terminated.exit_code
        except KeyboardInterrupt:
            print("a2x: cancelled", file=sys.stderr)
            return CancelledError.exit_code
        except A2XError as error:
            print(f"a2x: error: {error}", file=sys.stderr)
            return error.exit_code


#: Set by :func:`console_main`: this process runs the command and nothing else (so the default
#: model's workers may start by ``fork``); ``main`` called inside a host process leaves it off.
_OWN_PROCESS = False


def console_main() -> int:
    """``a2x`` as a process of its own (the console script, ``python -m a2x_core``): ``main``,
    then its worker processes stopped and reaped, so that none outlives the command (an orphan
    left to a container's init may stay a zombie)."""
    global _OWN_PROCESS
    _OWN_PROCESS = True
    if _default_model_animate(sys.argv[1:]):
        # Set before numpy loads OpenBLAS: the main process's numpy work is small while the
        # workers decode on every core, and OpenBLAS's idle threads spin against them (~0.2-0.5
        # s of CPU per command); the default model's output is the same.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if sys.argv[1:2] == ["live"]:
        # issues 12.5 / 13.4: a live stream runs one or two frames per push, too small
        # for a second OpenBLAS thread to help, and that thread's spinning after each call
        # takes a core from the network's threads (one regression stream on the 2-core VM:
        # CPU per frame 92 -> 43 ms under load; docs/benchmarks.md, "One regression stream on the
        # 2-core CPU"); the frames are the same within float rounding
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        return main()
    finally:
        _reap_child_processes()


def _default_model_animate(argv: Sequence[str]) -> bool:
    """Whether the command line is ``animate`` with the default model (no ``--model``, or
    ``--model default``); an abbreviated or unusual ``--model`` counts as another model."""
    if not argv or argv[0] != "animate":
        return False
    for k, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith("--mo"):
            value = arg.split("=", 1)[1] if arg.startswith("--model=") else None
            if value is None and arg == "--model" and k + 1 < len(argv):
                value = argv[k + 1]
            if value != "default":
                return False
    return True


def _reap_child_processes() -> None:
    """Kill and join the default model's (idle) decoder workers; reap exited children."""
    parallel = sys.modules.get("a2x_core.lipsync.parallel")
    if parallel is not None:  # idle by now: killed and joined at once (a clean shutdown
        with contextlib.suppress(Exception):  # waits ~0.6 s for each to notice)
            parallel.abort(join_s=10.0)
    # multiprocessing's resource tracker is left to exit after this process (it watches for
    # that; stopping it earlier makes the interpreter's shutdown start a new one): only
    # children that have exited already are reaped, nothing is waited for
    _reap_exited_children()


def _reap_exited_children() -> None:
    """Collect every child that has exited (POSIX); returns at once."""
    if not hasattr(os, "WNOHANG"):
        return
    with contextlib.suppress(ChildProcessError):  # no children left
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass


if __name__ == "__main__":
    sys.exit(console_main())
