"""ONNX operators of the Audio2Face-3D v3.0 diffusion network for the torch backend (issue 6).

:class:`SequenceOps` is a mixin of :class:`~.torch_engine.OnnxGraph` adding what the diffusion
export needs beyond the regression networks (a2f_models_and_maya_ace.md A.1.2, A.2.1): ``GRU``
(the decoder, one node per layer), ``Resize`` (HuBERT features resampled to 60 frames),
``OneHot`` + ``Softplus`` (the diffusion-time embedding and its Mish), ``Pad`` (the zero context
frames) and ``ReduceL2`` (the weight norm of the positional conv). Each ``_op_<Name>(a, at, n)``
takes the input values, the node attributes and the input names, as in ``OnnxGraph``.

GRU runs as torch's fused GRU (cuDNN on CUDA) when the node matches torch's cell
(``linear_before_reset=1``, default activations, no clip, full-length sequences): ONNX's z, r, h
gates are reordered once to torch's r, z, n into a cached ``nn.GRU`` whose weights cuDNN keeps in
one flat buffer. Any other GRU runs as a loop over time steps (exact, slow). Weights and inputs
follow the half-precision policy of ``OnnxGraph`` (``_low``): the output stays half; only bf16 on
CUDA runs the GRU itself in FP32 (see ``_gru_fused``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EngineError

if TYPE_CHECKING:
    from collections.abc import Callable

_DEFAULT_GRU_ACTIVATIONS = ("Sigmoid", "Tanh")


def _text(value: Any, default: str) -> str:
    """An ONNX string attribute (bytes from ``onnx.helper``) as str."""
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


class SequenceOps:
    """The diffusion network's operators, mixed into ``OnnxGraph`` (which provides the
    attributes and helpers declared here)."""

    torch: Any
    device: Any
    consts: dict[str, Any]
    consts32: dict[str, Any]
    low: Any
    _gemm_weights: dict[tuple[Any, ...], Any]
    if TYPE_CHECKING:
        _low: Callable[[Any, str], Any]
        _ints: Callable[[Any], list[int]]
        _reduce: Callable[[list[Any], dict[str, Any], Callable[..., Any]], Any]

    # ------------------------------------------------------------------ elementwise
    def _op_Softplus(self, a: list[Any], at: dict[str, Any], n: list[str]) -> Any:
        return self.torch.nn.functional.softplus(a[0])

    def _op_ReduceL2(self, a: list[Any], at: dict[str, Any], n: list[str]) -> Any:
        linalg = self.torch.linalg
        return self._reduce(
            a, at, lambda x, dim, keepdim: linalg.vector_norm(x, 2, dim=dim, keepdim=keepdim)
        )

    def _op_OneHot(self, a: list[Any], at: dict[str, Any], n: list[str]) -> Any:
        """ONNX OneHot: negative indices count from ``depth``, out-of-range ones are all off.
        The result is data (the diffusion-time one-hot feeds a Gemm), so it lives on the
        device even when ``values`` are integers, which otherwise stay on the host."""
        torch = self.torch
        indices, values = a[0], a[2].to(self.device)
        depth = int(float(a[1].reshape(-1)[0]))
        axis = at.get("axis", -1) % (indices.dim() + 1)
        idx = indices.to(self.device).long()
        idx = torch.where(idx < 0, idx + depth, idx).unsqueeze(axis)
        shape = [1] * (indices.dim() + 1)
        shape[axis] = depth
        classes = torch.arange(depth, device=self.device).reshape(shape)
        off, on = values.reshape(-1)[0], values.reshape(-1)[1]
        return torch.where(idx == classes, on, off)

    # ------------------------------------------------------------------ Pad
    def _op_Pad(self, a: list[Any], at: dict[str, Any], n: list[str]) -> Any:
        """ONNX Pad (pads as input, opset 11+, or attribute): constant, reflect, edge."""
        torch = self.torch
        x = a[0]
        pads = self._ints(a[1]) if len(a) > 1 and a[1] is not None else list(at["pads"])
        rank = x.dim()
        axes = list(range(rank))
        if len(a) > 3 and a[3] is not None:  # opset 18: the padded axes
            axes = [ax % rank for ax in self._ints(a[3])]
        begin, end = [0] * rank, [0] * rank
        for k, ax in enumerate(axes):
            begin[ax], end[ax] = pads[k], pads[k + len(axes)]
        padded = [ax for ax in range(rank) if begin[ax] or end[ax]]
        if not padded:
            return x
        first = padded[0]
        spec = [p for ax in range(rank - 1, first - 1, -1) for p in (begin[ax], end[ax])]
        mode = _text(at.get("mode"), "constant")
        if mode == "constant":
            value = 0.0
            if len(a) > 2 and a[2] is not None and a[2].numel():
                value = self._host_floats(a[2], n[2])[0]
            return torch.nn.functional.pad(x, spec, value=value)
        torch_mode = {"reflect": "reflect", "edge": "replicate"}.get(mode)
        spatial = rank - first
        if torch_mode is None or spatial > 3:
            raise EngineError(f"Pad mode {mode!r} over {spatial} axes is not supported by the "
                              "torch backend")  # fmt: skip
        # torch pads the last 1-3 axes of a [N, C, ...] tensor: fold the leading axes into C
        lead = x.shape[:first]
        y = x.reshape(1, -1, *x.shape[first:])
        y = torch.nn.functional.pad(y, spec, mode=torch_mode)
        return y.reshape(*lead, *y.shape[2:])

    # ------------------------------------------------------------------ Resize
    def _op_Resize(self, a: list[Any], at: dict[str, Any], n: list[str]) -> Any:
        """ONNX Resize (opset 11+): linear or nearest, per axis, any coordinate mode but
        ``tf_crop_and_resize``; linear align-corners / half-pixel of the trailing axes (the
        HuBERT features to 60 frames) is one ``F.interpolate``."""
        torch = self.torch
        x = a[0]
        mode = _text(at.get("mode"), "nearest")
        coords = _text(at.get("coordinate_transformation_mode"), "half_pixel")
        nearest = _text(at.get("nearest_mode"), "round_prefer_floor")
        if mode not in ("nearest", "linear") or coords == "tf_crop_and_resize" or at.get(
            "antialias", 0
        ) or at.get("axes") is not None:
            raise EngineError(
                f"Resize mode {mode!r} with {coords!r} is not supported by the torch backend",
                hint="use --backend onnxruntime for this network",
            )
        sizes = a[3] if len(a) > 3 and a[3] is not None and a[3].numel() else None
        scales_in = a[2] if len(a) > 2 and a[2] is not None and a[2].numel() else None
        in_sizes = list(x.shape)
        if sizes is not None:
            out_sizes = self._ints(sizes)
            scales = [o / i if i else 1.0 for o, i in zip(out_sizes, in_sizes, strict=True)]
        elif scales_in is not None:
            scales = self._host_floats(scales_in, n[2])
            out_sizes = [int(math.floor(i * s)) for i, s in zip(in_sizes, scales, strict=True)]
        else:
            raise EngineError("Resize without scales or sizes")
        resized = [ax for ax in range(x.dim()) if out_sizes[ax] != in_sizes[ax] or scales[ax] != 1]
        if not resized:
            return x
        spatial = x.dim() - 2
        if (mode == "linear" and resized[0] >= 2 and 1 <= spatial <= 3 and min(out_sizes[2:]) > 1
                and coords in ("align_corners", "half_pixel", "pytorch_half_pixel")):  # fmt: skip
            interp = ("linear", "bilinear", "trilinear")[spatial - 1]
            kwargs: dict[str, Any] = {"size": out_sizes[2:]}
            if sizes is None:  # the scales themselves map the coordinates, as in ONNX
                kwargs = {"scale_factor": scales[2:], "recompute_scale_factor": False}
            return torch.nn.functional.interpolate(
                x, mode=interp, align_corners=coords == "align_corners", **kwargs
            )
        for ax in resized:
            x = self._resize_axis(x, ax, out_sizes[ax], scales[ax], mode, coords, nearest)
        return x

    def _host_floats(self, t: Any, name: str) -> list[float]:
        """A float constant's values read once (a device read is a sync, fatal in a capture)."""
        if name not in self.consts:
            return [float(v) for v in t.reshape(-1).tolist()]
        key = ("host_floats", name)
        if key not in self._gemm_weights:
            self._gemm_weights[key] = [float(v) for v in t.reshape(-1).tolist()]
        return self._gemm_weights[key]

    def _resize_axis(
        self, x: Any, axis: int, size: int, scale: float, mode: str, coords: str, nearest: str
    ) -> Any:
        """One axis of a Resize by gathering source rows (index tensors cached per shape)."""
        torch = self.torch
        length = x.shape[axis]
        key = ("resize", length, size, scale, mode, coords, nearest, x.device, x.dtype)
        cached = self._gemm_weights.get(key)
        if cached is None:
            src = _source_coordinates(length, size, scale, coords)
            if mode == "nearest":
                index = np.clip(_round(src, nearest), 0, length - 1)
                cached = (torch.from_numpy(index.astype(np.int64)).to(x.device), None, None)
            else:
                src = np.clip(src, 0, length - 1)
                lo = np.floor(src).astype(np.int64)
                hi = np.minimum(lo + 1, length - 1)
                frac = torch.from_numpy((src - lo).astype(np.float32)).to(x.device, x.dtype)
                shape = [1] * x.dim()
                shape[axis] = size
                cached = (torch.from_numpy(lo).to(x.device), torch.from_numpy(hi).to(x.device),
                          frac.reshape(shape))  # fmt: skip
            self._gemm_weights[key] = cached
        lo_i, hi_i, frac = cached
        if hi_i is None:
            return x.index_select(axis, lo_i)
        return torch.lerp(x.index_select(axis, lo_i), x.index_select(axis, hi_i), frac)

    # ------------------------------------------------------------------ GRU
    def _op_GRU(self, a: list[Any], at: dict[str, Any], n: list[str]) -> Any:
        """ONNX GRU -> (Y [seq, dirs, B, H], Y_h [dirs, B, H]), or the layout-1 forms."""
        a = [*a, None, None, None][:6]
        x, w, r, b, lens, h0 = a
        names = [*n, "", "", ""][:6]
        direction = _text(at.get("direction"), "forward")
        dirs = 2 if direction == "bidirectional" else 1
        hidden = int(at.get("hidden_size") or r.shape[-1])
        layout = int(at.get("layout", 0))
        if layout:
            x = x.transpose(0, 1)
            h0 = None if h0 is None else h0.transpose(0, 1)
        x = self._low(x, names[0])
        w, r = self._low(w, names[1]), self._low(r, names[2])
        seq, batch = x.shape[0], x.shape[1]
        h0 = x.new_zeros(dirs, batch, hidden) if h0 is None else h0.to(x.dtype)
        if b is None:
            b = x.new_zeros(dirs, 6 * hidden)
        b = b.to(x.dtype)
        activations = tuple(_text(v, "") for v in at.get("activations") or ()) or (
            _DEFAULT_GRU_ACTIVATIONS * dirs
        )
        full = lens is None or all(v == seq for v in self._ints(lens))
        torch_cell = (
            int(at.get("linear_before_reset", 0)) == 1
            and activations == _DEFAULT_GRU_ACTIVATIONS * dirs
            and at.get("clip") is None
            and full
        )
        if torch_cell:
            y, y_h = self._gru_fused(x, w, r, b, h0, direction, names)
        else:
            y, y_h = self._gru_loop(x, w, r, b, h0, lens, at, activations, direction)
        if layout:
            y, y_h = y.permute(2, 0, 1, 3), y_h.transpose(0, 1)
        return y if at.get("_outputs", 2) == 1 else [y, y_h]

    def _gru_fused(
        self, x: Any, w: Any, r: Any, b: Any, h0: Any, direction: str, names: list[str]
    ) -> tuple[Any, Any]:
        """torch's GRU (cuDNN on CUDA) on ONNX weights; a cached module for constant weights.

        bf16 on CUDA runs in FP32 (from the FP32 weights): torch keeps no flat cuDNN buffer
        for bf16 RNN weights, so every call would compact them again (with a warning); the
        GRU is a small part of the network's work, and its state is carried window to window.
        """
        torch = self.torch
        seq, batch = x.shape[0], x.shape[1]
        dirs, hidden = w.shape[0], r.shape[-1]
        dtype = x.dtype
        if dtype == torch.bfloat16 and x.device.type == "cuda":
            w, r, b = (self.consts32.get(name, t).float() if name else t.float()
                       for name, t in zip(names[1:4], (w, r, b), strict=True))  # fmt: skip
            x, h0 = x.float(), h0.float()
        key = ("gru", *names[1:4], x.dtype, x.device)
        constant = all(not name or name in self.consts for name in names[1:4])
        module = self._gemm_weights.get(key) if constant else None
        if module is None:
            module = _torch_gru(torch, w, r, b, x.dtype, x.device)
            if constant:
                self._gemm_weights[key] = module
        if direction == "reverse":
            x = x.flip(0)
        y, y_h = module(x.contiguous(), h0.contiguous())  # y: [seq, B, dirs * H]
        if direction == "reverse":
            y = y.flip(0)
        return y.reshape(seq, batch, dirs, hidden).transpose(1, 2).to(dtype), y_h.to(dtype)

    def _gru_loop(
        self, x: Any, w: Any, r: Any, b: Any, h0: Any, lens: Any, at: dict[str, Any],
        activations: tuple[str, ...], direction: str,
    ) -> tuple[Any, Any]:  # fmt: skip
        """The ONNX GRU equations step by step: ``linear_before_reset=0``, other activations,
        ``clip`` and shorter ``sequence_lens`` (outputs past a sequence's end are zero)."""
        torch = self.torch
        seq = x.shape[0]
        dirs, hidden = w.shape[0], r.shape[-1]
        before = int(at.get("linear_before_reset", 0)) == 1
        clip = at.get("clip")
        acts = [_activation(torch, name) for name in activations]
        valid = None
        if lens is not None:
            valid = torch.arange(seq)[:, None] < lens.to("cpu").long()[None, :]  # [seq, B]
            valid = valid.to(x.device)[:, :, None]
        ys, hs = [], []
        for d in range(dirs):
            f, g = acts[2 * d], acts[2 * d + 1]
            wz, wr, wh = w[d].split(hidden)
            rz, rr, rh = r[d].split(hidden)
            wb, rb = b[d].split(3 * hidden)
            xw = torch.matmul(x, w[d].t()) + wb  # [seq, B, 3H]: input terms of every step
            h = h0[d]
            out = [None] * seq
            reverse = direction == "reverse" or d == 1
            for t in range(seq - 1, -1, -1) if reverse else range(seq):
                xz, xr, xh = xw[t].split(hidden, dim=-1)
                hz = torch.matmul(h, rz.t()) + rb[:hidden]
                hr = torch.matmul(h, rr.t()) + rb[hidden : 2 * hidden]
                pz, pr = xz + hz, xr + hr
                if clip is not None:
                    pz, pr = pz.clamp(-clip, clip), pr.clamp(-clip, clip)
                z, gate = f(pz), f(pr)
                if before:
                    ph = xh + gate * (torch.matmul(h, rh.t()) + rb[2 * hidden :])
                else:
                    ph = xh + torch.matmul(gate * h, rh.t()) + rb[2 * hidden :]
                if clip is not None:
                    ph = ph.clamp(-clip, clip)
                new = (1 - z) * g(ph) + z * h
                if valid is not None:
                    new = torch.where(valid[t], new, h)
                    out[t] = torch.where(valid[t], new, torch.zeros_like(new))
                else:
                    out[t] = new
                h = new
            ys.append(torch.stack(out))
            hs.append(h)
        return torch.stack(ys, dim=1), torch.stack(hs)


