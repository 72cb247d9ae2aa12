"""The project's small neural codec: a strided convolutional encoder, residual VQ, and a mirrored decoder.

Model code only (training lives in `codec_training.py`). The residual VQ is vector-quantize-pytorch's
`ResidualVQ`.

Batched encoding gives exactly the codes of single encodes: every convolution is zero-padded and the
encoder multiplies its activations by the padding mask after each block, so padding never leaks into
valid frames. That alone is not enough for identical ids, because convolution kernels round
differently for different batch shapes (about 1e-7 in float32). `encode` therefore runs in float64,
snaps the latents to a 2^-20 grid, and picks nearest codewords in float64, so the last-bit noise of
the kernels cannot change an id short of an exact tie.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class SmallCodecConfig:
    sample_rate: int = 16000
    strides: list[int] = field(default_factory=lambda: [4, 4, 5, 8])  # hop = product = 640 (25 Hz)
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 192])
    latent_dim: int = 64
    num_codebooks: int = 8
    codebook_size: int = 256

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def to_dict(self) -> dict:
        return asdict(self)


class _Upsample(nn.Module):
    """Transposed convolution that turns T frames into exactly T * stride samples."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.ConvTranspose1d(in_ch, out_ch, 2 * stride, stride=stride)

    def forward(self, x):
        start = self.stride // 2
        return self.conv(x)[..., start: start + x.shape[-1] * self.stride]


class _ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)
        self.act = nn.ELU()

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class Encoder(nn.Module):
    def __init__(self, config: SmallCodecConfig):
        super().__init__()
        self.strides = config.strides
        self.stem = nn.Conv1d(1, config.channels[0], 7, padding=3)
        self.blocks = nn.ModuleList()
        in_ch = config.channels[0]
        for stride, out_ch in zip(config.strides, config.channels):
            self.blocks.append(nn.ModuleDict({
                "res": _ResBlock(in_ch, 1),
                "down": nn.Conv1d(in_ch, out_ch, 2 * stride, stride=stride, padding=stride // 2 + stride % 2),
            }))
            in_ch = out_ch
        self.act = nn.ELU()
        self.out = nn.Conv1d(in_ch, config.latent_dim, 3, padding=1)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] (S a multiple of the hop), lengths [B] in samples -> latents [B, D, S / hop]."""
        def mask(x, hop):
            valid = torch.div(lengths + hop - 1, hop, rounding_mode="floor")
            return x * (torch.arange(x.shape[-1], device=x.device)[None, :] < valid[:, None])[:, None, :]

        hop = 1
        x = mask(self.stem(wav), hop)
        for stride, block in zip(self.strides, self.blocks):
            x = mask(block["res"](x), hop)
            hop *= stride
            x = block["down"](self.act(x))[..., : wav.shape[-1] // hop]
            x = mask(x, hop)
        return mask(self.out(self.act(x)), hop)


class Decoder(nn.Module):
    def __init__(self, config: SmallCodecConfig):
        super().__init__()
        channels = list(reversed(config.channels))
        self.stem = nn.Conv1d(config.latent_dim, channels[0], 7, padding=3)
        layers = []
        for i, stride in enumerate(reversed(config.strides)):
            out_ch = channels[i + 1] if i + 1 < len(channels) else channels[-1]
            layers += [nn.ELU(), _Upsample(channels[i], out_ch, stride), _ResBlock(out_ch, 1), _ResBlock(out_ch, 3)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Sequential(nn.ELU(), nn.Conv1d(channels[-1], 1, 7, padding=3), nn.Tanh())

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(self.stem(latents)))


class SmallCodec(nn.Module):
    def __init__(self, config: SmallCodecConfig):
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVQ(
            dim=config.latent_dim, num_quantizers=config.num_codebooks, codebook_size=config.codebook_size,
            kmeans_init=True, kmeans_iters=10, threshold_ema_dead_code=2, decay=0.95,
        )
        self.decoder = Decoder(config)

    def pad(self, wav: torch.Tensor) -> torch.Tensor:
        hop = self.config.hop
        return nn.functional.pad(wav, (0, (-wav.shape[-1]) % hop))

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor):
        """Training pass: wav [B, 1, S] -> (reconstruction [B, 1, S'], codes [B, Q, T], commitment loss)."""
        latents = self.encoder(self.pad(wav), lengths)
        quantized, codes, commit = self.quantizer(latents.transpose(1, 2))
        return self.decoder(quantized.transpose(1, 2)), codes.transpose(1, 2), commit.sum()

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> codes [B, Q, ceil(S / hop)] (frames past each item's length are meaningless).

        Call on a float64 copy of the model (see the module docstring).
        """
        latents = self.encoder(self.pad(wav).to(torch.float64), lengths).transpose(1, 2)
        residual = torch.round(latents * 2.0**20) / 2.0**20
        codes = []
        for codebook in self.quantizer.codebooks.to(torch.float64):  # [K, D] each
            distances = (codebook**2).sum(-1) - 2 * residual @ codebook.T
            index = distances.argmin(-1)
            residual = residual - codebook[index]
            codes.append(index)
        return torch.stack(codes, dim=1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Q, T] -> wav [B, 1, T * hop]."""
        quantized = self.quantizer.get_output_from_indices(codes.transpose(1, 2))
        return self.decoder(quantized.transpose(1, 2))
