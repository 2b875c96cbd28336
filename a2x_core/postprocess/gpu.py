"""Everything around an Audio2Face-3D network on a torch device, batched over tracks (issue 6;
the diffusion model reuses the stages after its network).

The NumPy stages of :mod:`a2x_core.postprocess.cpu` and :mod:`a2x_core.blendshapes.cpu` run per track and per frame on
the CPU. Here the same SDK steps (spec §4 steps 3-7, §4.1) run for every track of a batch at
once, on the device that ran the network (CUDA; on the CPU too, which is how the tests compare
the two), and the network's output never leaves it:

- **Inputs** (:class:`DeviceInputs`): each track's samples are uploaded once and its audio
  windows gathered on the device per call (the same float32 values as ``audio_windows``).
- **Skin filters**: the two cascaded one-pole filters per face region are linear and the same
  for every coordinate, so a chunk of ``n`` frames is one ``[2n + 2, n + 4]`` matrix applied
  along the frame axis (:func:`cascade_matrix`: the frames' inputs and the four filter states
  in, every frame's second-stage output and the new states out). No loop over frames; a clip's
  first frame seeds the states as the SDK does.
- **What the solves need**: a blendshape solve reads only ``D^T (target - neutral)``. From the
  network's PCA coefficients to that projection every stage is linear -- PCA decode, correctives,
  filters, face-mask blend, region strengths, tongue offsets -- so it is evaluated from the
  (filtered) coefficients with ``[S, active]`` matrices folded once per run in float64
  (:class:`DevicePipeline`): the masked geometry (30,255 floats a frame for Mark) is never built.
  With ``geometry`` the full skin and tongue meshes are also decoded and filtered on the device
  (for the output only; the solves do not depend on it). A diffusion network outputs the deltas
  themselves: its basis is the identity (never built), its "coefficients" are the deltas of the
  solvers' masked columns and the folded matrices are ``[masked 3V, active]``.
- **Jaw** (Kabsch from the 5 keypoints in float64, by Horn's quaternion: no wait for the
  device), **eyes** (offsets, eyeball strength, the saccade table at the SDK's float32 clock,
  computed once per run).
- **Solves**: the SDK's GPU solver (ADMM, :mod:`a2x_core.blendshapes.gpu`), skin and tongue stacked
  into one block-diagonal system; frames sequential (temporal term), tracks batched; on CUDA the
  frame loop of a chunk is replayed as a CUDA graph.
- **Tracks** are slots of the state tensors: offline the clips of a batch, streaming any number
  of streams that join (:meth:`DevicePipeline.add_tracks`) and leave (``release``) while it
  runs, each chunk's rows at their own frame positions, the frames handed out as they come
  (``take``).

All of it is float32 (TF32 off) except the folded matrices and Kabsch (float64).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..backends.torch_engine import import_torch
from ..blendshapes.cpu import BlendshapeSolver
from ..blendshapes.gpu import AdmmSolver
from ..errors import ParameterError
from ..models.diffusion_folder import IdentityData
from ..models.regression_folder import ModelData
from .cpu import SkinAnimator

_F32 = np.float32
#: Jaw (15) and eyes (4) outputs after the PCA coefficients of the network result.
JAW_SIZE, EYES_SIZE = 15, 4
#: The outputs of a frame (:meth:`DevicePipeline.take`, :meth:`DevicePipeline.finish`).
OUTPUT_NAMES = ("skin", "tongue", "jaw", "eyes")
#: Largest intermediate of the optional geometry decode, in elements (tracks are grouped).
GEOMETRY_BLOCK = 1 << 27
#: Outputs kept on the device before they are copied to the host, in bytes.
SINK_BYTES = 256 << 20
#: Saccade-table rows computed at least at once when a stream outgrows them (~3 ms of host work).
SACCADE_GROWTH = 1024
def upload(torch: Any, array: np.ndarray, device: Any) -> Any:
    """A host array on ``device`` without waiting for the device: on CUDA through page-locked
    memory and an asynchronous copy (a plain copy from pageable memory waits for the stream)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def real_rows(counts: Sequence[int], frames: int) -> np.ndarray | None:
    """Indices of the real rows of an offline call's ``[tracks * frames]`` network rows, where
    track ``k`` has ``counts[k]`` real frames and the rest is padding; None when none is padding.

    Tracks that end inside a call (200 clips of 1-2 s at 60 fps: 17 % of the rows) would
    otherwise run the network on rows whose outputs the pipeline drops."""
    counts = np.asarray(counts, dtype=np.int64)
    if not len(counts) or counts.min() >= frames:
        return None
    return np.flatnonzero((np.arange(frames)[None, :] < counts[:, None]).reshape(-1))


def padded_rows(torch: Any, result: Any, rows: np.ndarray | Any, total: int) -> Any:
    """The network outputs of the real ``rows`` (:func:`real_rows`, host or device indices)
    back at their places among ``total`` rows; padding rows are zeros (their frames lie past
    their track's end: filtered and solved like any row, then dropped)."""
    full = result.new_zeros((total, *result.shape[1:]))
    if not isinstance(rows, torch.Tensor) or rows.device != result.device:
        rows = upload(torch, np.asarray(rows, dtype=np.int64), result.device)
    full[rows] = result
    return full


#: Where the stages after an Audio2Face-3D network run (the models' ``postprocess``).
POSTPROCESS_CHOICES = ("auto", "numpy", "cpu", "cuda", "cuda:N")


def postprocess_choice(choice: str, auto: str | None) -> str | None:
    """The torch device named by a model's ``postprocess``, or None for the NumPy stages.

    Args:
        choice: "auto", "numpy", "cpu", "cuda" or "cuda:N".
        auto: what "auto" means for the model and engine at hand (a device, or None).

    Raises:
        ParameterError: ``choice`` is not one of :data:`POSTPROCESS_CHOICES`.
    """
    choice = str(choice)
    if choice == "numpy":
        return None
    if choice == "auto":
        return auto
    if choice in ("cpu", "cuda") or (choice.startswith("cuda:") and choice[5:].isdigit()):
        return choice
    raise ParameterError(
        f"unknown postprocess device {choice!r}",
        hint="use one of: " + ", ".join(POSTPROCESS_CHOICES),
    )


def same_device(torch: Any, a: Any, b: Any) -> bool:
    """Whether two torch devices are one ("cuda" is the current CUDA device)."""
    if a is None:
        return False
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


