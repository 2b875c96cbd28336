"""An architecture-faithful Audio2Face-3D v3.0 diffusion network (random weights) for tests and
benchmarks.

Layers and sizes follow the Training Framework's ``diffusion_rnn`` (a2f_models_and_maya_ace.md
A.1.2) and its streaming ONNX export (A.2.1, a2x_sdk_spec.md §2): a HuBERT-base audio encoder
(7-layer conv feature extractor with GroupNorm on the first layer, feature projection,
weight-normed convolutional positional embedding, post-norm transformer layers with GELU), linear
resampling of the ~49 features per second to 60 frames (align-corners), per-frame conditioning
(audio Linear 768->256, EmbedGeometry of the noisy geometry (285), identity 32, diffusion time
one-hot(1000)->256->Mish, emotion 32: 861 in all), a 2-layer GRU (hidden 256) whose state is kept
per diffusion step and carried between windows, and heads to ``[3V skin | 3Vt tongue | 15 jaw |
4 eyes]`` plus the identity's mean geometry. The graph unrolls the 2-step DDPM sampler (cosine
schedule, respaced to the original timesteps {999, 0}, fixed-small variance, x0 prediction):
x_T = ``noise[:, 2]``, sampling noise ``noise[:, 1]`` after t=999, none after t=0. Only the 30
centre frames (15..44) go through the GRU; ``prediction`` holds deltas from the identity's mean
(times per-channel scales) there and zeros on the 15 + 15 context frames.

``scale="full"`` is HuBERT base (12 layers, 768-d; about 180 M parameters with 24002 skin and 5602
tongue vertices); ``scale="tiny"`` shrinks only the audio encoder, for tests. The decoder keeps
its real sizes at every scale (the I/O fixes the GRU state at 256). Needs torch (CPU) to build.

    python benchmarks/diffusion_network.py --out network.onnx --scale full \
        --skin-verts 24002 --tongue-verts 5602
"""

from __future__ import annotations

import argparse
import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual torch alias

WINDOW = 16000
FRAMES = 60
#: the centre block of a 60-frame window (15 left context, 30 centre, 15 right context)
CENTER = slice(15, 45)
STEPS = 2
GRU_LAYERS = 2
LATENT = 256
DIFFUSION_STEPS = 1000
#: the original timesteps of the respaced sampler, in sampling order
TIMESTEPS = (999, 0)


@dataclass(frozen=True)
class EncoderSize:
    """The HuBERT-like audio encoder's sizes."""

    conv_dim: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    pos_kernel: int = 128
    pos_groups: int = 16


SCALES = {
    "tiny": EncoderSize(conv_dim=32, hidden=64, layers=2, heads=4, ffn=128),
    "full": EncoderSize(conv_dim=512, hidden=768, layers=12, heads=12, ffn=3072),
}
#: wav2vec2/HuBERT conv feature extractor (kernel, stride): 16000 samples -> 49 features
CONV_LAYERS = ((10, 5),) + ((3, 2),) * 4 + ((2, 2),) * 2


