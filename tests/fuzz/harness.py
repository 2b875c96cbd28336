"""Seeded, bounded fuzzing of a2x's promise about bad input (docs/reliability.md).

The promise: every bad input ends in an :class:`~a2x_core.errors.A2XError` (API) or exit 2
with an ``a2x: error:`` line (CLI); nothing hangs; a run that fails leaves no file behind
(hidden ``.NAME.*.tmp`` temporaries included) and never changes an existing output without
``--overwrite``; a run that succeeds writes finite, sane weights.

Cases are plain JSON data (category, id, spec), enumerated from the generated test model
folders (``tests/a2f_folders.py``, ``tests/diffusion_folders.py``, ``tests/a2e_folders.py``),
real speech (``samples/jfk.flac``) and tables of bad values, then sampled with a seed. Each
in-process case runs in a separate worker process (``python -m tests.fuzz.harness serve``)
so that a hang is a per-case timeout (the worker is killed and restarted) and a native crash
cannot take the caller down; CLI cases run ``python -m a2x_core`` as a user would.

Outcomes (the categories of docs/reliability.md): ``typed`` (clean typed error),
``accepted`` (valid output), ``crash`` (any other exception / traceback / dead worker),
``silent`` (invalid input accepted: non-finite or |weight| > 10, or a value of the wrong type
taken without a warning), ``hang`` (per-case timeout), ``partial`` (a file left behind or an
existing output changed); ``skipped`` marks a case whose test input could not be built.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "jfk.flac"

OUTCOMES = ("typed", "accepted", "crash", "silent", "hang", "partial", "skipped")
FAILURES = ("crash", "silent", "hang", "partial")
#: Weights beyond this magnitude are absurd for any ARKit curve (docs: "silent accept").
ABSURD_WEIGHT = 10.0
#: How long a fresh worker may take to import a2x and load its first model (not a case's time).
WORKER_START_TIMEOUT_S = 300.0
#: Address-space cap of the worker, so that a trusted damaged header cannot swap the machine.
WORKER_MEMORY_BYTES = 6 << 30

CATEGORIES = (
    "audio-api", "model-regression", "model-diffusion", "model-a2e",
    "options-api", "options-cli", "cli",
)  # fmt: skip
#: The rows of docs/reliability.md's table, per category.
CATEGORY_TITLES = {
    "audio-api": "1 Audio bytes and paths, Python API",
    "model-regression": "2a Models, regression v2.3",
    "model-diffusion": "2b Models, diffusion v3.0",
    "model-a2e": "2c Models, Audio2Emotion v2.2",
    "options-api": "3a Options, Python API",
    "options-cli": "3b CLI flags and output paths (in process)",
    "cli": "4 CLI subprocess sample",
}


@dataclass(frozen=True)
class Case:
    """One fuzz input: ``ident`` is stable for a given seed and reruns it (``--only``)."""

    category: str
    ident: str
    spec: dict[str, Any]


@dataclass
class Outcome:
    case: Case
    outcome: str
    detail: str = ""
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# Bad values, as data: a token travels in the JSON case, the worker builds the value.

VALUE_TOKENS: dict[str, Callable[[], Any]] = {
    "none": lambda: None, "str": lambda: "x", "empty_str": lambda: "", "numeric_str": lambda: "2",
    "neg": lambda: -1, "zero": lambda: 0, "half": lambda: 0.5, "one_and_half": lambda: 1.5,
    "big_float": lambda: 1e308, "huge_int": lambda: 10**20, "int64_max": lambda: 2**63 - 1,
    "nan": lambda: math.nan, "inf": lambda: math.inf, "neg_inf": lambda: -math.inf,
    "true": lambda: True, "false": lambda: False, "empty_list": lambda: [],
    "int_list": lambda: [1, 2],
    "dict": lambda: {}, "bytes": lambda: b"x", "complex": lambda: 1j, "tiny": lambda: 1e-300,
    "million": lambda: 1_000_000, "object": lambda: object(),
}  # fmt: skip


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite_real(value: Any) -> bool:
    return _is_real(value) and math.isfinite(value)


#: InferenceOptions field -> predicate of values of the right *type* (range is the code's job:
#: a value of the wrong type that is accepted without a warning is a silent accept).
OPTION_FIELD_TYPES: dict[str, Callable[[Any], bool]] = {
    "fps": lambda v: (_finite_real(v) and v > 0) or (isinstance(v, str) and v.strip() != ""),
    "start_s": lambda v: v is None or _finite_real(v),
    "end_s": lambda v: v is None or _finite_real(v),
    "transcript": lambda v: v is None or isinstance(v, str),
    "fast": lambda v: isinstance(v, bool),
    "seed": lambda v: isinstance(v, int) and v >= 0,
    "strength": _finite_real,
    "smoothing_s": _finite_real,
    "blinks": lambda v: isinstance(v, bool),
    "parameters": lambda v: isinstance(v, dict),
    "emotions": lambda v: isinstance(v, list | tuple),
    "geometry": lambda v: isinstance(v, bool),
    "backend": lambda v: isinstance(v, str),
    "device": lambda v: isinstance(v, str),
    "precision": lambda v: isinstance(v, str),
    "threads": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "compile_network": lambda v: isinstance(v, bool),
    "identity": lambda v: v is None or isinstance(v, str),
    "emotion_window": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "emotion_skip": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    "emotion_mix": lambda v: isinstance(v, str),
    "emotion_parameters": lambda v: isinstance(v, dict),
}
#: Regression model_config keys overridden through ``parameters`` (each takes a number).
PARAMETER_KEYS = ("input_strength", "skin_strength", "lower_face_smoothing", "eye_saccade_seed",
                  "tongue_strength", "eyelid_open_offset", "no_such_key")  # fmt: skip
#: Emotion-key structures for ``InferenceOptions(emotions=...)``: token -> value.
EMOTION_VALUES: dict[str, Callable[[], Any]] = {
    "int_list": lambda: [1, 2], "flat_key": lambda: [0.0, {"joy": 0.5}],
    "nan_time": lambda: [(math.nan, {"joy": 0.5})], "neg_time": lambda: [(-1.0, {"joy": 0.5})],
    "huge_time": lambda: [(1e308, {"joy": 0.5})], "over_one": lambda: [(0.0, {"joy": 2.0})],
    "nan_value": lambda: [(0.0, {"joy": math.nan})], "unknown": lambda: [(0.0, {"nosuch": 0.5})],
    "str_value": lambda: [(0.0, {"joy": "x"})], "string": lambda: "joy",
    "nested": lambda: [[[0]]], "none_key": lambda: [None], "dict": lambda: {"joy": 0.5},
}  # fmt: skip
#: ``audio_from_array`` sample arrays: token -> builder of a bad array from one good clip.
ARRAY_VALUES: dict[str, Callable[[np.ndarray], Any]] = {
    "complex": lambda x: x.astype(np.complex64), "strings": lambda x: x[:2000].astype(str),
    "uint8": lambda x: ((x + 1) * 127).astype(np.uint8), "bool": lambda x: x > 0,
    "object": lambda x: x.astype(object), "int64": lambda x: (x * 2**40).astype(np.int64),
    "float16": lambda x: x.astype(np.float16), "3d": lambda x: x.reshape(1, -1, 1),
    "huge": lambda x: np.full_like(x, 3e38), "spike": lambda x: _spike(x),
    "empty": lambda x: x[:0], "scalar": lambda x: np.float32(0.5),
    "list": lambda x: x[:1000].tolist(),
}  # fmt: skip


def _spike(samples: np.ndarray) -> np.ndarray:
    out = samples.copy()
    out[len(out) // 3] = 3e38
    return out


# --------------------------------------------------------------------------------------------
# Fixtures: real speech and the generated model folders.


@dataclass
class Fixtures:
    """Everything cases point at; ``root`` is a scratch folder the caller owns."""

    root: Path
    regression: Path = field(init=False)
    diffusion: Path = field(init=False)
    a2e: Path = field(init=False)
    clip: Path = field(init=False)
    clip2: Path = field(init=False)

    def __post_init__(self) -> None:
        self.regression = self.root / "models" / "regression" / "model.json"
        self.diffusion = self.root / "models" / "diffusion" / "model.json"
        self.a2e = self.root / "models" / "a2e" / "model.json"
        self.clip = self.root / "clips" / "speech.wav"
        self.clip2 = self.root / "clips" / "speech2.wav"

    def build(self) -> Fixtures:
        """Generate the model folders and two 1 s clips of real speech (about a second)."""
        import soundfile as sf

        from tests.a2e_folders import make_emotion_folder
        from tests.a2f_folders import make_regression_folder
        from tests.diffusion_folders import make_diffusion_folder

        make_regression_folder(self.regression.parent)
        make_diffusion_folder(self.diffusion.parent)
        make_emotion_folder(self.a2e.parent)
        self.clip.parent.mkdir(parents=True, exist_ok=True)
        speech, rate = sf.read(str(SAMPLE), dtype="float32", frames=32000)
        sf.write(str(self.clip), speech[16000:32000], rate, subtype="PCM_16")
        sf.write(str(self.clip2), speech[:16000], rate, subtype="PCM_16")
        return self

    def to_json(self) -> dict[str, str]:
        return {"root": str(self.root)}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Fixtures:
        return cls(Path(data["root"]))


def speech_samples(seconds: float = 1.0) -> tuple[np.ndarray, int]:
    """Real speech from the bundled sample (mono float32, 16 kHz)."""
    import soundfile as sf

    data, rate = sf.read(str(SAMPLE), dtype="float32", frames=int(16000 * (1 + seconds)))
    return data[16000:], rate  # jfk.flac is 16 kHz; its first second is near silence


# --------------------------------------------------------------------------------------------
# Case enumeration (deterministic), then a seeded sample per category.

AUDIO_FORMATS = (  # (container, subtype, extension)
    ("WAV", "PCM_16", "wav"), ("WAV", "PCM_24", "wav"), ("WAV", "FLOAT", "wav"),
    ("WAV", "DOUBLE", "wav"), ("WAV", "PCM_U8", "wav"), ("FLAC", "PCM_16", "flac"),
    ("MP3", "MPEG_LAYER_III", "mp3"), ("OGG", "VORBIS", "ogg"), ("AIFF", "PCM_16", "aiff"),
    ("RAW", "PCM_16", "raw"),
)  # fmt: skip
AUDIO_RATES = (1, 100, 8000, 16000, 44100, 48000, 192000)
AUDIO_CHANNELS = (1, 2, 6)
AUDIO_MUTATIONS = (
    "none", "truncate", "flip_header", "flip_data", "garbage_header", "size_fields_max",
    "spike", "huge_samples", "nan_sample", "full_scale", "silence", "one_frame", "random_bytes",
    "empty_file",
)  # fmt: skip
AUDIO_PATHS = ("fifo", "long_name", "folder", "dangling_symlink", "dev_null", "dev_zero",
               "unicode_name", "no_extension")  # fmt: skip

FILE_MUTATIONS = ("delete", "empty", "garbage", "truncate", "bit_flip", "folder", "deep_json")
JSON_MUTATIONS = ("delete", "null", "string", "huge_int", "float_int", "nan", "big_float",
                  "negative", "empty_list", "deep", "flat_list")  # fmt: skip
NPZ_MUTATIONS = ("delete", "empty", "flat", "nan", "huge", "float64", "int", "strings",
                 "transpose", "non_utf8", "bit_flip_member")  # fmt: skip
NPZ_CONTAINER_MUTATIONS = ("not_npy_member", "huge_shape_header")


def _json_paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path of a JSON document (dict keys, and the first item of each list)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key)
            yield from _json_paths(value, (*prefix, key))
    elif isinstance(data, list) and data:
        yield (*prefix, 0)
        yield from _json_paths(data[0], (*prefix, 0))


def model_cases(kind: str, model_json: Path) -> list[Case]:
    """Every mutation of every file and key of one generated model folder."""
    folder = model_json.parent
    cases: list[Case] = []

    def add(file: str, target: str, mutation: str, **extra: Any) -> None:
        ident = f"model-{kind}/{file}/{target}/{mutation}"
        spec = {"kind": kind, "file": file, "mutation": mutation, **extra}
        cases.append(Case(f"model-{kind}", ident, spec))

    for path in sorted(folder.iterdir()):
        for mutation in FILE_MUTATIONS:
            if mutation != "deep_json" or path.suffix == ".json":
                add(path.name, "*", mutation, scope="file")
        if path.suffix == ".json":
            for key_path in _json_paths(json.loads(path.read_text())):
                for mutation in JSON_MUTATIONS:
                    add(path.name, ".".join(map(str, key_path)), mutation, scope="json",
                        key_path=list(key_path))  # fmt: skip
        elif path.suffix == ".npz":
            with np.load(path) as npz:
                keys = list(npz.files)
            for key in keys:
                for mutation in NPZ_MUTATIONS:
                    if mutation == "non_utf8" and key != "poseNames":
                        continue
                    add(path.name, key, mutation, scope="npz", key=key)
            for mutation in NPZ_CONTAINER_MUTATIONS:
                add(path.name, keys[0], mutation, scope="npz", key=keys[0])
    return cases


def audio_cases() -> list[Case]:
    cases = []
    for container, subtype, ext in AUDIO_FORMATS:
        for rate in AUDIO_RATES:
            for channels in AUDIO_CHANNELS:
                for mutation in AUDIO_MUTATIONS:
                    ident = f"audio-api/{container}-{subtype}/{rate}Hz/{channels}ch/{mutation}"
                    spec = {"container": container, "subtype": subtype, "ext": ext, "rate": rate,
                            "channels": channels, "mutation": mutation}  # fmt: skip
                    cases.append(Case("audio-api", ident, spec))
    for path_kind in AUDIO_PATHS:
        cases.append(Case("audio-api", f"audio-api/path/{path_kind}", {"path": path_kind}))
    for rate in ("zero", "neg", "half", "nan", "str", "int64_max", "none", "tiny", "million"):
        cases.append(Case("audio-api", f"audio-api/array-rate/{rate}", {"array_rate": rate}))
    for token in ARRAY_VALUES:
        cases.append(Case("audio-api", f"audio-api/array/{token}", {"array": token}))
    return cases


def option_cases() -> list[Case]:
    cases = []
    for name in OPTION_FIELD_TYPES:
        for token in VALUE_TOKENS:
            spec = {"target": "field", "field": name, "value": token}
            cases.append(Case("options-api", f"options-api/{name}={token}", spec))
    for key in PARAMETER_KEYS:
        for token in VALUE_TOKENS:
            spec = {"target": "parameter", "key": key, "value": token}
            cases.append(Case("options-api", f"options-api/parameters.{key}={token}", spec))
    for token in EMOTION_VALUES:
        spec = {"target": "emotions", "value": token}
        cases.append(Case("options-api", f"options-api/emotions={token}", spec))
    for token in VALUE_TOKENS:
        spec = {"target": "animator_model", "value": token}
        cases.append(Case("options-api", f"options-api/Animator({token})", spec))
    return cases


#: CLI flag -> bad values (strings, as typed in a shell).
CLI_FLAG_VALUES: dict[str, tuple[str, ...]] = {
    flag: ("0", "-1", "1e308", "nan", "inf", "abc", "", "1/0", "9" * 400, "1.5", "-0")
    for flag in ("--fps", "--start", "--end", "--seed", "--strength", "--smoothing", "--threads",
                 "--emotion-window", "--emotion-skip")
}  # fmt: skip
CLI_FLAG_VALUES.update({
    "--param": ("input_strength=1e308", "input_strength=nan", "input_strength=[[[[1]]]]",
                "no_such_key=1", "input_strength", "=1", "skin_strength=1e20",
                "eye_saccade_seed=1.5", "input_strength=" + "[" * 60000 + "]" * 60000),
    "--emotion": ("joy=2", "joy=nan", "nosuch=0.5", "joy", "1e308:joy=0.5", "-1:joy=0.5",
                  "joy=1e308"),
    "--emotion-param": ("emotion_strength=1e308", "max_emotions=2.0", "no_such=1",
                        "emotion_strength=" + "[" * 60000 + "]" * 60000),
    "--identity": ("", "nosuch", "mark", " "),
    "--device": ("cuda:abc", "gpu", "", "cuda:-1"),
})  # fmt: skip
#: File contents for the file-valued flags.
CLI_FILE_CONTENTS: dict[str, bytes] = {
    "latin1": "caf\xe9 ask not\n".encode("latin-1"), "utf16": "ask not".encode("utf-16"),
    "binary": bytes(range(256)), "deep_json": b"[" * 100000 + b"]" * 100000,
    "huge_time": b'{"keys": [{"time_s": 1e308, "emotions": {"joy": 0.5}}]}',
    "long_int_time": b'{"keys": [{"time_s": ' + b"9" * 400 + b', "emotions": {"joy": 0.5}}]}',
    "nan_time": b'{"keys": [{"time_s": NaN, "emotions": {"joy": 0.5}}]}',
    "csv_garbage": b"time_s,joy\n0,abc\n", "empty": b"",
}  # fmt: skip
CLI_OUTPUT_CASES = ("long_name", "missing_folder", "existing", "dangling_symlink", "unknown_ext",
                    "folder_under_file", "plot_missing_folder", "plot_proc", "overwrite_second_bad",
                    "two_clips_one_file", "same_output_twice", "output_is_folder")  # fmt: skip


def cli_option_cases(category: str = "options-cli") -> list[Case]:
    cases = []
    for flag, values in CLI_FLAG_VALUES.items():
        for number, value in enumerate(values):
            spec = {"flag": flag, "value": value}
            cases.append(Case(category, f"{category}/{flag}#{number}", spec))
    for flag in ("--transcript-file", "--emotion-file"):
        for content in CLI_FILE_CONTENTS:
            for ext in (".txt", ".json", ".csv") if flag == "--emotion-file" else (".txt",):
                spec = {"flag": flag, "file": content, "ext": ext}
                cases.append(Case(category, f"{category}/{flag}/{content}{ext}", spec))
    for output in CLI_OUTPUT_CASES:
        cases.append(Case(category, f"{category}/output/{output}", {"output": output}))
    return cases


def all_cases(fixtures: Fixtures) -> dict[str, list[Case]]:
    """Every case, per category, in a stable order."""
    cli = [Case("cli", c.ident.replace("options-cli", "cli"), c.spec) for c in cli_option_cases()]
    cli += [Case("cli", c.ident.replace("audio-api", "cli"), c.spec) for c in audio_cases()
            if "container" in c.spec or "path" in c.spec]  # fmt: skip
    return {
        "audio-api": audio_cases(),
        "model-regression": model_cases("regression", fixtures.regression),
        "model-diffusion": model_cases("diffusion", fixtures.diffusion),
        "model-a2e": model_cases("a2e", fixtures.a2e),
        "options-api": option_cases(),
        "options-cli": cli_option_cases(),
        "cli": cli,
    }


def sample_cases(fixtures: Fixtures, counts: dict[str, int], seed: int) -> list[Case]:
    """``counts[category]`` cases of each category, drawn with ``seed`` (all when larger)."""
    chosen = []
    for category, cases in all_cases(fixtures).items():
        count = counts.get(category, 0)
        rng = random.Random(f"{seed}:{category}")
        chosen += cases if count >= len(cases) else rng.sample(cases, count)
    return chosen


# --------------------------------------------------------------------------------------------
# Building inputs (worker side).


def _flip_bits(data: bytearray, lo: int, hi: int, rng: random.Random, count: int = 4) -> None:
    hi = min(hi, len(data))
    if hi <= lo:
        return
    for _ in range(count):
        index = rng.randrange(lo, hi)
        data[index] ^= 1 << rng.randrange(8)


def _rewrite(path: Path, data: bytes) -> None:
    """Replace ``path`` by a new file (never edit in place: scratch copies are hard links)."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def build_audio(spec: dict[str, Any], folder: Path, rng: random.Random) -> Path:
    """Write the case's audio file under ``folder``."""
    import soundfile as sf

    if "path" in spec:
        return _special_audio_path(spec["path"], folder)
    speech, _ = speech_samples(1.0)
    rate, channels, mutation = spec["rate"], spec["channels"], spec["mutation"]
    if 8000 <= rate <= 192000 and rate != 16000:
        import soxr

        speech = soxr.resample(speech, 16000, rate).astype(np.float32)
    if rate < 8000:  # an odd header: a few samples that claim a very low rate
        speech = speech[: max(rate * 4, 8)]
    data = np.stack([speech * (0.9**c) for c in range(channels)], axis=1)
    if mutation == "spike":
        data[len(data) // 3, 0] = 3e38
    elif mutation == "huge_samples":
        data[:] = 1e30
    elif mutation == "nan_sample":
        data[len(data) // 2, 0] = np.nan
    elif mutation == "full_scale":
        data = np.sign(data + 1e-9).astype(np.float32)
    elif mutation == "silence":
        data[:] = 0.0
    elif mutation == "one_frame":
        data = data[:1]
    path = folder / f"clip.{spec['ext']}"
    if mutation == "random_bytes":
        path.write_bytes(rng.randbytes(rng.randrange(1, 20000)))
        return path
    if mutation == "empty_file":
        path.write_bytes(b"")
        return path
    with contextlib.redirect_stderr(io.StringIO()):
        if spec["container"] == "RAW":
            sf.write(str(path), data, rate, format="RAW", subtype=spec["subtype"])
        else:
            sf.write(str(path), data, rate, format=spec["container"], subtype=spec["subtype"])
    raw = bytearray(path.read_bytes())
    if mutation == "truncate":
        raw = raw[: rng.randrange(0, len(raw))]
    elif mutation == "flip_header":
        _flip_bits(raw, 0, 64, rng)
    elif mutation == "flip_data":
        _flip_bits(raw, 64, len(raw), rng, count=16)
    elif mutation == "garbage_header":
        raw[: min(44, len(raw))] = rng.randbytes(min(44, len(raw)))
    elif mutation == "size_fields_max":
        for marker in (b"RIFF", b"data", b"FORM", b"SSND"):
            at = raw.find(marker)
            if at >= 0 and at + 8 <= len(raw):
                raw[at + 4 : at + 8] = b"\xff\xff\xff\x7f"
    _rewrite(path, bytes(raw))
    return path


def _special_audio_path(kind: str, folder: Path) -> Path:
    good = folder / "good.wav"
    speech, rate = speech_samples(1.0)
    import soundfile as sf

    sf.write(str(good), speech, rate)
    if kind == "fifo":
        path = folder / "pipe.wav"
        os.mkfifo(path)
        return path
    if kind == "long_name":
        return folder / ("x" * 300 + ".wav")
    if kind == "folder":
        (folder / "dir.wav").mkdir()
        return folder / "dir.wav"
    if kind == "dangling_symlink":
        (folder / "dangling.wav").symlink_to(folder / "nowhere.wav")
        return folder / "dangling.wav"
    if kind in ("dev_null", "dev_zero"):
        return Path("/dev/null" if kind == "dev_null" else "/dev/zero")
    if kind == "unicode_name":
        return good.rename(folder / "réplique \n ñ.wav")
    if kind == "no_extension":
        return good.rename(folder / "clip")
    raise ValueError(kind)


def _deep(levels: int = 100000) -> Any:
    """A marker the JSON writer expands into ``levels`` nested lists."""
    return {"__deep__": levels}


def _dump_json(data: Any) -> str:
    text = json.dumps(data, allow_nan=True)
    marker = json.dumps(_deep())
    return text.replace(marker, "[" * 100000 + "]" * 100000)


def _json_mutation(data: Any, key_path: Sequence[Any], mutation: str) -> Any:
    parent = data
    for key in key_path[:-1]:
        parent = parent[key]
    last = key_path[-1]
    old = parent[last]
    if mutation == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
        return data
    new: Any = {
        "null": None, "string": "x", "huge_int": 10**20, "nan": math.nan, "big_float": 1e20,
        "negative": -1, "empty_list": [], "deep": _deep(),
    }.get(mutation)  # fmt: skip
    if mutation == "float_int":
        new = [float(v) if _is_real(v) else v for v in old] if isinstance(old, list) else (
            float(old) if _is_real(old) else old)  # fmt: skip
    elif mutation == "flat_list":
        new = [v for item in old for v in (item if isinstance(item, list) else [item])] if (
            isinstance(old, list)) else [old]  # fmt: skip
    parent[last] = new
    return data


def _npz_mutation(path: Path, key: str, mutation: str, rng: random.Random) -> None:
    import zipfile

    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if mutation in ("not_npy_member", "huge_shape_header", "bit_flip_member"):
        members = {}
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                members[name] = archive.read(name)
        name = f"{key}.npy"
        if mutation == "not_npy_member":
            members[name] = b"not an npy file"
        elif mutation == "huge_shape_header":
            # a valid .npy header whose shape claims 1e11 rows (the doc's M3: a TiB allocation)
            array = arrays[key]
            blob = io.BytesIO()
            header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                      "shape": (10**11, *array.shape[1:])}  # fmt: skip
            np.lib.format.write_array_header_1_0(blob, header)
            members[name] = blob.getvalue() + array.tobytes()
        else:
            blob = bytearray(members[name])
            _flip_bits(blob, 0, len(blob), rng, count=8)
            members[name] = bytes(blob)
        path.unlink()
        with zipfile.ZipFile(path, "w") as archive:
            for member, blob in members.items():
                archive.writestr(member, blob)
        return
    array = arrays[key]
    if mutation == "delete":
        del arrays[key]
    elif mutation == "empty":
        arrays[key] = array.reshape(-1)[:0]
    elif mutation == "flat":
        arrays[key] = array.reshape(-1)
    elif mutation in ("nan", "huge"):
        if array.dtype.kind == "f" and array.size:
            array = array.copy()
            array.reshape(-1)[rng.randrange(array.size)] = np.nan if mutation == "nan" else 1e30
        else:
            array = np.full(array.shape, np.nan if mutation == "nan" else 1e30)
        arrays[key] = array
    elif mutation == "float64":
        arrays[key] = array.astype(np.float64) if array.dtype.kind in "fiu" else array
    elif mutation == "int":
        arrays[key] = array.astype(np.int64) if array.dtype.kind in "fiu" else np.arange(array.size)
    elif mutation == "strings":
        arrays[key] = np.array(["x"] * max(array.size, 1))
    elif mutation == "transpose":
        arrays[key] = array.T.copy()
    elif mutation == "non_utf8":
        names = array.copy().astype("S32")
        names[min(1, len(names) - 1)] = b"\xff\xfe\xfa"
        arrays[key] = names
    path.unlink()
    np.savez(path, **arrays)


def build_model(spec: dict[str, Any], fixtures: Fixtures, folder: Path, rng: random.Random) -> Path:
    """A hard-linked copy of the kind's folder with the case's mutation applied."""
    source = {"regression": fixtures.regression, "diffusion": fixtures.diffusion,
              "a2e": fixtures.a2e}[spec["kind"]].parent  # fmt: skip
    copy = folder / "model"
    shutil.copytree(source, copy, copy_function=os.link)
    target = copy / spec["file"]
    mutation = spec["mutation"]
    if spec["scope"] == "file":
        original = target.read_bytes()
        target.unlink()
        if mutation == "empty":
            target.write_bytes(b"")
        elif mutation == "garbage":
            target.write_bytes(rng.randbytes(max(16, min(len(original), 4096))))
        elif mutation == "truncate":
            target.write_bytes(original[: rng.randrange(1, max(2, len(original)))])
        elif mutation == "bit_flip":
            blob = bytearray(original)
            _flip_bits(blob, 0, len(blob), rng, count=8)
            target.write_bytes(bytes(blob))
        elif mutation == "folder":
            target.mkdir()
        elif mutation == "deep_json":
            target.write_text("[" * 100000 + "]" * 100000)
    elif spec["scope"] == "json":
        data = _json_mutation(json.loads(target.read_text()), spec["key_path"], mutation)
        _rewrite(target, _dump_json(data).encode())
    else:
        _npz_mutation(target, spec["key"], mutation, rng)
    return copy / "model.json"


# --------------------------------------------------------------------------------------------
# Running one case (worker side). Each returns (outcome, detail).


def _describe(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "a2x_core" in f.filename]
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}: {str(error)[:200]}{where}"