def _torch_gru(torch: Any, w: Any, r: Any, b: Any, dtype: Any, device: Any) -> Any:
    """An ``nn.GRU`` (one layer, one or two directions) holding ONNX GRU weights, gates
    reordered from ONNX's z, r, h to torch's r, z, n; flattened for cuDNN."""
    dirs, three_h, size = w.shape
    hidden = three_h // 3

    def reorder(t: Any) -> Any:
        z, r_, h = t.split(hidden, dim=0)
        return torch.cat([r_, z, h])

    module = torch.nn.GRU(size, hidden, 1, bidirectional=dirs == 2, device=device, dtype=dtype)
    with torch.no_grad():
        for d in range(dirs):
            sfx = "_reverse" if d else ""
            getattr(module, "weight_ih_l0" + sfx).copy_(reorder(w[d]))
            getattr(module, "weight_hh_l0" + sfx).copy_(reorder(r[d]))
            getattr(module, "bias_ih_l0" + sfx).copy_(reorder(b[d, :three_h]))
            getattr(module, "bias_hh_l0" + sfx).copy_(reorder(b[d, three_h:]))
    module.requires_grad_(False).eval()
    module.flatten_parameters()
    return module


def _activation(torch: Any, name: str) -> Callable[[Any], Any]:
    functions = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Relu": torch.relu}
    if name not in functions:
        raise EngineError(f"GRU activation {name!r} is not supported by the torch backend",
                          hint="use --backend onnxruntime for this network")  # fmt: skip
    return functions[name]