class EncoderLayer(nn.Module):
    """HuBERT-base transformer layer (post-norm; eager attention as the HF export traces it)."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads, self.scaling = heads, (dim // heads) ** -0.5
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.out_proj = nn.Linear(dim, dim)
        self.layer_norm = nn.LayerNorm(dim)
        self.intermediate = nn.Linear(dim, ffn)
        self.output = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.q_proj(x) * self.scaling), heads(self.k_proj(x)), heads(self.v_proj(x))
        attn = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        y = self.out_proj((attn @ v).transpose(1, 2).reshape(b, t, d))
        x = self.layer_norm(x + y)
        return self.final_layer_norm(x + self.output(F.gelu(self.intermediate(x))))


class AudioEncoder(nn.Module):
    """HuBERT base (``facebook/hubert-base-ls960`` layout) at a configurable size."""

    def __init__(self, size: EncoderSize) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for i, (kernel, stride) in enumerate(CONV_LAYERS):
            layers.append(nn.Conv1d(channels, size.conv_dim, kernel, stride, bias=False))
            if i == 0:
                layers.append(nn.GroupNorm(size.conv_dim, size.conv_dim))
            layers.append(nn.GELU())
            channels = size.conv_dim
        self.feature_extractor = nn.Sequential(*layers)
        self.projection_norm = nn.LayerNorm(size.conv_dim)
        self.projection = nn.Linear(size.conv_dim, size.hidden)
        pos = nn.Conv1d(
            size.hidden, size.hidden, size.pos_kernel, padding=size.pos_kernel // 2,
            groups=size.pos_groups,
        )  # fmt: skip
        self.pos_conv = nn.utils.parametrizations.weight_norm(pos, name="weight", dim=2)
        self.pos_trim = 1 if size.pos_kernel % 2 == 0 else 0  # HF "SamePad"
        self.layer_norm = nn.LayerNorm(size.hidden)
        self.layers = nn.ModuleList(
            EncoderLayer(size.hidden, size.heads, size.ffn) for _ in range(size.layers)
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.feature_extractor(audio[:, None])  # [B, C, 49]
        x = self.projection(self.projection_norm(x.transpose(1, 2)))  # [B, 49, H]
        pos = self.pos_conv(x.transpose(1, 2))
        if self.pos_trim:
            pos = pos[:, :, : -self.pos_trim]
        x = self.layer_norm(x + F.gelu(pos).transpose(1, 2))
        for layer in self.layers:
            x = layer(x)
        return x


class EmbedGeometry(nn.Module):
    """The noisy geometry of a frame -> 285: per-part embeddings, concatenated (570), an MLP."""

    def __init__(self, skin: int, tongue: int) -> None:
        super().__init__()
        self.split = (skin, tongue, 15, 4)
        self.skin, self.skin_conv = nn.Linear(skin, 512), nn.Conv1d(1, 1, 9, padding=4)
        self.tongue, self.tongue_conv = nn.Linear(tongue, 20), nn.Conv1d(1, 1, 9, padding=4)
        self.jaw = nn.Sequential(nn.Linear(15, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU())
        self.eyes = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.mlp = nn.Sequential(nn.Linear(570, 570), nn.ReLU(), nn.Linear(570, 285))

    @staticmethod
    def _conv(linear: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
        b, t, d = linear.shape
        return torch.relu(conv(linear.reshape(b * t, 1, d))).reshape(b, t, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skin, tongue, jaw, eyes = torch.split(x, self.split, dim=-1)
        parts = [
            self._conv(self.skin(skin), self.skin_conv),
            self._conv(self.tongue(tongue), self.tongue_conv),
            self.jaw(jaw),
            self.eyes(eyes),
        ]
        return self.mlp(torch.cat(parts, dim=-1))


def _head(out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(LATENT, hidden), nn.ReLU(), nn.Linear(hidden, out))


def _cosine_sampler() -> dict[str, np.ndarray]:
    """The respaced (1000 -> {0, 999}) cosine-schedule DDPM coefficients, in float64, by
    respaced index (0: t=0, 1: t=999), as motion-diffusion-model's ``SpacedDiffusion``."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array([
        min(1 - alpha_bar((i + 1) / DIFFUSION_STEPS) / alpha_bar(i / DIFFUSION_STEPS), 0.999)
        for i in range(DIFFUSION_STEPS)
    ])  # fmt: skip
    cumprod = np.cumprod(1.0 - betas)
    last, spaced = 1.0, []
    for t in sorted(TIMESTEPS):
        spaced.append(1.0 - cumprod[t] / last)
        last = cumprod[t]
    betas = np.array(spaced)
    alphas = 1.0 - betas
    acp = np.cumprod(alphas)
    acp_prev = np.append(1.0, acp[:-1])
    variance = betas * (1.0 - acp_prev) / (1.0 - acp)
    log_variance = np.log(np.append(variance[1], variance[1:]))  # fixed-small, clipped
    return {
        "coef_x0": betas * np.sqrt(acp_prev) / (1.0 - acp),
        "coef_xt": (1.0 - acp_prev) * np.sqrt(alphas) / (1.0 - acp),
        "sigma": np.exp(0.5 * log_variance) * (np.arange(len(betas)) != 0),  # no noise at t=0
    }