def _check_result(result: Any) -> tuple[str, str]:
    weights = np.asarray(result.weights)
    if not np.all(np.isfinite(weights)):
        return "silent", f"{int(np.count_nonzero(~np.isfinite(weights)))} non-finite weights"
    peak = float(np.max(np.abs(weights))) if weights.size else 0.0
    if peak > ABSURD_WEIGHT:
        return "silent", f"weights up to {peak:.3g}"
    return "accepted", ""


def _write_outputs(result: Any, out: Path) -> tuple[str, str] | None:
    """Write JSON, CSV and NPZ as a user would; None when they were written."""
    from a2x_core.errors import A2XError
    from a2x_core.export.writers import write_result

    for name in ("a.json", "a.csv", "a.npz"):
        try:
            write_result(result, out / name)
        except A2XError as error:
            return "typed", f"writing {name}: {error}"
        except Exception as error:  # noqa: BLE001 - any other exception is the finding
            return "crash", f"writing {name}: {_describe(error)}"
    return None


def _leftovers(out: Path, expected: set[str]) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name not in expected)


class Worker:
    """In the worker process: cached animators, a scratch folder per case."""

    def __init__(self, fixtures: Fixtures) -> None:
        self.fixtures = fixtures
        self._animators: dict[str, Any] = {}

    def animator(self, key: str) -> Any:
        from a2x_core.api import Animator

        if key not in self._animators:
            f = self.fixtures
            self._animators[key] = {
                "regression": lambda: Animator(f.regression),
                "diffusion": lambda: Animator(f.diffusion),
                "emotion": lambda: Animator(f.regression, emotion_model=f.a2e),
            }[key]()
        return self._animators[key]

    def run(
        self, case: Case, scratch: Path, on_run: Callable[[], None] = lambda: None
    ) -> tuple[str, str]:
        """Build the case's input, then (after ``on_run``) run it and classify the outcome."""
        from a2x_core.errors import A2XError

        rng = random.Random(case.ident)
        work, out = scratch / "in", scratch / "out"
        work.mkdir()
        out.mkdir()
        try:
            action = self._prepare(case, work, rng)
        except Exception as error:  # noqa: BLE001 - the test input could not be built
            return "skipped", f"build: {type(error).__name__}: {error}"
        on_run()
        try:
            result, invalid = action()
        except A2XError as error:
            left = _leftovers(out, set())
            if left:
                return "partial", f"typed error but left {left}"
            return "typed", str(error)[:200]
        except Exception as error:  # noqa: BLE001 - any other exception is the finding
            left = _leftovers(out, set())
            if left:
                return "partial", f"{_describe(error)}; left {left}"
            return "crash", _describe(error)
        if result is None:  # the CLI path writes and checks its own outputs
            return invalid  # type: ignore[return-value]
        outcome = _check_result(result)
        if outcome[0] == "accepted":
            written = _write_outputs(result, out)
            if written is not None:
                return written
            left = _leftovers(out, {"a.json", "a.csv", "a.npz"})
            if left:
                return "partial", f"left {left}"
            if invalid and not result.warnings:
                return "silent", f"accepted without a warning: {invalid}"
        return outcome

    def _prepare(self, case: Case, work: Path, rng: random.Random) -> Callable[[], Any]:
        spec = case.spec
        if case.category == "audio-api":
            return self._audio_action(spec, work, rng)
        if case.category.startswith("model-"):
            model_json = build_model(spec, self.fixtures, work, rng)
            return lambda: (self._model_run(spec, model_json), "")
        if case.category == "options-api":
            return self._options_action(spec)
        return self._cli_action(case, work)

    def _audio_action(
        self, spec: dict[str, Any], work: Path, rng: random.Random
    ) -> Callable[[], Any]:
        from a2x_core.audio.decode import audio_from_array, decode_audio

        animator = self.animator("regression")
        if "array_rate" in spec:
            speech, _ = speech_samples(1.0)
            rate = VALUE_TOKENS[spec["array_rate"]]()
            return lambda: (animator.animate(audio_from_array(speech, rate)), "")
        if "array" in spec:
            speech, _ = speech_samples(1.0)
            array = ARRAY_VALUES[spec["array"]](speech)
            invalid = f"{spec['array']} samples" if spec["array"] in (
                "complex", "strings", "object", "bool") else ""  # fmt: skip
            return lambda: (animator.animate(audio_from_array(array)), invalid)
        path = build_audio(spec, work, rng)
        return lambda: (animator.animate(decode_audio(path)), "")

    def _model_run(self, spec: dict[str, Any], model_json: Path) -> Any:
        from a2x_core.api import Animator

        speech_path = self.fixtures.clip
        if spec["kind"] == "a2e":
            return Animator(self.fixtures.regression, emotion_model=model_json).animate(speech_path)
        identity = next((n for n in ("Claire", "James", "Mark") if n in spec["file"]), None)
        return Animator(model_json).animate(speech_path, identity=identity)

    def _options_action(self, spec: dict[str, Any]) -> Callable[[], Any]:
        from a2x_core.api import Animator
        from a2x_core.options import InferenceOptions

        clip = self.fixtures.clip
        target = spec["target"]
        if target == "animator_model":
            value = VALUE_TOKENS[spec["value"]]()
            return lambda: (Animator(value).animate(clip), f"Animator({value!r})")
        if target == "emotions":
            value = EMOTION_VALUES[spec["value"]]()
            regression = self.animator("regression")
            return lambda: (regression.animate(clip, InferenceOptions(emotions=value)), "")
        if target == "parameter":
            value = VALUE_TOKENS[spec["value"]]()
            invalid = "" if _finite_real(value) and spec["key"] != "no_such_key" else (
                f"parameters[{spec['key']!r}]={value!r}")  # fmt: skip
            return lambda: (self.animator("regression").animate(
                clip, InferenceOptions(parameters={spec["key"]: value})), invalid)  # fmt: skip
        name, value = spec["field"], VALUE_TOKENS[spec["value"]]()
        invalid = "" if OPTION_FIELD_TYPES[name](value) else f"{name}={value!r}"
        load_fields = ("backend", "device", "precision", "threads", "compile_network")
        emotion_fields = ("emotion_window", "emotion_skip", "emotion_mix", "emotion_parameters")

        def action() -> Any:
            options = InferenceOptions(**{name: value})
            if name in load_fields:
                return Animator(self.fixtures.regression, options).animate(clip), invalid
            key = ("emotion" if name in emotion_fields else
                   "diffusion" if name == "identity" else "regression")  # fmt: skip
            return self.animator(key).animate(clip, options), invalid

        return action

    def _cli_action(self, case: Case, work: Path) -> Callable[[], Any]:
        argv, expect_overwrite = cli_argv(case.spec, self.fixtures, work)
        before = snapshot(work)

        def action() -> Any:
            from a2x_core import cli

            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = cli.main(argv)
            except SystemExit as stop:  # argparse's usage errors: exit 2 with a message
                code = stop.code if isinstance(stop.code, int) else 1
            after = snapshot(work)
            verdict = judge_cli(code, err.getvalue(), before, after, expect_overwrite)
            if verdict[0] == "accepted":
                for rel in sorted(set(after) - set(before)):
                    verdict = check_written_file(work / rel) or verdict
            return None, verdict

        return action