def cascade_matrix(alpha_upper: float, alpha_lower: float, frames: int) -> np.ndarray:
    """The two regions' cascaded one-pole filters over ``frames`` frames as one linear map.

    Per region the SDK runs ``s1 += (d - s1) a; s2 += (s1 - s2) a`` per frame (``a <= 0``: off,
    ``s1 = s2 = d``, which is ``a = 1``). Columns: ``d_0 .. d_{n-1}``, then the states
    ``upper s1, upper s2, lower s1, lower s2`` before the chunk. Rows: upper ``s2`` after each
    frame, upper ``s1`` after the last; then the same for the lower region -> ``[2n + 2, n + 4]``
    (float64). A clip's first frame seeds the states with ``d_0``: pass ``d_0`` as the states.
    """
    n = int(frames)
    out = np.zeros((2 * n + 2, n + 4))
    for region, alpha in enumerate((alpha_upper, alpha_lower)):
        a = float(alpha) if alpha > 0 else 1.0
        s1 = np.zeros(n + 4)
        s2 = np.zeros(n + 4)
        s1[n + 2 * region] = 1.0
        s2[n + 2 * region + 1] = 1.0
        rows = out[region * (n + 1) : (region + 1) * (n + 1)]
        for t in range(n):
            d = np.zeros(n + 4)
            d[t] = 1.0
            s1 = s1 + (d - s1) * a
            s2 = s2 + (s1 - s2) * a
            rows[t] = s2
        rows[n] = s1
    return out


class SaccadeClock:
    """The rows of the saccade table frame after frame, with the float32 clock of
    :class:`a2x_core.postprocess.cpu.EyesAnimator` (``wrap(seed + live_time)``, ``live_time += dt * 30``
    wrapped modulo the table): the same for every track, since all start from a reset.

    The clock is a float32 recurrence (not periodic in general), so the rows are extended on
    demand (:meth:`extend`) from where the last extension stopped: a stream's length is unknown.
    """

    def __init__(self, params: Mapping[str, Any], table_frames: int, dt: np.float32) -> None:
        self.size = _F32(table_frames)
        self.seed = _F32(params["eye_saccade_seed"])
        self.increment = _F32(dt * _F32(30))
        self.live = _F32(0)  # the clock before the next frame
        self.frames = 0  # rows produced so far

    def _wrap(self, value: np.float32) -> np.float32:
        result = _F32(np.fmod(value, self.size))
        return _F32(result + self.size) if result < 0 else result

    def extend(self, frames: int) -> np.ndarray:
        """The rows of the next ``frames`` frames (int64)."""
        rows = np.empty(max(0, int(frames)), dtype=np.int64)
        live, seed, increment, wrap = self.live, self.seed, self.increment, self._wrap
        for i in range(len(rows)):
            rows[i] = int(wrap(_F32(seed + live)))
            live = wrap(_F32(live + increment))
        self.live = live
        self.frames += len(rows)
        return rows


def saccade_rows(params: Mapping[str, Any], table_frames: int, dt: np.float32, frames: int) -> np.ndarray:
    """Row of the saccade table for each of a clip's first ``frames`` frames
    (:class:`SaccadeClock` from a reset)."""
    return SaccadeClock(params, table_frames, dt).extend(frames)


def _solver_key(*solvers: BlendshapeSolver) -> str:
    """A digest of everything an :class:`AdmmSolver` is built from."""
    digest = hashlib.sha256()
    for s in solvers:
        for array in (s.matrix, s.active, np.asarray(s.cancel_pairs, np.int64), s.multipliers,
                      s.offsets, np.float64(s.temporal_b), np.int64(s.num_poses)):  # fmt: skip
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _strict_fp32(torch: Any) -> Iterator[None]:
    """Float32 matrix products in full precision (no TF32), restored afterwards."""
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32 = saved


#: Squarings of Horn's 4x4 matrix (:func:`best_rotations`): the power iteration's 2^20 steps
#: converge to float64 precision unless the two largest eigenvalues agree to ~1e-5 (keypoints
#: on one line, where no rotation is defined); renormalised every few squarings.
HORN_SQUARINGS, HORN_NORMALISE_EVERY = 20, 4


def _horn_tables() -> tuple[np.ndarray, np.ndarray]:
    """Horn's symmetric 4x4 matrix as a linear map of the flat cross-covariance ``[9] -> [16]``,
    and the rotation of a unit quaternion ``q`` as a linear map of ``q q^T`` ``[16] -> [9]``."""
    xx, xy, xz, yx, yy, yz, zx, zy, zz = range(9)
    horn = {  # (row, column) of the 4x4 matrix: {covariance entry: sign}
        (0, 0): {xx: 1, yy: 1, zz: 1}, (0, 1): {yz: 1, zy: -1}, (0, 2): {zx: 1, xz: -1},
        (0, 3): {xy: 1, yx: -1}, (1, 1): {xx: 1, yy: -1, zz: -1}, (1, 2): {xy: 1, yx: 1},
        (1, 3): {zx: 1, xz: 1}, (2, 2): {xx: -1, yy: 1, zz: -1}, (2, 3): {yz: 1, zy: 1},
        (3, 3): {xx: -1, yy: -1, zz: 1},
    }  # fmt: skip
    to_horn = np.zeros((9, 16))
    for (r, c), terms in horn.items():
        for entry, sign in terms.items():
            to_horn[entry, 4 * r + c] = to_horn[entry, 4 * c + r] = sign
    w, x, y, z = range(4)
    rotation = [  # rotation entries (row-major) from the products q_a q_b: {(a, b): factor}
        {(w, w): 1, (x, x): 1, (y, y): -1, (z, z): -1}, {(x, y): 2, (w, z): -2},
        {(x, z): 2, (w, y): 2}, {(x, y): 2, (w, z): 2}, {(w, w): 1, (x, x): -1, (y, y): 1, (z, z): -1},
        {(y, z): 2, (w, x): -2}, {(x, z): 2, (w, y): -2}, {(y, z): 2, (w, x): 2},
        {(w, w): 1, (x, x): -1, (y, y): -1, (z, z): 1},
    ]  # fmt: skip
    to_rotation = np.zeros((16, 9))
    for entry, terms in enumerate(rotation):
        for (a, b), factor in terms.items():
            to_rotation[4 * a + b, entry] = factor
    return to_horn, to_rotation


_HORN_TABLES = _horn_tables()
_horn_cache: dict[tuple[str, Any], tuple[Any, Any, Any]] = {}