def _source_coordinates(length: int, size: int, scale: float, coords: str) -> np.ndarray:
    """ONNX Resize: the input coordinate of each output position along one axis, in float32
    arithmetic as ONNX Runtime computes it (nearest rounding depends on the last bit)."""
    out, scale32, half = np.arange(size, dtype=np.float32), np.float32(scale), np.float32(0.5)
    if coords == "align_corners":
        if size == 1:
            return np.zeros(1, np.float32)
        return out * np.float32(length - 1) / np.float32(size - 1)
    if coords == "asymmetric":
        return out / scale32
    if coords == "pytorch_half_pixel":
        return (out + half) / scale32 - half if size > 1 else np.zeros(size, np.float32)
    if coords == "half_pixel_symmetric":
        adjustment = np.float32(size) / (np.float32(length) * scale32)
        offset = np.float32(length) / 2 * (1 - adjustment)
        return offset + (out + half) / scale32 - half
    if coords == "half_pixel":
        return (out + half) / scale32 - half
    raise EngineError(f"Resize coordinate mode {coords!r} is not supported by the torch backend")


def _round(src: np.ndarray, nearest: str) -> np.ndarray:
    """ONNX Resize ``nearest_mode`` rounding of source coordinates."""
    if nearest == "floor":
        return np.floor(src)
    if nearest == "ceil":
        return np.ceil(src)
    frac = src - np.floor(src)
    if nearest == "round_prefer_ceil":
        return np.where(frac == 0.5, np.ceil(src), np.round(src))
    if nearest == "round_prefer_floor":
        return np.where(frac == 0.5, np.floor(src), np.round(src))
    raise EngineError(f"Resize nearest_mode {nearest!r} is not supported by the torch backend")