# --------------------------------------------------------------------------------------------
# CLI cases (shared by the in-process and the subprocess runner).


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: path -> content digest (links by target)."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                state[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                state[rel] = hashlib.sha1(path.read_bytes()).hexdigest()
            elif path.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = "special"
    return state


def cli_argv(spec: dict[str, Any], fixtures: Fixtures, work: Path) -> tuple[list[str], bool]:
    """The command line of a CLI case (inputs written under ``work``), and whether it passes
    ``--overwrite``."""
    f = fixtures
    out = work / "out"
    out.mkdir(exist_ok=True)
    base = ["animate", str(f.clip), "-q", "--model", str(f.regression)]
    output = ["-o", str(out / "a.json")]
    if "container" in spec or "path" in spec:  # an audio case through the CLI
        audio = build_audio(spec, work, random.Random(json.dumps(spec, sort_keys=True)))
        return ["animate", str(audio), "-q", "--model", str(f.regression),
                "-o", str(out / "a.csv")], False  # fmt: skip
    if "flag" in spec and "value" in spec:
        flag, value = spec["flag"], spec["value"]
        extra = [flag, value]
        if flag == "--emotion-param":
            extra += ["--emotion-model", str(f.a2e)]
        if flag == "--identity":
            base[base.index("--model") + 1] = str(f.diffusion)
        return [*base, *output, *extra], False
    if "file" in spec:
        path = work / f"input{spec['ext']}"
        path.write_bytes(CLI_FILE_CONTENTS[spec["file"]])
        return [*base, *output, spec["flag"], str(path)], False
    kind = spec["output"]
    if kind == "long_name":
        return [*base, "-o", str(out / ("y" * 300 + ".json"))], False
    if kind == "missing_folder":
        return [*base, "-o", str(out / "missing" / "a.json")], False
    if kind == "existing":
        (out / "a.json").write_text("precious\n")
        return [*base, *output], False
    if kind == "dangling_symlink":
        (out / "a.json").symlink_to(out / "nowhere.json")
        return [*base, *output], False
    if kind == "unknown_ext":
        return [*base, "-o", str(out / "a.txt")], False
    if kind == "folder_under_file":  # the doc's O4: `-o ok.wav/sub/` under an existing file
        (out / "a.json").write_text("a file\n")
        return ["animate", str(f.clip), str(f.clip2), "-q", "--model", str(f.regression),
                "-o", str(out / "a.json") + "/sub/"], False  # fmt: skip
    if kind == "plot_missing_folder":
        return [*base, *output, "--plot", str(out / "missing" / "p.png")], False
    if kind == "plot_proc":
        return [*base, *output, "--plot", "/proc/p.png"], False
    if kind == "overwrite_second_bad":
        # the second output fails only when written (/proc takes no new files): the first,
        # an existing file replaced under --overwrite, must survive the rollback
        (out / "a.json").write_text("precious\n")
        return [*base, "--overwrite", *output, "-o", "/proc/a2x-fuzz.npz"], True
    if kind == "two_clips_one_file":
        return ["animate", str(f.clip), str(f.clip2), "-q", "--model", str(f.regression),
                "-o", str(out / "multi.json")], False  # fmt: skip
    if kind == "same_output_twice":
        return [*base, *output, *output], False
    if kind == "output_is_folder":
        (out / "a.json").mkdir()
        return [*base, *output], False
    raise ValueError(kind)


