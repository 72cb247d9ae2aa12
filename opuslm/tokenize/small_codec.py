"""The project's small neural codec: conv encoder on a log-mel, residual VQ, conv decoder to an STFT.

Model code only (training lives in `codec_training.py`). The residual VQ is vector-quantize-pytorch's
`ResidualVQ`. Why frame-domain rather than strided convolutions over samples: a waveform-domain
autoencoder needs far more steps than a few CPU minutes allow, while this design runs every
convolution at the STFT frame rate (100 Hz) and lets `istft` do the upsampling (as Vocos does), so
it trains to intelligible speech on a CPU in minutes.

    wav -> log-mel (stft_hop) -> conv stack, stride 2 per stage -> latents at `hop`
        -> RVQ codes [num_codebooks, frames] -> conv stack, x2 per stage -> magnitude, phase -> istft

Batched encoding gives exactly the codes of single encodes: padding is zeros for both, the encoder
multiplies activations by the padding mask after each stage, and since convolution kernels round
differently for different batch shapes (about 1e-7 in float32), `encode` runs in float64, snaps the
latents to a 2^-20 grid and picks nearest codewords in float64. Decoding has no such need and runs
in float32.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from opuslm.tokenize.features import LogMel


@dataclass
class SmallCodecConfig:
    sample_rate: int = 16000
    hop: int = 640  # samples per codec frame: 25 Hz at 16 kHz
    stft_hop: int = 160  # samples per STFT frame; hop / stft_hop must be a power of two
    n_fft: int = 640
    n_mels: int = 80
    channels: int = 256
    latent_dim: int = 64
    num_codebooks: int = 8
    codebook_size: int = 256

    def __post_init__(self):
        ratio = self.hop // self.stft_hop
        if self.hop % self.stft_hop or ratio & (ratio - 1):
            raise ValueError(f"hop / stft_hop must be a power of two, got {self.hop} / {self.stft_hop}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def stages(self) -> int:
        return int(math.log2(self.hop // self.stft_hop))

    def to_dict(self) -> dict:
        return asdict(self)


class _ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)
        self.act = nn.GELU()

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class Encoder(nn.Module):
    def __init__(self, config: SmallCodecConfig):
        super().__init__()
        self.config = config
        self.log_mel = LogMel(config.sample_rate, config.n_fft, config.stft_hop, config.n_mels)
        self.stem = nn.Conv1d(config.n_mels, config.channels, 7, padding=3)
        self.stages = nn.ModuleList(
            nn.ModuleList([_ResBlock(config.channels), nn.Conv1d(config.channels, config.channels, 4, stride=2, padding=1)])
            for _ in range(config.stages))
        self.final = _ResBlock(config.channels)
        self.out = nn.Conv1d(config.channels, config.latent_dim, 3, padding=1)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] (S a multiple of hop), lengths [B] in samples -> latents [B, D, S / hop]."""
        def mask(x, step):
            valid = torch.div(lengths + step - 1, step, rounding_mode="floor")
            return x * (torch.arange(x.shape[-1], device=x.device)[None, :] < valid[:, None])[:, None, :]

        step = self.config.stft_hop
        mel = self.log_mel(wav[:, 0])[:, : wav.shape[-1] // step].transpose(1, 2)  # [B, n_mels, frames]
        x = mask(self.stem(mask(mel + 5.0, step)), step)  # log10 floor is -5: silence becomes zero
        for res, down in self.stages:
            x = mask(res(x), step)
            step *= 2
            x = mask(down(x), step)
        return mask(self.out(mask(self.final(x), step)), step)


class Decoder(nn.Module):
    def __init__(self, config: SmallCodecConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = nn.Conv1d(config.latent_dim, c, 7, padding=3)
        layers = []
        for _ in range(config.stages):
            layers += [_ResBlock(c), nn.ConvTranspose1d(c, c, 4, stride=2, padding=1)]
        layers += [_ResBlock(c, 1), _ResBlock(c, 3), _ResBlock(c, 9), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.bins = config.n_fft // 2 + 1
        self.head = nn.Conv1d(c, 2 * self.bins, 1)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, D, T] -> wav [B, 1, T * hop]."""
        x = self.head(self.body(self.stem(latents)))
        log_magnitude, phase = x[:, : self.bins], x[:, self.bins:]
        spectrum = torch.polar(torch.exp(log_magnitude.clamp(max=6.0)), phase)
        length = latents.shape[-1] * self.config.hop
        wav = torch.istft(spectrum, self.config.n_fft, self.config.stft_hop, window=self.window.to(x.dtype),
                          center=True, length=length)
        return wav[:, None, :]


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
        return nn.functional.pad(wav, (0, (-wav.shape[-1]) % self.config.hop))

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
        """codes [B, Q, T] -> wav [B, 1, T * hop], in the decoder's dtype. The codewords are looked up
        here: `ResidualVQ.get_output_from_indices` builds an einx graph (a sympy solve) for every new
        length, which took three quarters of the decoding time."""
        dtype = next(self.decoder.parameters()).dtype
        codebooks = self.quantizer.codebooks.to(dtype)  # [Q, K, D]
        quantized = sum(codebooks[q][codes[:, q]] for q in range(codes.shape[1]))  # [B, T, D]
        return self.decoder(self.quantizer.project_out(quantized).transpose(1, 2))