def best_rotations(torch: Any, h: Any) -> Any:
    """Proper rotations ``[N, 3, 3]`` maximising ``trace(R H)`` for cross-covariances ``h``
    ``[N, 3, 3]`` (float64): the Kabsch rotation ``V diag(1, 1, det(V U^T)) U^T`` of
    ``H = U S V^T``, found the way Horn (1987) does, as the unit quaternion of the largest
    eigenvalue of a symmetric 4x4 matrix.

    Why not ``torch.linalg.svd``: on CUDA it checks its result on the host, a wait for the
    device in the middle of a stream bank's tick. Here the eigenvector comes from repeated
    squaring (a power iteration of 2^20 steps), matrix products only: no wait, and a few dozen
    launches for any number of fits. A zero cross-covariance gives the identity, as the SVD.
    """
    key = (str(h.device), h.dtype)
    if key not in _horn_cache:  # device constants made once (a copy per call would wait)
        to_horn, to_rotation = (torch.as_tensor(t, dtype=h.dtype, device=h.device)
                                for t in _HORN_TABLES)  # fmt: skip
        _horn_cache[key] = (to_horn, to_rotation, torch.eye(4, dtype=h.dtype, device=h.device))
    to_horn, to_rotation, eye = _horn_cache[key]
    n = (h.reshape(-1, 9) @ to_horn).reshape(-1, 4, 4)
    # eigenvalues of n / |n|_F lie in [-1, 1]: (that + I) / 2 is positive semi-definite with
    # the same eigenvectors, its largest eigenvalue >= 3/4 (trace(n) = 0)
    scale = torch.linalg.matrix_norm(n).clamp_min(torch.finfo(n.dtype).tiny)
    m = (n / scale[:, None, None] + eye) * 0.5
    for k in range(HORN_SQUARINGS):
        m = m @ m
        if (k + 1) % HORN_NORMALISE_EVERY == 0:
            m = m / m.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
    # m ~ q q^T: its column with the largest diagonal entry is q times a nonzero number
    pick = m.diagonal(dim1=1, dim2=2).argmax(-1)
    q = torch.gather(m, 2, pick[:, None, None].expand(-1, 4, 1))
    qq = (q @ q.mT) / (q.mT @ q)
    return (qq.reshape(-1, 16) @ to_rotation).reshape(-1, 3, 3)


def kabsch_transforms(torch: Any, jaw: Any, neutral: Any, strength: float, offset: Any) -> Any:
    """Jaw 4x4 transforms ``[N, 4, 4]`` float32 from jaw deltas ``[N, 15]`` (as
    :func:`a2x_core.postprocess.cpu.jaw_transforms`: targets ``neutral + delta * strength + (0, h, d)`` in
    float32, then Kabsch from the neutral keypoints in float64, :func:`best_rotations`)."""
    target = (neutral + jaw.reshape(-1, 5, 3) * _F32(strength)) + offset
    src = neutral.double()
    tgt = target.double()
    src_mean = src.mean(dim=0)
    tgt_mean = tgt.mean(dim=1)
    h = torch.einsum("ki,nkj->nij", src - src_mean, tgt - tgt_mean[:, None, :])
    rot = best_rotations(torch, h)
    trans = tgt_mean - rot @ src_mean
    out = torch.zeros((len(h), 4, 4), dtype=torch.float32, device=h.device)
    out[:, :3, :3] = rot
    out[:, :3, 3] = trans
    out[:, 3, 3] = 1.0
    return out


class DeviceInputs:
    """The network inputs of every track on the device: samples uploaded once, windows gathered
    per call (``[target - buffer_ofs, + buffer_len)``, zero outside the audio, times
    ``input_strength``, as :func:`a2x_core.audio.windows.audio_windows`), and the emotion rows.

    Frames past a track's end (a chunk's padding) repeat its last frame.
    """

    def __init__(
        self,
        device: str,
        samples: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        emotions: Sequence[np.ndarray],
        buffer_len: int,
        buffer_ofs: int,
        input_strength: float,
        frames: int,
    ) -> None:
        torch = import_torch()
        self.torch = torch
        self.device = torch.device(device)
        self.buffer_len = int(buffer_len)
        tracks = len(samples)
        width = max((len(s) for s in samples), default=0) + buffer_ofs + buffer_len
        audio = np.zeros((tracks, width), dtype=np.float32)  # one upload, no per-track waits
        starts = np.zeros((tracks, frames), dtype=np.int64)
        emotion_size = emotions[0].shape[1] if tracks else 0
        emo = np.zeros((tracks, frames, emotion_size), dtype=np.float32)
        for k, (s, t, e) in enumerate(zip(samples, targets, emotions, strict=True)):
            audio[k, buffer_ofs : buffer_ofs + len(s)] = s
            if len(t):
                # window start in the padded row: target - buffer_ofs + buffer_ofs
                starts[k, : len(t)] = t
                starts[k, len(t) :] = t[-1]
                emo[k, : len(t)] = e
                emo[k, len(t) :] = e[-1]
        self.audio = upload(torch, audio, self.device)
        self.starts = upload(torch, starts, self.device)
        self.emotions = upload(torch, emo, self.device)
        self.strength = None if input_strength == 1.0 else _F32(input_strength)

    @staticmethod
    def nbytes(samples: Sequence[np.ndarray], buffer_len: int, buffer_ofs: int) -> int:
        """Device bytes the padded samples take (to choose between this and host windows)."""
        longest = max((len(s) for s in samples), default=0)
        return 4 * len(samples) * (longest + buffer_len + buffer_ofs)

    def rows(self, live: Any, start: int, frames: int) -> tuple[Any, Any]:
        """``input`` ``[G * frames, 1, buffer_len]`` and ``emotion`` ``[G * frames, 1, E]`` of
        frames ``start ..`` of the tracks ``live`` (index tensor; None = all)."""
        torch = self.torch
        stop = start + frames
        if live is None:
            live = torch.arange(len(self.audio), device=self.device)
            emo = self.emotions[:, start:stop]
        else:
            emo = self.emotions[live, start:stop]
        view = self.audio.unfold(1, self.buffer_len, 1)  # [tracks, positions, buffer_len]
        audio = view[live[:, None], self.starts[live, start:stop]]
        if self.strength is not None:  # the SDK skips the multiply at exactly 1
            audio.mul_(self.strength)
        return (audio.reshape(-1, 1, self.buffer_len),
                emo.reshape(-1, 1, emo.shape[-1]))  # fmt: skip