def judge_cli(code: int, stderr: str, before: dict[str, str], after: dict[str, str],
              overwrite: bool) -> tuple[str, str]:  # fmt: skip
    """Classify one CLI run from its exit code, stderr and the folder before/after."""
    last = stderr.strip().splitlines()[-1:] or [""]
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    new = sorted(k for k in after if k not in before)
    hidden = [k for k in new if Path(k).name.startswith(".") and k.endswith(".tmp")]
    if code == 0:
        if hidden:
            return "partial", f"exit 0 but left {hidden}"
        if changed and not overwrite:
            return "partial", f"exit 0 replaced {changed} without --overwrite"
        return "accepted", f"wrote {sorted(k for k in after if k not in before)}"
    if "Traceback" in stderr or code not in (2, 130):
        return "crash", f"exit {code}: {last[0][:200]}"
    if new or changed:
        return "partial", f"exit {code} but left {new} / changed {changed}: {last[0][:120]}"
    return "typed", last[0][:200]


def check_written_file(path: Path) -> tuple[str, str] | None:
    """A written JSON/CSV output with non-finite or absurd weights is a silent accept, and so
    is a folder named like an output file (several clips into ``-o multi.json``)."""
    if path.is_dir():
        made_up = path.suffix.lower() in (".json", ".csv", ".npz")
        return ("silent", f"made a folder named {path.name}") if made_up else None
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            values = np.asarray(data.get("weightMat", []), dtype=float)
        elif path.suffix == ".csv":
            rows = path.read_text().splitlines()[1:]
            cells = [[float(c) for c in row.split(",")[2:]] for row in rows if row]
            values = np.array(cells, dtype=float)
        else:
            return None
    except (ValueError, OSError, AttributeError) as error:
        return "crash", f"unreadable output {path.name}: {error}"
    if values.size and not np.all(np.isfinite(values)):
        return "silent", f"{path.name} holds non-finite weights"
    if values.size and float(np.max(np.abs(values))) > ABSURD_WEIGHT:
        return "silent", f"{path.name} holds weights up to {float(np.max(np.abs(values))):.3g}"
    return None