class DiffusionNetwork(nn.Module):
    """The streaming export: (window, identity, emotion, input_latents, noise) ->
    (prediction, output_latents); see the module docstring."""

    def __init__(
        self, skin_verts: int, tongue_verts: int, identities: int = 3, emotions: int = 10,
        scale: str = "tiny",
    ) -> None:  # fmt: skip
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; use one of {sorted(SCALES)}")
        skin, tongue = 3 * skin_verts, 3 * tongue_verts
        self.size = skin + tongue + 15 + 4
        self.encoder = AudioEncoder(SCALES[scale])
        self.audio = nn.Linear(SCALES[scale].hidden, 256)
        self.geometry = EmbedGeometry(skin, tongue)
        self.identity = nn.Linear(identities, 32, bias=False)
        self.time = nn.Linear(DIFFUSION_STEPS, 256)
        self.emotion = nn.Linear(emotions, 32, bias=False)
        self.gru = nn.GRU(256 + 285 + 32 + 256 + 32, LATENT, GRU_LAYERS, batch_first=True,
                          dropout=0.3)  # fmt: skip
        self.heads = nn.ModuleList(
            [_head(skin, 512), _head(tongue, 512), _head(15, 128), _head(4, 128)]
        )
        # the identities' mean geometry (normalised template; jaw and eyes zero) and the delta
        # output's per-channel scales: buffers, as in the deployed export
        mean = torch.zeros(identities, self.size)
        mean[:, : skin + tongue] = 0.1 * torch.randn(identities, skin + tongue)
        self.register_buffer("mean_geometry", mean)
        self.register_buffer("delta_scale", 0.5 + torch.rand(self.size))
        coefs = _cosine_sampler()
        for name, values in coefs.items():
            self.register_buffer(name, torch.tensor(values[::-1].copy(), dtype=torch.float32))
        # respaced index (sampling order) -> original timestep, as ``_WrappedModel``
        self.register_buffer("timestep_map", torch.tensor(TIMESTEPS, dtype=torch.int64))

    def denoise(
        self, step: int, x_t: torch.Tensor, audio: torch.Tensor, identity: torch.Tensor,
        emotion: torch.Tensor, mean: torch.Tensor, state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """x0 of the 60 frames (zeros outside the centre) and the GRU state after ``step``."""
        batch, frames = x_t.shape[0], CENTER.stop - CENTER.start
        t = self.timestep_map[step : step + 1]  # [1]: ORT's OneHot rejects scalar indices
        time = F.mish(self.time(F.one_hot(t, DIFFUSION_STEPS).float()))  # [1, 256]
        cond = torch.cat(
            [
                audio,
                self.geometry(x_t[:, CENTER]),
                identity[:, None].expand(-1, frames, -1),
                time[None].expand(batch, frames, -1),
                emotion,
            ],
            dim=-1,
        )  # [B, 30, 861]
        y, state = self.gru(cond, state)
        x0 = torch.cat([head(y) for head in self.heads], dim=-1) + mean[:, None]
        return F.pad(x0, (0, 0, CENTER.start, FRAMES - CENTER.stop)), state

    def forward(
        self, window: torch.Tensor, identity: torch.Tensor, emotion: torch.Tensor,
        input_latents: torch.Tensor, noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        features = self.encoder(window)  # [B, 49, H]
        features = F.interpolate(
            features.transpose(1, 2), size=FRAMES, mode="linear", align_corners=True
        ).transpose(1, 2)
        audio = self.audio(features[:, CENTER])
        ident = self.identity(identity)
        emo = self.emotion(emotion)
        mean = identity @ self.mean_geometry  # [B, D]
        x = noise[:, STEPS]  # x_T
        states = []
        for step in range(STEPS):
            x0, state = self.denoise(step, x, audio, ident, emo, mean, input_latents[step])
            states.append(state)
            x = self.coef_x0[step] * x0 + self.coef_xt[step] * x
            if step < STEPS - 1:  # fixed-small variance; no noise at the last step (t=0)
                x = x + self.sigma[step] * noise[:, STEPS - 1 - step]
        delta = (x - mean[:, None]) * self.delta_scale
        prediction = F.pad(delta[:, CENTER], (0, 0, CENTER.start, FRAMES - CENTER.stop))
        return prediction, torch.stack(states)


def build_diffusion_network(
    *, skin_verts: int, tongue_verts: int, identities: int = 3, emotions: int = 10,
    scale: str = "tiny", seed: int = 0,
) -> DiffusionNetwork:  # fmt: skip
    """The network in eval mode with seeded random weights (PyTorch's default initialisation,
    so the heads are not zero as after training starts: outputs depend on every input)."""
    torch.manual_seed(seed)
    return DiffusionNetwork(skin_verts, tongue_verts, identities, emotions, scale).eval()


def export_diffusion_network(
    path: Path, *, skin_verts: int, tongue_verts: int, identities: int = 3, emotions: int = 10,
    scale: str = "tiny", seed: int = 0,
) -> Path:  # fmt: skip
    """Write the network as ONNX with the deployed I/O (opset 14, no constant folding, batch-3
    dummy inputs, dynamic batch: axis 2 of the latents, axis 0 elsewhere), as
    ``convert_onnx.Converter`` does."""
    net = build_diffusion_network(
        skin_verts=skin_verts, tongue_verts=tongue_verts, identities=identities,
        emotions=emotions, scale=scale, seed=seed,
    )  # fmt: skip
    batch = 3
    dummy = (
        torch.zeros(batch, WINDOW),
        torch.eye(identities)[torch.arange(batch) % identities],
        torch.zeros(batch, CENTER.stop - CENTER.start, emotions),
        torch.zeros(STEPS, GRU_LAYERS, batch, LATENT),
        torch.zeros(batch, STEPS + 1, FRAMES, net.size),
    )
    names = ["window", "identity", "emotion", "input_latents", "noise"]
    dynamic = {name: {0: "batch_size"} for name in names + ["prediction"]}
    dynamic["input_latents"] = dynamic["output_latents"] = {2: "batch_size"}
    options = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    path = Path(path)
    with torch.no_grad():
        torch.onnx.export(
            net, dummy, str(path), input_names=names,
            output_names=["prediction", "output_latents"], dynamic_axes=dynamic,
            opset_version=14, do_constant_folding=False, **options,
        )  # fmt: skip
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    parser.add_argument("--skin-verts", type=int, default=24002)
    parser.add_argument("--tongue-verts", type=int, default=5602)
    parser.add_argument("--identities", type=int, default=3)
    parser.add_argument("--emotions", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    net = build_diffusion_network(
        skin_verts=args.skin_verts, tongue_verts=args.tongue_verts, identities=args.identities,
        emotions=args.emotions, scale=args.scale, seed=args.seed,
    )  # fmt: skip
    params = sum(p.numel() for p in net.parameters())
    del net
    export_diffusion_network(
        args.out, skin_verts=args.skin_verts, tongue_verts=args.tongue_verts,
        identities=args.identities, emotions=args.emotions, scale=args.scale, seed=args.seed,
    )  # fmt: skip
    print(f"wrote {args.out} ({params / 1e6:.2f} M parameters, output width "
          f"{3 * args.skin_verts + 3 * args.tongue_verts + 19})")  # fmt: skip


if __name__ == "__main__":
    main()
