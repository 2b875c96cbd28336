"""Generate complete Audio2Face-3D v3.0 diffusion model folders for tests (SDK spec §1.4, §2).

Every file of a published folder is written with the exact keys, array names and dtypes: one
``model_config_<actor>.json``, ``model_data_<actor>.npz`` (exactly its 6 arrays) and blendshape
set per identity, and a small ONNX network built with ``onnx.helper`` whose tensors are the real
ones: ``window`` [B, 16000], ``identity`` [B, 3], ``emotion`` [B, 30, 10],
``input_latents`` [2, 2, B, H], ``noise`` [B, 3, 60, D] -> ``prediction`` [B, 60, D],
``output_latents`` [2, 2, B, H] (opset 14, dynamic batch, batch axis 2 for the latents).

The network mirrors the real sampler's data flow at toy scale: per-frame audio features resampled
to 60 frames, identity and emotion conditioning, an embedding of the noisy geometry (x_T =
``noise[:, 2]`` for step 1, then ``x0 * a + noise[:, 1] * b`` for step 2), a 2-layer ONNX
``GRU`` per step started from ``input_latents[step, layer]``, a linear head over the 30 centre
frames, zeros on the 15 + 15 truncated frames. :meth:`GeneratedDiffusion.network` is the same
network in float64 NumPy, so tests know every output independently of the engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from a2x_core.models.emotion_input import A2F_EMOTIONS
from tests.a2f_folders import (
    MARK_CONFIG,
    FolderVariant,
    _mesh,
    _sparse_deltas,
    save_opset14,
    write_blendshape_files,
    write_json,
)

IDENTITIES = ("Claire", "James", "Mark")
WINDOW = 16000
FRAMES, LEFT, CENTER = 60, 15, 30
STEPS, LAYERS = 2, 2
AUDIO_ROWS, AUDIO_COLS = 80, 200  # the window seen as 80 feature frames of 200 samples
FEATURES, COND = 8, 12
#: Step-2 input: x0 * A + noise slot 1 * B (a fixed DDPM posterior at toy scale).
X0_GAIN, NOISE_GAIN = 0.8, 0.1


def _resample_matrix(src: int, dst: int) -> np.ndarray:
    """Linear align-corners resampling ``[src] -> [dst]`` as a matrix (as HuBERT frames -> 60)."""
    out = np.zeros((src, dst), np.float32)
    for j in range(dst):
        pos = j * (src - 1) / (dst - 1)
        lo = min(int(np.floor(pos)), src - 2)
        frac = pos - lo
        out[lo, j] += 1 - frac
        out[lo + 1, j] += frac
    return out


@dataclass
class GeneratedDiffusion:
    """A generated folder, its per-identity arrays and the network weights."""

    model_json: Path
    latent: int
    output_size: int
    skin_size: int
    tongue_size: int
    weights: dict[str, np.ndarray]
    model_data: dict[str, dict[str, np.ndarray]]
    configs: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.model_json.parent

    def network(
        self,
        window: np.ndarray,
        identity: np.ndarray,
        emotion: np.ndarray,
        latents: np.ndarray,
        noise: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ONNX network in float64: one batch -> (prediction, output_latents)."""
        w = {k: v.astype(np.float64) for k, v in self.weights.items()}
        batch = len(window)
        feats = np.tanh(window.astype(np.float64).reshape(batch, AUDIO_ROWS, AUDIO_COLS) @ w["audio"])
        feats = np.swapaxes(np.swapaxes(feats, 1, 2) @ w["resample"], 1, 2)  # [B, 60, F]
        base = (
            feats[:, LEFT : LEFT + CENTER] @ w["audio_cond"]
            + (identity.astype(np.float64) @ w["identity"])[:, None, :]
            + emotion.astype(np.float64) @ w["emotion"]
        )
        x_in = noise[:, 2, LEFT : LEFT + CENTER].astype(np.float64)
        states = np.zeros((STEPS, LAYERS, batch, self.latent))
        x0 = np.zeros_like(x_in)
        for step in range(STEPS):
            if step:
                x_in = x0 * X0_GAIN + noise[:, 1, LEFT : LEFT + CENTER].astype(np.float64) * NOISE_GAIN
            seq = np.tanh(base + x_in @ w[f"geometry{step}"] + w[f"time{step}"])
            for layer in range(LAYERS):
                seq, states[step, layer] = _gru(
                    seq, latents[step, layer].astype(np.float64), w[f"gru_w{step}{layer}"][0],
                    w[f"gru_r{step}{layer}"][0], w[f"gru_b{step}{layer}"][0],
                )  # fmt: skip
            x0 = seq @ w[f"head_w{step}"] + w[f"head_b{step}"]
        prediction = np.zeros((batch, FRAMES, self.output_size))
        prediction[:, LEFT : LEFT + CENTER] = x0
        return prediction, states