# --------------------------------------------------------------------------------------------
# The worker process and the parent-side runner.


def serve(fixtures_json: str) -> None:
    """Worker main: JSON cases on stdin, one JSON answer per line on the saved stdout."""
    import resource

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # native libraries that print must not corrupt the answers
    sys.stdout = sys.stderr
    worker = Worker(Fixtures.from_json(json.loads(fixtures_json)))

    def send(answer: dict[str, str]) -> None:
        answers.write(json.dumps(answer) + "\n")
        answers.flush()

    worker.animator("regression")  # imports and the first session: not part of any case's time
    send({"ready": "1"})
    for line in sys.stdin:
        request = json.loads(line)
        case = Case(request["category"], request["ident"], request["spec"])
        scratch = Path(tempfile.mkdtemp(prefix="case-", dir=request["scratch"]))
        try:
            # the phase line tells a native crash of a2x from one of the input's writer
            # (LAME aborts on NaN samples): the latter is a skipped case, not a finding
            outcome, detail = worker.run(case, scratch, lambda: send({"phase": "run"}))
        except BaseException as error:  # noqa: BLE001 - a crash outside the case's action
            outcome, detail = "crash", f"harness: {_describe(error)}"
        shutil.rmtree(scratch, ignore_errors=True)
        send({"outcome": outcome, "detail": detail})