class CompiledNetwork:
    """A torch engine's graph compiled by ``torch.compile`` (inductor) for one batch size and
    replayed as a CUDA graph: an explicit option for throughput (``RegressionModel
    .compile_network``), 1.6-1.7x the engine's own CUDA graphs on an H200 in bf16 / fp16
    (docs/benchmarks.md).

    The graph is traced once at the first call (``make_fx``: the engine's node-by-node
    interpreter and its host-side shape logic run once, leaving only tensor operations) and
    compiled for ``rows`` rows (several seconds; inductor caches on disk). Every batch runs as
    ``rows``-row passes, the last one padded, so a row's result never depends on the batch it
    came in (and no other size is ever compiled). On CUDA only.

    Args:
        engine: a :class:`~.backends.torch_engine.TorchEngine` on a CUDA device.
        rows: rows per compiled pass.
        mode: ``torch.compile``'s mode (None: its default; the benchmarks try others).
    """

    def __init__(self, engine: Any, rows: int = 256, mode: str | None = None) -> None:
        self.engine = engine
        self.torch = engine.torch
        self.rows = int(rows)
        self.mode = mode or None
        self.device = engine.device
        self._graph: tuple[Any, list[Any], list[Any]] | None = None

    def _build(self, like: Sequence[Any]) -> tuple[Any, list[Any], list[Any]]:
        torch = self.torch
        from torch.fx.experimental.proxy_tensor import make_fx

        from ..backends.torch_engine import _math_mode

        engine, graph = self.engine, self.engine.graph
        gen = torch.Generator(device=self.device).manual_seed(0)
        static = [torch.rand((self.rows, *t.shape[1:]), generator=gen, device=self.device,
                             dtype=t.dtype) for t in like]  # fmt: skip
        with torch.no_grad(), _math_mode(torch, engine.precision):
            graph(*static)  # fills the engine's converted-weight caches outside the trace
            traced = make_fx(lambda *xs: graph(*xs))(*static)
            compiled = torch.compile(traced, dynamic=False, mode=self.mode)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(3):  # compile, autotune, allocator warm-up off the graph
                    compiled(*static)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            cuda_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(cuda_graph):
                outs = list(compiled(*static))
        return cuda_graph, static, outs

    def run_device(self, tensors: Sequence[Any]) -> list[Any]:
        """Device tensors in (the file's input order) -> new output tensors."""
        if self._graph is None:
            self._graph = self._build(tensors)
        cuda_graph, static, outs = self._graph
        total = int(tensors[0].shape[0])
        results = [self.torch.empty((total, *o.shape[1:]), dtype=o.dtype, device=o.device)
                   for o in outs]  # fmt: skip
        for start in range(0, total, self.rows):
            stop = min(start + self.rows, total)
            for dst, src in zip(static, tensors, strict=True):
                dst[: stop - start].copy_(src[start:stop])
            cuda_graph.replay()
            for dst, out in zip(results, outs, strict=True):
                dst[start:stop].copy_(out[: stop - start])
        return results


def _fold(basis: Any | None, x: Any) -> Any:
    """``basis @ x`` (the coefficients' share of ``x``), or ``x`` for the identity basis (None)."""
    return x if basis is None else basis @ x


def _neutrals(data: ModelData | IdentityData) -> tuple[np.ndarray, np.ndarray]:
    """Skin and tongue neutral of a regression ``model_data.npz`` or a diffusion identity."""
    if isinstance(data, ModelData):
        return data.shapes_mean_skin, data.shapes_mean_tongue
    return data.neutral_skin, data.neutral_tongue