def _gru(
    x: np.ndarray, h: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ONNX GRU (gates z, r, h; linear_before_reset=1) over ``x`` [B, T, in] from ``h`` [B, H]."""
    hidden = h.shape[1]
    wz, wr, wh = np.split(w, 3)
    rz, rr, rh = np.split(r, 3)
    wbz, wbr, wbh, rbz, rbr, rbh = np.split(b, 6)
    out = np.empty((x.shape[0], x.shape[1], hidden))
    for t in range(x.shape[1]):
        xt = x[:, t]
        z = 1 / (1 + np.exp(-(xt @ wz.T + h @ rz.T + wbz + rbz)))
        rg = 1 / (1 + np.exp(-(xt @ wr.T + h @ rr.T + wbr + rbr)))
        n = np.tanh(xt @ wh.T + rg * (h @ rh.T + rbh) + wbh)
        h = (1 - z) * n + z * h
        out[:, t] = h
    return out, h


def _write_network(
    path: Path, weights: dict[str, np.ndarray], latent: int, width: int, identities: int
) -> None:
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()]

    def const(name: str, values: list[int]) -> str:
        inits.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def node(op: str, ins: list[str], out: str | list[str], **attrs: Any) -> str:
        outs = [out] if isinstance(out, str) else out
        nodes.append(helper.make_node(op, ins, outs, name=outs[0], **attrs))
        return outs[0]

    node("Reshape", ["window", const("rows_shape", [0, AUDIO_ROWS, AUDIO_COLS])], "rows")
    node("Tanh", [node("MatMul", ["rows", "audio"], "feat_lin")], "feat")
    node("Transpose", ["feat"], "feat_t", perm=[0, 2, 1])
    node("Transpose", [node("MatMul", ["feat_t", "resample"], "feat_60t")], "feat_60", perm=[0, 2, 1])
    node("Slice", ["feat_60", const("c_lo", [LEFT]), const("c_hi", [LEFT + CENTER]), const("ax1", [1])], "feat_c")
    node("MatMul", ["feat_c", "audio_cond"], "aud")
    node("Unsqueeze", [node("MatMul", ["identity", "identity_w"], "idc0"), const("ax_1", [1])], "idc")
    node("MatMul", ["emotion", "emotion_w"], "emc")
    node("Add", [node("Add", ["aud", "idc"], "base0"), "emc"], "base")
    noise_axes = const("noise_axes", [1, 2])
    for slot in (2, 1):
        node("Slice", ["noise", const(f"n{slot}_lo", [slot, LEFT]), const(f"n{slot}_hi", [slot + 1, LEFT + CENTER]), noise_axes], f"noise{slot}_4d")
        node("Squeeze", [f"noise{slot}_4d", const(f"n{slot}_sq", [1])], f"noise{slot}")
    x_in, x0, finals = "noise2", "", []
    for step in range(STEPS):
        if step:
            node("Mul", [x0, "x0_gain"], "x0_scaled")
            node("Mul", ["noise1", "noise_gain"], "noise1_scaled")
            x_in = node("Add", ["x0_scaled", "noise1_scaled"], "x_step1")
        node("MatMul", [x_in, f"geometry{step}"], f"geo{step}")
        node("Add", [node("Add", ["base", f"geo{step}"], f"cond{step}a"), f"time{step}"], f"cond{step}b")
        seq = node("Transpose", [node("Tanh", [f"cond{step}b"], f"cond{step}")], f"seq{step}_in", perm=[1, 0, 2])
        for layer in range(LAYERS):
            tag = f"{step}{layer}"
            init = node("Slice", ["input_latents", const(f"l_lo{tag}", [step, layer]), const(f"l_hi{tag}", [step + 1, layer + 1]), const(f"l_ax{tag}", [0, 1])], f"init4d{tag}")
            init = node("Squeeze", [init, const(f"l_sq{tag}", [0])], f"init{tag}")
            node("GRU", [seq, f"gru_w{tag}", f"gru_r{tag}", f"gru_b{tag}", "", init], [f"y{tag}", f"yh{tag}"], hidden_size=latent, linear_before_reset=1)
            seq = node("Squeeze", [f"y{tag}", const(f"y_sq{tag}", [1])], f"seq{tag}")
            finals.append(f"yh{tag}")
        out = node("Transpose", [seq], f"out{step}", perm=[1, 0, 2])
        x0 = node("Add", [node("MatMul", [out, f"head_w{step}"], f"head{step}"), f"head_b{step}"], f"x0_{step}")
    node("Pad", [x0, const("pads", [0, LEFT, 0, 0, FRAMES - LEFT - CENTER, 0])], "prediction", mode="constant")
    node("Concat", finals, "latents_flat", axis=0)
    node("Reshape", ["latents_flat", const("latent_shape", [STEPS, LAYERS, -1, latent])], "output_latents")
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "a2f_diffusion_test",
        [
            helper.make_tensor_value_info("window", f32, ["batch", WINDOW]),
            helper.make_tensor_value_info("identity", f32, ["batch", identities]),
            helper.make_tensor_value_info("emotion", f32, ["batch", CENTER, len(A2F_EMOTIONS)]),
            helper.make_tensor_value_info("input_latents", f32, [STEPS, LAYERS, "batch", latent]),
            helper.make_tensor_value_info("noise", f32, ["batch", STEPS + 1, FRAMES, width]),
        ],
        [
            helper.make_tensor_value_info("prediction", f32, ["batch", FRAMES, width]),
            helper.make_tensor_value_info("output_latents", f32, [STEPS, LAYERS, "batch", latent]),
        ],
        inits,
    )
    save_opset14(graph, path)


def _network_weights(
    rng: np.random.Generator, latent: int, width: int, identities: int
) -> dict[str, np.ndarray]:
    def normal(scale: float, *shape: int) -> np.ndarray:
        return rng.normal(0.0, scale, size=shape).astype(np.float32)

    weights = {
        "audio": normal(0.3, AUDIO_COLS, FEATURES),
        "resample": _resample_matrix(AUDIO_ROWS, FRAMES),
        "audio_cond": normal(1.0, FEATURES, COND),
        "identity_w": normal(1.0, identities, COND),
        "emotion_w": normal(1.0, len(A2F_EMOTIONS), COND),
        "x0_gain": np.float32(X0_GAIN),
        "noise_gain": np.float32(NOISE_GAIN),
    }
    for step in range(STEPS):
        weights[f"geometry{step}"] = normal(0.05, width, COND)
        weights[f"time{step}"] = normal(0.5, COND)
        for layer in range(LAYERS):
            size_in = COND if layer == 0 else latent
            weights[f"gru_w{step}{layer}"] = normal(0.4, 1, 3 * latent, size_in)
            weights[f"gru_r{step}{layer}"] = normal(0.4 / np.sqrt(latent / 8), 1, 3 * latent, latent)
            weights[f"gru_b{step}{layer}"] = normal(0.2, 1, 6 * latent)
        weights[f"head_w{step}"] = normal(0.3, latent, width)
        weights[f"head_b{step}"] = normal(0.1, width)
    return weights


def make_diffusion_folder(
    root: Path,
    *,
    seed: int = 0,
    num_verts_skin: int = 120,
    num_verts_tongue: int = 30,
    latent: int = 32,
    identities: tuple[str, ...] = IDENTITIES,
    network: Path | None = None,
    variant: FolderVariant | None = None,
) -> GeneratedDiffusion:
    """Write a complete v3.0-layout diffusion folder under ``root``; returns its description.

    ``network``: an ONNX file to use instead of the toy network (e.g. the full-size one of
    ``benchmarks/diffusion_network.py``; ``latent`` must then be 256); linked, not copied.
    ``variant``: rewrite the folder into this SDK-accepted form (same content).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    skin_size, tongue_size = num_verts_skin * 3, num_verts_tongue * 3
    width = skin_size + tongue_size + 15 + 4
    model_data: dict[str, dict[str, np.ndarray]] = {}
    configs: dict[str, dict[str, Any]] = {}
    bs_paths = []
    base_config = {k: v for k, v in MARK_CONFIG.items() if k not in ("source_shot", "source_frame")}
    for index, actor in enumerate(identities):
        skin_neutral = _mesh(rng, num_verts_skin, 20.0 + index)
        tongue_neutral = _mesh(rng, num_verts_tongue, 4.0)
        data = {
            "neutral_skin": skin_neutral,
            "neutral_tongue": tongue_neutral,
            "neutral_jaw": (rng.normal(0.0, 3.0, size=(5, 3)) + [0.0, 2.0, 4.0]).astype(np.float32),
            "lip_open_pose_delta": rng.normal(0.0, 0.2, size=(num_verts_skin, 3)).astype(np.float32),
            "eye_close_pose_delta": rng.normal(0.0, 0.2, size=(num_verts_skin, 3)).astype(np.float32),
            "saccade_rot_matrix": rng.normal(0.0, 1.5, size=(5000, 2)).astype(np.float32),
        }
        np.savez(root / f"model_data_{actor}.npz", **data)
        model_data[actor] = data
        # each identity its own post-processing values (Claire's from spec §1.4)
        config = {**base_config, "input_strength": 1.0 + 0.1 * index,
                  "lower_face_strength": 1.0 + 0.2 * index, "eye_saccade_seed": 10 * index}  # fmt: skip
        write_json(root / f"model_config_{actor}.json", {"config": config})
        configs[actor] = config
        write_blendshape_files(
            root, rng, skin_neutral, tongue_neutral,
            _sparse_deltas(rng, 52, num_verts_skin, 0.5),
            _sparse_deltas(rng, 16, num_verts_tongue, 0.2),
            suffix=f"_{actor}",
        )  # fmt: skip
        bs_paths.append({
            "skin": {"config": f"bs_skin_config_{actor}.json", "data": f"bs_skin_{actor}.npz"},
            "tongue": {"config": f"bs_tongue_config_{actor}.json", "data": f"bs_tongue_{actor}.npz"},
        })  # fmt: skip
    write_json(root / "network_info.json", {
        "id": {"type": "diffusion", "actor": "multi", "version": "3.0", "output": "geometry"},
        "params": {
            "emotions": list(A2F_EMOTIONS), "default_emotion": [0.0] * len(A2F_EMOTIONS),
            "identities": list(identities), "skin_size": skin_size, "tongue_size": tongue_size,
            "jaw_size": 15, "eyes_size": 4, "num_diffusion_steps": STEPS,
            "num_gru_layers": LAYERS, "gru_latent_dim": latent,
            "num_frames_left_truncate": LEFT, "num_frames_right_truncate": FRAMES - LEFT - CENTER,
            "num_frames_center": CENTER,
        },
        "audio_params": {"buffer_len": WINDOW, "padding_left": WINDOW, "padding_right": WINDOW,
                         "samplerate": 16000},
    })  # fmt: skip
    shapes = {
        "min": f"window:1x{WINDOW},identity:1x{len(identities)},emotion:1x30x10,input_latents:2x2x1x{latent},noise:1x3x60x{width}",
        "max": f"window:{{MAX_BATCH_SIZE}}x{WINDOW},identity:{{MAX_BATCH_SIZE}}x{len(identities)},emotion:{{MAX_BATCH_SIZE}}x30x10,input_latents:2x2x{{MAX_BATCH_SIZE}}x{latent},noise:{{MAX_BATCH_SIZE}}x3x60x{width}",
        "opt": f"window:{{OPT_BATCH_SIZE}}x{WINDOW},identity:{{OPT_BATCH_SIZE}}x{len(identities)},emotion:{{OPT_BATCH_SIZE}}x30x10,input_latents:2x2x{{OPT_BATCH_SIZE}}x{latent},noise:{{OPT_BATCH_SIZE}}x3x60x{width}",
    }
    write_json(root / "trt_info.json", {
        "estimated_trt_builder_time": 150,
        "trt_build_param": {
            "cuda_in_graphics": ["--memPoolSize=tacticSharedMem:0.046875"],
            "batch": [f"--minShapes={shapes['min']}", f"--maxShapes={shapes['max']}",
                      f"--optShapes={shapes['opt']}"],
        },
        "defaults": {"MAX_BATCH_SIZE": 8, "OPT_BATCH_SIZE": 3},
    })  # fmt: skip
    write_json(root / "model.json", {
        "networkInfoPath": "network_info.json",
        "networkPath": "network.trt",
        "modelConfigPaths": [f"model_config_{a}.json" for a in identities],
        "modelDataPaths": [f"model_data_{a}.npz" for a in identities],
        "blendshapePaths": bs_paths,
    })  # fmt: skip
    weights = _network_weights(rng, latent, width, len(identities))
    if network is None:
        _write_network(root / "network.onnx", weights, latent, width, len(identities))
    else:
        (root / "network.onnx").unlink(missing_ok=True)
        (root / "network.onnx").symlink_to(Path(network).resolve())
    if variant is not None:
        variant.apply(root)
    named = {("identity" if k == "identity_w" else "emotion" if k == "emotion_w" else k): v
             for k, v in weights.items()}  # fmt: skip
    return GeneratedDiffusion(
        model_json=root / "model.json",
        latent=latent,
        output_size=width,
        skin_size=skin_size,
        tongue_size=tongue_size,
        weights=named,
        model_data=model_data,
        configs=configs,
    )