def _pump(stream: io.TextIOBase, lines: queue.Queue[str]) -> None:
    """Copy ``stream``'s lines into ``lines``, then "" at its end."""
    with contextlib.suppress(ValueError, OSError), stream:
        for line in stream:
            lines.put(line)
    lines.put("")


class Runner:
    """Runs cases with a per-case timeout: in-process ones in a worker process (restarted after
    a hang or a crash), ``cli`` ones as ``python -m a2x_core`` subprocesses."""

    def __init__(
        self, fixtures: Fixtures, timeout_s: float = 60.0, cli_timeout_s: float = 120.0
    ) -> None:
        self.fixtures = fixtures
        self.timeout_s = timeout_s
        self.cli_timeout_s = cli_timeout_s
        self.scratch = Path(tempfile.mkdtemp(prefix="a2x-fuzz-"))
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH", "")
        return dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{path}" if path else str(REPO),
                    A2X_PROGRESS_DELAY="1000")  # fmt: skip

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fuzz.harness", "serve",
                 json.dumps(self.fixtures.to_json())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, cwd=REPO, env=self._env(), start_new_session=True,
            )  # fmt: skip
            # a reader thread, not select(): the worker's phase and answer lines can arrive in
            # one read, and a buffered second line is invisible to select()
            self._lines = queue.Queue()
            pump = threading.Thread(target=_pump, args=(self._proc.stdout, self._lines))
            pump.daemon = True
            pump.start()
            if not self._next_line(WORKER_START_TIMEOUT_S):
                self._stop()
                raise RuntimeError("the fuzz worker did not start (python -m tests.fuzz.harness)")
        return self._proc

    def _next_line(self, timeout: float) -> str | None:
        """The worker's next line; "" at its end; None when none came within ``timeout``."""
        try:
            return self._lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def _stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()  # its stdout now ends: the reader thread puts "" and closes it
            if self._proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()
            self._proc = None

    def run(self, case: Case) -> Outcome:
        started = time.perf_counter()
        if case.category == "cli":
            outcome, detail = self._run_cli(case)
        else:
            outcome, detail = self._run_in_worker(case)
        return Outcome(case, outcome, detail, time.perf_counter() - started)

    def _run_in_worker(self, case: Case) -> tuple[str, str]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        request = {"category": case.category, "ident": case.ident, "spec": case.spec,
                   "scratch": str(self.scratch)}  # fmt: skip
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self._stop()
            return "crash", "the worker died before the case"
        deadline = time.monotonic() + self.timeout_s
        running = False
        while True:
            line = self._next_line(deadline - time.monotonic())
            if line is None:
                self._stop()
                return "hang", f"no answer within {self.timeout_s:.0f} s"
            if not line:
                code = proc.wait()
                self._stop()
                if not running:
                    return "skipped", f"build: the input's writer killed the worker (exit {code})"
                return "crash", f"the worker died (exit {code}, a native crash or the memory cap)"
            answer = json.loads(line)
            if "phase" in answer:
                running = True
                continue
            return answer["outcome"], answer["detail"]

    def _run_cli(self, case: Case) -> tuple[str, str]:
        work = Path(tempfile.mkdtemp(prefix="cli-", dir=self.scratch))
        try:
            try:
                argv, overwrite = cli_argv(case.spec, self.fixtures, work)
            except Exception as error:  # noqa: BLE001 - the test input could not be built
                return "skipped", f"build: {type(error).__name__}: {error}"
            before = snapshot(work)
            proc = subprocess.Popen(
                [sys.executable, "-m", "a2x_core", *argv], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, errors="replace", cwd=work, env=self._env(),
                start_new_session=True,
            )  # fmt: skip
            try:
                _, stderr = proc.communicate(timeout=self.cli_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                return "hang", f"no exit within {self.cli_timeout_s:.0f} s"
            outcome, detail = judge_cli(proc.returncode, stderr, before, snapshot(work), overwrite)
            if outcome == "accepted":
                for rel in sorted(set(snapshot(work)) - set(before)):
                    verdict = check_written_file(work / rel)
                    if verdict is not None:
                        return verdict
            return outcome, detail
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def run_all(
        self, cases: Iterable[Case], report: Callable[[Outcome], None] | None = None
    ) -> list[Outcome]:
        outcomes = []
        for case in cases:
            outcome = self.run(case)
            outcomes.append(outcome)
            if report is not None:
                report(outcome)
        return outcomes


# --------------------------------------------------------------------------------------------
# Reports.


def counts_table(outcomes: Sequence[Outcome]) -> str:
    """The Markdown counts table of docs/reliability.md (one row per category, then total)."""
    per = {c: Counter() for c in CATEGORIES}
    for o in outcomes:
        per[o.case.category][o.outcome] += 1
    head = ("| category | cases tried | clean typed errors | accepted (valid output) | crashes | "
            "silent accepts | hangs | partial files | skipped (input not built) |")  # fmt: skip
    lines = [head, "| --- |" + " ---: |" * 8]
    total: Counter[str] = Counter()
    for category, counter in per.items():
        if not counter:
            continue
        total.update(counter)
        lines.append(_row(CATEGORY_TITLES[category], counter))
    lines.append(_row("**total**", total))
    return "\n".join(lines)


def _row(title: str, counter: Counter[str]) -> str:
    cells = [sum(counter.values()), *(counter[o] for o in OUTCOMES)]
    return f"| {title} | " + " | ".join(f"{c:,}" for c in cells) + " |"


def failure_report(outcomes: Sequence[Outcome]) -> str:
    """One line per failing case: outcome, id (rerun with ``--only``), what happened."""
    return "\n".join(
        f"{o.outcome:8s} {o.case.ident}\n         {o.detail}"
        for o in outcomes
        if o.outcome in FAILURES
    )


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1])
        return 0
    print("usage: python -m tests.fuzz.harness serve FIXTURES_JSON (internal)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