class DevicePipeline:
    """PCA decode, skin/tongue post-process, jaw, eyes and both blendshape solves for a batch of
    tracks on a torch device, chunk by chunk, with per-track state (filters, solver).

    A frame's row is ``[skin, tongue, jaw 15, eyes 4]``: the skin and tongue parts are PCA
    coefficients (regression) or, with the basis None, the deltas themselves (diffusion, whose
    network predicts ``[3V]`` and ``[3VT]`` deltas).

    Each track is a *slot* (a row of the state tensors). Offline, the slots are the clips of
    ``lengths``; a streaming executor adds slots while the pipeline runs (:meth:`add_tracks`),
    feeds each its own frame positions (:meth:`step` with one start per row), collects the
    frames as they come (:meth:`take`) and frees a slot for the next stream (:meth:`release`).
    Outputs are kept per slot as the chunks the device returned, so the two uses share one
    storage: :meth:`take` hands out what is new, :meth:`finish` what was never taken.

    Args:
        device: torch device string ("cuda", "cuda:1", "cpu").
        params: the run's animator parameters (model_config.json keys, validated).
        data: the model's ``model_data.npz`` arrays, or a diffusion identity's.
        skin_basis, tongue_basis: PCA bases ``[S, 3V]`` / ``[T, 3VT]`` (float32); None = the
            rows hold the deltas (an identity basis, never built).
        skin_solver, tongue_solver: the run's prepared CPU solvers (configs, masks, matrices).
        dt: frame period (``frame_dt``).
        lengths: frames of each track (a track's outputs end with its frames, whatever padding
            its chunks carry); None = no tracks yet (streams: :meth:`add_tracks`).
        geometry: also decode the skin and tongue meshes (returned by :meth:`finish`; offline
            only: it needs ``lengths`` and refuses the streaming calls).
        cache: a dict kept by the caller between runs for the device copies of the bases.
        cuda_graphs: replay each chunk's solver frame loop as a CUDA graph (CUDA only).
    """

    def __init__(
        self,
        device: str,
        params: Mapping[str, Any],
        data: ModelData,
        skin_basis: np.ndarray,
        tongue_basis: np.ndarray,
        skin_solver: BlendshapeSolver,
        tongue_solver: BlendshapeSolver,
        dt: np.float32,
        lengths: Sequence[int] | None = None,
        *,
        geometry: bool = False,
        cache: dict[Any, Any] | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        torch = import_torch()
        self.torch = torch
        self.device = torch.device(device)
        self.geometry = bool(geometry)
        if self.geometry and lengths is None:
            raise ParameterError(
                "geometry is decoded for offline runs only (the tracks' lengths are needed)",
                hint="pass lengths, or run streams without geometry",
            )
        #: frames of each slot's track; -1: unknown (a stream: every frame it is given is kept)
        self._limits = np.asarray([] if lengths is None else lengths, dtype=np.int64).reshape(-1)
        neutral_skin, neutral_tongue = _neutrals(data)
        #: columns of a row: skin, tongue (coefficients or deltas)
        self.s_width = neutral_skin.size if skin_basis is None else int(skin_basis.shape[0])
        self.t_width = neutral_tongue.size if tongue_basis is None else int(tongue_basis.shape[0])
        cache = {} if cache is None else cache
        dev = self.device

        def cached(name: str, array: np.ndarray | None) -> Any:
            if array is None:
                return None
            key = (name, str(dev), id(array))
            if key not in cache:
                cache[key] = torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32),
                                             device=dev)  # fmt: skip
            return cache[key]

        def f32(a: Any) -> Any:
            return torch.as_tensor(np.asarray(a, dtype=np.float32), device=dev)

        def f64(a: Any) -> Any:
            return torch.as_tensor(np.asarray(a, dtype=np.float64), device=dev)

        # scalars as Python floats holding float32 values (torch rounds them to float32 again)
        p = {k: float(_F32(v)) for k, v in params.items() if isinstance(v, int | float)}
        skin = SkinAnimator(params, neutral_skin, data.eye_close_pose_delta,
                            data.lip_open_pose_delta, dt)  # fmt: skip
        self.alphas = (float(skin.upper_alpha), float(skin.lower_alpha))
        #: cascade matrices by frames, kept in the caller's cache across runs (a new matrix
        #: built and copied per run waited for the device mid-call)
        self._cascades: dict[Any, Any] = cache
        basis = cached("skin_basis", skin_basis)
        tbasis = cached("tongue_basis", tongue_basis)

        def columns(full: Any, cols: np.ndarray | None) -> tuple[Any, Any]:
            """(basis rows of the solver's columns in float64, the row's columns to filter)."""
            index = None if cols is None else torch.as_tensor(cols, device=dev)
            if full is None:  # deltas in: filter the solver's columns themselves
                return None, index
            return (full if index is None else full[:, index]).double(), None

        # fold decode -> correctives -> filters -> mask blend -> strengths -> D^T (. - n) (float64)
        corr = skin.eye_term.astype(np.float64) + skin.lip_term.astype(np.float64)
        cols = skin_solver.mask_columns
        pick = slice(None) if cols is None else cols
        delta = f64(skin_solver.delta_t.T)  # [rows, A]
        b_m, self.s_pick = columns(basis, cols)
        inv, mask = f64(skin.inv_mask[pick]), f64(skin.mask[pick])
        us, ls = float(skin.upper_strength), float(skin.lower_strength)
        ss = float(skin.skin_strength)
        with _strict_fp32(torch):
            self.p_upper = (_fold(b_m, inv[:, None] * delta) * (ss * us)).float()
            self.p_lower = (_fold(b_m, mask[:, None] * delta) * (ss * ls)).float()
            k0 = (f64(skin.neutral[pick]) - f64(skin_solver.neutral)) @ delta
            k0 = k0 + (f64(corr[pick]) * inv) @ delta * us + (f64(corr[pick]) * mask) @ delta * ls
            # tongue: neutral + delta * strength, then y += height, z += depth
            tcols = tongue_solver.mask_columns
            tpick = slice(None) if tcols is None else tcols
            offset = np.zeros((len(neutral_tongue.reshape(-1, 3)), 3))
            offset[:, 1], offset[:, 2] = p["tongue_height_offset"], p["tongue_depth_offset"]
            t_neutral = neutral_tongue.reshape(-1).astype(np.float64) + offset.reshape(-1)
            tdelta = f64(tongue_solver.delta_t.T)
            tb_m, self.t_pick = columns(tbasis, tcols)
            self.p_tongue = (_fold(tb_m, tdelta) * float(p["tongue_strength"])).float()
            kt0 = (f64(t_neutral[tpick]) - f64(tongue_solver.neutral)) @ tdelta
        self.k_skin, self.k_tongue = k0.float(), kt0.float()
        # the stacked solver (and its captured CUDA graphs) is reused while the configs repeat
        key = ("admm", str(dev), bool(cuda_graphs), _solver_key(skin_solver, tongue_solver))
        if key not in cache:
            for old in [k for k in cache if k[0] == "admm"]:
                del cache[old]  # one stacked solver per model: free the graphs of the last
            cache[key] = AdmmSolver([skin_solver, tongue_solver], str(dev), cuda_graphs=cuda_graphs)
        self.admm = cache[key]
        self.skin_active = len(skin_solver.active)

        # jaw and eyes
        self.neutral_jaw = f32(np.asarray(data.neutral_jaw, _F32).reshape(5, 3))
        self.jaw_strength = p["lower_teeth_strength"]
        self.jaw_offset = f32([0.0, p["lower_teeth_height_offset"], p["lower_teeth_depth_offset"]])
        saccade = np.asarray(data.saccade_rot_matrix, dtype=_F32).reshape(-1, 2)
        self.saccade = f32(saccade)
        self.eye_offsets = f32([params["right_eye_rot_x_offset"], params["right_eye_rot_y_offset"],
                                params["left_eye_rot_x_offset"], params["left_eye_rot_y_offset"]])  # fmt: skip
        self.eyeballs, self.saccade_strength = p["eyeballs_strength"], p["saccade_strength"]
        self._saccade_clock = SaccadeClock(params, len(saccade), dt)
        longest = int(self._limits.max()) if len(self._limits) else 0
        self._saccade_rows = torch.as_tensor(self._saccade_clock.extend(longest), device=dev)

        # optional geometry (output only)
        if self.geometry:
            self.g_basis, self.g_tbasis = basis, tbasis  # None: the rows hold the deltas
            self.g_size, self.g_tsize = neutral_skin.size, neutral_tongue.size
            self.g_neutral, self.g_mask, self.g_inv = f32(skin.neutral), f32(skin.mask), f32(skin.inv_mask)
            self.g_eye, self.g_lip = f32(skin.eye_term), f32(skin.lip_term)
            self.g_strengths = (ss, us, ls)
            self.g_tneutral = f32(neutral_tongue.reshape(-1))
            self.g_tstrength = p["tongue_strength"]
            self.g_toffset = f32([0.0, p["tongue_height_offset"], p["tongue_depth_offset"]])
        self.reset()

    # ------------------------------------------------------------------------- state

    def reset(self) -> None:
        """Fresh filter and solver state for every slot; outputs (taken or not) cleared."""
        self._capacity = len(self._limits)  # rows of the state tensors (>= the slots)
        self._filters: Any = None  # [capacity, 4, S]: upper s1, s2, lower s1, s2 (coefficients)
        self._geo_filters: Any = None  # [capacity, 4, 3V] with ``geometry``
        self._prev = self.torch.zeros((self._capacity, self.admm.num_active), device=self.device)
        #: per chunk on the device: (live, release epoch, start(s), frames, packed rows, the
        #: slots on the host where the caller named them there, else None)
        self._pending: list[tuple[Any, int, int | np.ndarray, int, Any, np.ndarray | None]] = []
        self._pending_bytes = 0
        #: per slot, its rows of the host chunks not yet taken: (first frame, frames, row, the
        #: chunk's outputs split once per chunk -- skin, tongue, jaw, eyes, frame indices)
        self._chunks: dict[int, list[tuple[int, int, int, tuple[np.ndarray, ...]]]] = {}
        self._free: list[int] = []  # released slots, reused first (smallest first)
        self._epoch = 0  # releases so far: a pending row older than its slot's release is dropped
        self._released_at = np.full(len(self._limits), -1, dtype=np.int64)
        self._geo: dict[str, dict[int, list[np.ndarray]]] = {"skin": {}, "tongue": {}}

    @property
    def tracks(self) -> int:
        """Slots, released ones included (the rows ``live=None`` means)."""
        return len(self._limits)

    def add_tracks(self, count: int) -> list[int]:
        """Slots for ``count`` new streams (of unknown length): released slots first, then new
        rows of the state tensors. Each starts fresh: its first chunk starts at frame 0.

        Raises:
            ParameterError: ``count`` is negative, or the pipeline decodes geometry.
        """
        self._streaming("add_tracks")
        count = int(count)
        if count < 0:
            raise ParameterError(f"add_tracks: count must be >= 0, got {count}")
        slots = [heapq.heappop(self._free) for _ in range(min(count, len(self._free)))]
        fresh = count - len(slots)
        if fresh:
            first = self.tracks
            self._limits = np.concatenate([self._limits, np.full(fresh, -1, np.int64)])
            self._released_at = np.concatenate([self._released_at, np.full(fresh, -1, np.int64)])
            self._grow(self.tracks)
            slots.extend(range(first, first + fresh))
        return slots

    def release(self, slot: int) -> None:
        """Free ``slot`` for a later :meth:`add_tracks`: its state is reset, and its frames not
        yet taken (on the host or still on the device) are dropped -- :meth:`take` first to keep
        them.

        Raises:
            ParameterError: ``slot`` is not a slot in use, or the pipeline decodes geometry.
        """
        self._streaming("release")
        slot = int(slot)
        if not 0 <= slot < self.tracks or slot in self._free:
            raise ParameterError(
                f"release: slot {slot} is not in use (slots in use: {self.tracks - len(self._free)}"
                f" of {self.tracks})",
                hint="release each slot returned by add_tracks once",
            )
        with self.torch.inference_mode():
            for state in (self._filters, self._prev):
                if state is not None:
                    state[slot] = 0
        self._chunks.pop(slot, None)
        self._limits[slot] = -1
        self._released_at[slot] = self._epoch
        self._epoch += 1
        heapq.heappush(self._free, slot)

    def _streaming(self, call: str) -> None:
        if self.geometry:
            raise ParameterError(
                f"{call}: geometry is decoded for offline runs only",
                hint="build the pipeline without geometry for streams",
            )

    def _grow(self, rows: int) -> None:
        """State tensors with room for ``rows`` slots (doubling: streams join one at a time)."""
        if rows <= self._capacity:
            return
        capacity = max(rows, 2 * self._capacity)
        torch = self.torch
        for name in ("_filters", "_geo_filters", "_prev"):
            state = getattr(self, name)
            if state is not None:
                grown = torch.zeros((capacity, *state.shape[1:]), dtype=state.dtype,
                                    device=self.device)  # fmt: skip
                grown[: len(state)] = state
                setattr(self, name, grown)
        self._capacity = capacity

    def _width(self) -> int:
        solvers = self.admm._solvers
        return solvers[0].num_poses + solvers[1].num_poses + 16 + 6

    def _cascade(self, frames: int) -> tuple[Any, Any]:
        """:func:`cascade_matrix` for ``frames`` frames and the rows of its output that are the
        new states (upper s1, s2, lower s1, s2), on the device (indexing by a host list would
        wait for the device). Built once per (alphas, frames) and device; uploaded through
        page-locked memory (a plain copy would wait for the device's queued work)."""
        key = ("cascade", str(self.device), self.alphas, int(frames))
        if key not in self._cascades:
            n = int(frames)
            states = np.asarray([n, n - 1, 2 * n + 1, 2 * n], dtype=np.int64)
            self._cascades[key] = (
                upload(self.torch, cascade_matrix(*self.alphas, n).astype(np.float32), self.device),
                upload(self.torch, states, self.device),
            )  # fmt: skip
        return self._cascades[key]

    @staticmethod
    def _state_rows(state: Any, live: Any, rows: int) -> Any:
        """The state rows of the chunk's tracks (``live`` None: the first ``rows`` slots)."""
        return state[:rows] if live is None else state[live]

    @staticmethod
    def _store_rows(state: Any, value: Any, live: Any) -> None:
        if live is None:
            state[: len(value)] = value
        else:
            state[live] = value

    def _filter(self, x: Any, name: str, live: Any, first: Any) -> tuple[Any, Any]:
        """Both regions' second-stage outputs ``[G, n, K]`` for inputs ``x`` ``[G, n, K]``,
        updating the states kept in attribute ``name``. ``first``: True (every row's first
        chunk: the states start from its first frame), False, or a bool tensor ``[G]``."""
        torch = self.torch
        g, n, k = x.shape
        stored = getattr(self, name)
        if stored is None:
            stored = torch.zeros((self._capacity, 4, k), device=self.device)
            setattr(self, name, stored)
        if first is True:
            state = x[:, :1].expand(g, 4, k)
        elif first is False:
            state = self._state_rows(stored, live, g)
        else:
            state = torch.where(first[:, None, None], x[:, :1].expand(g, 4, k),
                                self._state_rows(stored, live, g))  # fmt: skip
        cascade, state_rows = self._cascade(n)
        y = torch.matmul(cascade, torch.cat([x, state], dim=1))  # [G, 2n + 2, K]
        self._store_rows(stored, y[:, state_rows], live)
        return y[:, :n], y[:, n + 1 : 2 * n + 1]

    # ------------------------------------------------------------------------- one chunk

    def _rows(self, live: Any, start: Any, rows: int) -> tuple[Any, int | np.ndarray, Any]:
        """(index tensor or None, start: an int or ``[G]`` int64, first: True / False / a bool
        tensor ``[G]``) of a chunk of ``rows`` rows; one start for all when they agree."""
        if live is not None and not isinstance(live, self.torch.Tensor):
            live = upload(self.torch, np.asarray(live, dtype=np.int64).reshape(-1), self.device)
        count = self.tracks if live is None else len(live)
        if count != rows:
            raise ParameterError(
                f"step: {rows} rows of results for {count} tracks",
                hint="give one row of results per track of live (None: every slot)",
            )
        if isinstance(start, int | np.integer):
            starts: int | np.ndarray = int(start)
        else:
            starts = np.asarray(start)
            if starts.ndim != 1 or len(starts) != rows or not np.issubdtype(starts.dtype, np.integer):
                raise ParameterError(
                    f"step: start must be an int or one integer per row ({rows}), got "
                    f"{starts.dtype} {starts.shape}",
                    hint="pass each track's first frame of the chunk",
                )
            starts = starts.astype(np.int64)
            if rows and (starts == starts[0]).all():
                starts = int(starts[0])
        lowest = starts if isinstance(starts, int) else int(starts.min(initial=0))
        if lowest < 0:
            raise ParameterError(f"step: start must be >= 0, got {lowest}")
        if isinstance(starts, int):
            return live, starts, starts == 0
        firsts = starts == 0
        if firsts.all() or not firsts.any():
            return live, starts, bool(firsts.all())
        return live, starts, upload(self.torch, firsts, self.device)

    def _saccades(self, starts: int | np.ndarray, frames: int) -> Any:
        """Saccade-table values ``[n, 2]`` (one start) or ``[G, n, 2]`` of the chunk's frames,
        the table's rows extended when a track outgrows them."""
        torch = self.torch
        stop = (starts if isinstance(starts, int) else int(starts.max())) + frames
        have = len(self._saccade_rows)
        if stop > have:
            more = self._saccade_clock.extend(max(stop - have, SACCADE_GROWTH))
            self._saccade_rows = torch.cat([self._saccade_rows,
                                            torch.as_tensor(more, device=self.device)])  # fmt: skip
        if isinstance(starts, int):
            return self.saccade[self._saccade_rows[starts:stop]]
        at = upload(torch, starts, self.device)[:, None] + torch.arange(frames, device=self.device)
        return self.saccade[self._saccade_rows[at]]

    def step(self, result: Any, live: Any, start: int | Sequence[int] | np.ndarray) -> None:
        """Process network outputs ``[G, n, R]`` of the tracks ``live`` (an index tensor or a
        host sequence of slots; None = every slot), row ``k`` holding frames ``start[k] ..
        start[k] + n`` of its track (``start``: one int for all rows, or one per row). A track's
        chunks come in frame order; its first chunk starts at frame 0 (filter states from that
        frame, no temporal term), whatever the other rows' starts.

        Raises:
            ParameterError: ``result`` and ``live`` disagree in rows, or a bad ``start``.
        """
        torch = self.torch
        # slots named on the host stay known there: no copy back from the device at the take
        host_slots = None if live is None or isinstance(live, torch.Tensor) else (
            np.asarray(live, dtype=np.int64).reshape(-1))  # fmt: skip
        live, starts, first = self._rows(live, start, int(result.shape[0]))
        with torch.inference_mode(), _strict_fp32(torch):
            result = result.to(self.device, torch.float32)
            g, n, _ = result.shape
            s, t = self.s_width, self.t_width
            skin_in, tongue_in = result[..., :s], result[..., s : s + t]
            coeffs = skin_in if self.s_pick is None else skin_in[..., self.s_pick]
            tongue = tongue_in if self.t_pick is None else tongue_in[..., self.t_pick]
            jaw = result[..., s + t : s + t + JAW_SIZE]
            eyes = result[..., s + t + JAW_SIZE : s + t + JAW_SIZE + EYES_SIZE]
            upper, lower = self._filter(coeffs, "_filters", live, first)
            skin_atb = torch.matmul(upper, self.p_upper).add_(torch.matmul(lower, self.p_lower))
            tongue_atb = torch.matmul(tongue, self.p_tongue).add_(self.k_tongue)
            atb = torch.cat([skin_atb.add_(self.k_skin), tongue_atb], dim=-1)
            prev = None if first is True else self._state_rows(self._prev, live, g)
            if first is not True and first is not False:  # a fresh track has no previous frame
                prev = torch.where(first[:, None], 0.0, prev)
            z, last = self.admm.solve_projected(atb, prev)
            self._store_rows(self._prev, last, live)
            s2 = self._saccades(starts, n)  # [n, 2] or [G, n, 2]
            sacc = torch.cat([s2, s2], dim=-1) * self.saccade_strength
            values = self.eye_offsets + eyes * self.eyeballs + sacc  # [rx, ry, lx, ly]
            eyes6 = torch.nn.functional.pad(values.reshape(g, n, 2, 2), (0, 1)).reshape(g, n, 6)
            # the jaw's Kabsch (an SVD, which waits for the device) runs batched at the flush
            packed = torch.cat([self.admm.expand(z, 0), self.admm.expand(z, 1), jaw, eyes6],
                               dim=-1)  # fmt: skip
            self._pending.append((live, self._epoch, starts, n, packed, host_slots))
            self._pending_bytes += packed.numel() * 4
            if self.geometry:
                self._decode_geometry(skin_in, tongue_in, live, starts, first)
        if self._pending_bytes > SINK_BYTES:
            self._flush()

    def _kept(self, slot: int, start: int, frames: int) -> int:
        """Frames of a chunk that belong to the slot's track (its length cuts the padding)."""
        limit = int(self._limits[slot])
        return frames if limit < 0 else max(0, min(frames, limit - start))

    def _decode_geometry(self, coeffs: Any, tongue: Any, live: Any, starts: int | np.ndarray,
                         first: Any) -> None:  # fmt: skip
        """Skin and tongue meshes of the chunk (spec §4 steps 3-5) into the host lists, in
        groups of tracks that keep the intermediates under :data:`GEOMETRY_BLOCK`. ``coeffs``
        and ``tongue`` are the rows' skin and tongue parts (coefficients or deltas)."""
        torch = self.torch
        g, n, s = coeffs.shape
        verts = self.g_size
        ss, us, ls = self.g_strengths
        group = max(1, GEOMETRY_BLOCK // ((3 * n + 6) * verts))
        ids = torch.arange(g, device=self.device) if live is None else live
        if self._geo_filters is None:
            self._geo_filters = torch.zeros((self._capacity, 4, verts), device=self.device)
        for at in range(0, g, group):
            part = ids[at : at + group]
            c = coeffs[at : at + group]
            deltas = c if self.g_basis is None else torch.matmul(c, self.g_basis)
            d = ss * deltas + self.g_eye + self.g_lip  # step 1, SDK order
            if first is True:
                state = d[:, :1].expand(-1, 4, -1)
            elif first is False:
                state = self._geo_filters[part]
            else:
                state = torch.where(first[at : at + group, None, None], d[:, :1].expand(-1, 4, -1),
                                    self._geo_filters[part])  # fmt: skip
            cascade, state_rows = self._cascade(n)
            y = torch.matmul(cascade, torch.cat([d, state], dim=1))
            self._geo_filters[part] = y[:, state_rows]
            upper2, lower2 = y[:, :n], y[:, n + 1 : 2 * n + 1]
            skin = self.g_neutral + upper2 * us * self.g_inv + lower2 * ls * self.g_mask
            tc = tongue[at : at + group]
            tg = tc if self.g_tbasis is None else torch.matmul(tc, self.g_tbasis)
            tg = self.g_tneutral + tg * self.g_tstrength
            tg = (tg.reshape(*tg.shape[:2], -1, 3) + self.g_toffset).reshape(tg.shape)
            skin_h, tongue_h = skin.cpu().numpy(), tg.cpu().numpy()
            for k, track in enumerate(part.tolist()):
                start = starts if isinstance(starts, int) else int(starts[at + k])
                m = self._kept(track, start, n)
                self._geo["skin"].setdefault(track, []).append(skin_h[k, :m])
                self._geo["tongue"].setdefault(track, []).append(tongue_h[k, :m])

    def _flush(self) -> None:
        """The pending chunks' jaw transforms (one batched Kabsch), then their outputs copied to
        the host and kept per slot (one wait for the device)."""
        chunks = self._chunks
        for slots, first, kept, keep, parts in self._host_chunks():
            rows = zip(np.flatnonzero(keep).tolist(), slots[keep].tolist(), first[keep].tolist(),
                       kept[keep].tolist(), strict=True)  # fmt: skip
            for k, slot, start, m in rows:
                chunks.setdefault(slot, []).append((start, m, k, parts))

    def _host_chunks(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Each pending chunk on the host (one batched Kabsch, one wait for the device): its
        rows' slots, first frames, frames kept per row, rows kept, and the output parts
        (skin, tongue, jaw [g, n, 4, 4], eyes, frame indices), each ``[g, n, ...]``."""
        if not self._pending:
            return
        torch = self.torch
        width = self._width()
        at = width - 16 - 6  # the jaw's 15 values follow the pose weights
        with torch.inference_mode():
            jaws = torch.cat([packed[..., at : at + JAW_SIZE].reshape(-1, JAW_SIZE)
                              for *_, packed, _host in self._pending])  # fmt: skip
            matrices = kabsch_transforms(torch, jaws, self.neutral_jaw, self.jaw_strength,
                                         self.jaw_offset).reshape(-1, 16)  # fmt: skip
        ps = self.admm._solvers[0].num_poses
        pt = self.admm._solvers[1].num_poses
        row = 0
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        for live, epoch, starts, n, packed, host_slots in pending:
            g = packed.shape[0]
            jaw_m = matrices[row : row + g * n].reshape(g, n, 16)
            row += g * n
            host = torch.cat([packed[..., :at], jaw_m, packed[..., at + JAW_SIZE :]],
                             dim=-1).cpu().numpy()  # fmt: skip
            slots = np.arange(g) if live is None else (
                live.cpu().numpy() if host_slots is None else host_slots)  # fmt: skip
            first = np.full(g, starts) if isinstance(starts, int) else starts
            parts = (host[..., :ps], host[..., ps : ps + pt],
                     host[..., ps + pt : ps + pt + 16].reshape(g, n, 4, 4), host[..., ps + pt + 16 :],
                     first[:, None] + np.arange(n, dtype=np.int64))  # fmt: skip
            limits = self._limits[slots]
            kept = np.where(limits < 0, n, np.clip(limits - first, 0, n))
            # rows of a slot released after this chunk are not its new stream's
            keep = (self._released_at[slots] < epoch) & (kept > 0)
            yield slots, first, kept, keep, parts

    def take_rows(self) -> dict[str, np.ndarray]:
        """Every frame since the last take as flat arrays, without per-slot work (a stream
        bank's tick): ``slots`` and ``frames`` ``[F]`` (int64), ``skin``, ``tongue``, ``jaw``
        ``[F, 4, 4]``, ``eyes``; rows of one slot in frame order, slots in chunk order.

        Raises:
            ParameterError: the pipeline decodes geometry (offline only: :meth:`finish`).
        """
        self._streaming("take_rows")
        pieces: list[tuple[np.ndarray, ...]] = []
        for slot, item in (self.take().items() if self._chunks else ()):
            pieces.append((np.full(len(item["frames"]), slot, np.int64), item["frames"],
                           item["skin"], item["tongue"], item["jaw"], item["eyes"]))  # fmt: skip
        for slots, _first, kept, keep, parts in self._host_chunks():
            n = parts[0].shape[1]
            mask = keep[:, None] & (np.arange(n)[None, :] < kept[:, None])
            skin, tongue, jaw, eyes, frames = (p[mask] for p in parts)
            rows_slots = np.broadcast_to(slots[:, None], mask.shape)[mask]
            pieces.append((rows_slots, frames, skin, tongue, jaw, eyes))
        names = ("slots", "frames", "skin", "tongue", "jaw", "eyes")
        if len(pieces) == 1:  # one chunk (a bank's usual tick): its arrays are copies already
            return dict(zip(names, pieces[0], strict=True))
        if not pieces:
            ps = self.admm._solvers[0].num_poses
            pt = self.admm._solvers[1].num_poses
            empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, ps), np.float32),
                     np.zeros((0, pt), np.float32), np.zeros((0, 4, 4), np.float32),
                     np.zeros((0, 6), np.float32))  # fmt: skip
            return dict(zip(names, empty, strict=True))
        return {name: np.concatenate([p[i] for p in pieces]) for i, name in enumerate(names)}

    def _split(self, chunks: list[tuple[int, int, int, tuple[np.ndarray, ...]]],
               copy: bool) -> dict[str, np.ndarray]:  # fmt: skip
        """A slot's chunk rows as named outputs (``copy``: contiguous arrays of their own, else
        views of the host chunk where one chunk holds them all: a tick's take of many streams
        is a few views per stream)."""
        if len(chunks) == 1 and not copy:
            _, m, k, (skin, tongue, jaw, eyes, frames) = chunks[0]
            return {"skin": skin[k, :m], "tongue": tongue[k, :m], "jaw": jaw[k, :m],
                    "eyes": eyes[k, :m], "frames": frames[k, :m]}  # fmt: skip
        if chunks:
            arrays = [np.concatenate([parts[i][k, :m] for _, m, k, parts in chunks])
                      for i in range(len(OUTPUT_NAMES) + 1)]  # fmt: skip
        else:
            ps = self.admm._solvers[0].num_poses
            pt = self.admm._solvers[1].num_poses
            shapes = ((0, ps), (0, pt), (0, 4, 4), (0, 6))
            arrays = [*(np.zeros(shape, np.float32) for shape in shapes), np.zeros(0, np.int64)]
        return dict(zip((*OUTPUT_NAMES, "frames"), arrays, strict=True))

    def take(self) -> dict[int, dict[str, np.ndarray]]:
        """The frames produced since the last take, per slot that has any (one batched Kabsch,
        one wait for the device): ``skin`` ``[n, P_skin]``, ``tongue`` ``[n, P_tongue]`` pose
        weights, ``jaw`` ``[n, 4, 4]``, ``eyes`` ``[n, 6]`` (float32; views of the host copy)
        and ``frames`` ``[n]``, the tracks' frame indices.

        Raises:
            ParameterError: the pipeline decodes geometry (offline only: :meth:`finish`).
        """
        self._streaming("take")
        self._flush()
        chunks, self._chunks = self._chunks, {}
        return {slot: self._split(parts, copy=False) for slot, parts in chunks.items()}

    def finish(self) -> list[dict[str, np.ndarray]]:
        """Every slot's outputs not yet taken (offline: every frame of each track): ``skin``
        ``[frames, P_skin]``, ``tongue`` ``[frames, P_tongue]`` pose weights, ``jaw``
        ``[frames, 4, 4]``, ``eyes`` ``[frames, 6]`` (float32), ``frames`` (indices), and with
        ``geometry`` ``skin_geometry`` / ``tongue_geometry`` ``[frames, 3V]``."""
        self._flush()
        out = []
        for slot in range(self.tracks):
            item = self._split(self._chunks.pop(slot, []), copy=True)
            if self.geometry:
                for name in ("skin", "tongue"):
                    parts = self._geo[name].pop(slot, [])
                    size = self.g_size if name == "skin" else self.g_tsize
                    item[f"{name}_geometry"] = (np.concatenate(parts) if parts
                                                else np.zeros((0, size), np.float32))  # fmt: skip
            out.append(item)
        return out
