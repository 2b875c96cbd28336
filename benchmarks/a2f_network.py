"""An architecture-faithful Audio2Face-3D v2.x regression network (random weights) for benchmarks.

Layers and sizes follow the Training Framework's ``conv_w2v_autocorr`` (a2f_models_and_maya_ace.md
A.1.1): a wav2vec2-base branch (7-layer conv feature extractor, feature projection, positional
convolution, 1 transformer layer, Linear 768->256 + ReLU) and an autocorrelation branch
(25 x 640-sample Hann frames, 32 lags, 5 convolutions), both 256 x 25; a temporal stack of 4
convolutions conditioned on the 24-d emotion (16 implicit + Linear 10->8); heads to
``[S skin | T tongue | 15 jaw | 4 eyes]``. About 18.3 M parameters for S=272, T=10.
The ONNX export has the real I/O: ``input`` [B,1,8320], ``emotion`` [B,1,26] -> ``result``
[B,1,S+T+19], float32, opset 14, dynamic batch. Needs torch (CPU) to build; not to run.
"""

from __future__ import annotations

import math
from pathlib import Path


def build_torch_network(num_skin: int = 272, num_tongue: int = 10, seed: int = 0):  # noqa: ANN201
    """The network as a ``torch.nn.Module`` in eval mode (random weights, fixed seed)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class NormRelu(nn.Module):
        def forward(self, x):  # noqa: ANN001, ANN202
            return torch.relu(x) * math.sqrt(2.0)

    class EncoderLayer(nn.Module):
        """wav2vec2-base transformer layer (post-norm): 12-head attention + 3072 GELU FFN."""

        def __init__(self, dim: int = 768, heads: int = 12, ffn: int = 3072) -> None:
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.norm1 = nn.LayerNorm(dim)
            self.ff1 = nn.Linear(dim, ffn)
            self.ff2 = nn.Linear(ffn, dim)
            self.norm2 = nn.LayerNorm(dim)

        def forward(self, x):  # noqa: ANN001, ANN202
            b, t, d = x.shape
            q, k, v = (
                self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            )
            attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
            y = (attn @ v).transpose(1, 2).reshape(b, t, d)
            x = self.norm1(x + self.proj(y))
            return self.norm2(x + self.ff2(torch.nn.functional.gelu(self.ff1(x))))

    class Wav2VecBranch(nn.Module):
        """wav2vec2-base truncated to one transformer layer (torchaudio WAV2VEC2_BASE layout)."""

        def __init__(self) -> None:
            super().__init__()
            specs = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2
            layers: list[nn.Module] = []
            channels = 1
            for i, (kernel, stride) in enumerate(specs):
                layers.append(nn.Conv1d(channels, 512, kernel, stride, bias=False))
                if i == 0:
                    layers.append(nn.GroupNorm(512, 512))
                layers.append(nn.GELU())
                channels = 512
            self.features = nn.Sequential(*layers)
            self.proj_norm = nn.LayerNorm(512)
            self.proj = nn.Linear(512, 768)
            self.pos_conv = nn.Conv1d(768, 768, 128, padding=64, groups=16)
            self.enc_norm = nn.LayerNorm(768)
            self.layer = EncoderLayer()
            self.layer_weights = nn.Parameter(torch.ones(1))
            self.out = nn.Linear(768, 256)

        def forward(self, audio):  # noqa: ANN001, ANN202
            x = self.features(audio.unsqueeze(1))  # [B, 512, 25]
            x = self.proj(self.proj_norm(x.transpose(1, 2)))  # [B, 25, 768]
            pos = self.pos_conv(x.transpose(1, 2))[:, :, :-1]
            x = self.enc_norm(x + torch.nn.functional.gelu(pos).transpose(1, 2))
            x = self.layer(x)
            w = self.layer_weights / self.layer_weights.sum()
            return torch.relu(self.out(x * w[0]))  # [B, 25, 256]

    class AutocorrBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [1, 72, 108, 162, 243]
            layers: list[nn.Module] = []
            for a, b in zip(chans, chans[1:], strict=False):
                layers += [nn.Conv2d(a, b, (1, 3), (1, 2), (0, 1)), NormRelu()]
            layers += [nn.Conv2d(243, 256, (1, 2)), NormRelu()]
            self.convs = nn.Sequential(*layers)
            self.register_buffer("hann", torch.hann_window(640, periodic=False))

        def forward(self, audio):  # noqa: ANN001, ANN202
            x = audio * 8.912028
            halves = x.reshape(-1, 26, 320)
            frames = torch.cat([halves[:, :25], halves[:, 1:]], dim=2)  # 25 x 640, hop 320
            frames = (frames - frames.mean(dim=2, keepdim=True)) * self.hann
            lags = [(frames[:, :, : 640 - k] * frames[:, :, k:]).sum(dim=2) for k in range(32)]
            ac = torch.stack(lags, dim=2) / 640.0  # [B, 25, 32]
            return self.convs(ac.unsqueeze(1)).squeeze(3)  # [B, 256, 25]

    class Regression(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w2v = Wav2VecBranch()
            self.autocorr = AutocorrBranch()
            self.explicit = nn.Linear(10, 8)
            self.convs = nn.ModuleList(
                [nn.Conv2d(512, 256, (3, 1), (2, 1), (1, 0))]
                + [nn.Conv2d(280, 256, (3, 1), (2, 1), (1, 0)) for _ in range(3)]
            )
            self.act = NormRelu()
            self.fc = nn.Linear(560, 256)
            self.skin1 = nn.Linear(280, num_skin + 19)
            self.skin2 = nn.Linear(num_skin + 19, num_skin + 19)
            self.tongue1 = nn.Linear(280, num_tongue)
            self.tongue2 = nn.Linear(num_tongue, num_tongue)

        def forward(self, input, emotion):  # noqa: A002, ANN001, ANN202
            audio = input[:, 0]
            emo = emotion[:, 0]
            cond = torch.cat([emo[:, :16], self.explicit(emo[:, 16:])], dim=1)  # [B, 24]
            w2v = self.w2v(audio).transpose(1, 2)  # [B, 256, 25]
            x = torch.cat([w2v, self.autocorr(audio)], dim=1).unsqueeze(3)  # [B, 512, 25, 1]
            for conv in self.convs:
                x = self.act(conv(x))
                cmap = cond[:, :, None, None].expand(-1, -1, x.shape[2], 1)
                x = torch.cat([x, cmap], dim=1)
            x = self.act(self.fc(x.flatten(1)))  # 280 x 2 -> 256
            x = torch.cat([x, cond], dim=1)  # 280
            skin = self.skin2(self.skin1(x))
            tongue = self.tongue2(self.tongue1(x))
            out = torch.cat([skin[:, :num_skin], tongue, skin[:, num_skin:]], dim=1)
            return out.unsqueeze(1)

    return Regression().eval()


def export_onnx(path: Path, num_skin: int = 272, num_tongue: int = 10, seed: int = 0) -> int:
    """Write the network as ONNX (opset 14, dynamic batch); returns its parameter count."""
    import torch

    net = build_torch_network(num_skin, num_tongue, seed)
    params = sum(p.numel() for p in net.parameters())
    dummy = (torch.zeros(2, 1, 8320), torch.zeros(2, 1, 26))
    with torch.no_grad():
        torch.onnx.export(
            net, dummy, str(path), input_names=["input", "emotion"], output_names=["result"],
            dynamic_axes={"input": {0: "batch_size"}, "emotion": {0: "batch_size"},
                          "result": {0: "batch_size"}},
            opset_version=14, dynamo=False,
        )  # fmt: skip
    return params
