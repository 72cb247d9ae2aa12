"""The acoustic tokenizer: one interface over every neural codec.

`encode(wav, sr) -> codes [num_codebooks, frames]`, `encode_batch(wavs, sr)` (exactly the codes of
single encodes), `decode(codes) -> wav` at `sample_rate`. Backends:

- `MelPitchTokenizer`: pitch + residual k-means log-mel codes with a harmonic-plus-noise synthesiser
  (`opuslm tokenizers train-codec`, the embedded default; `opuslm/tokenize/mel_pitch.py`).
- `SmallCodecTokenizer`: the project's small neural codec (`train-codec --kind neural`).
- `HFCodecTokenizer`: transformers' `EncodecModel`, `DacModel`, `MimiModel` from a local folder.
- `MetaEncodecTokenizer`: Meta's `encodec` package with an original checkpoint (optional extra).

`load_acoustic_tokenizer(path)` picks the backend from what the path holds.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch

from opuslm.audio import resample
from opuslm.errors import OpusLMError


class AcousticTokenizer:
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int

    def num_frames(self, num_samples: int) -> int:
        """Frames for `num_samples` samples at `sample_rate`."""
        return math.ceil(num_samples * self.frame_rate / self.sample_rate)

    def encode(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.encode_batch([wav], sample_rate)[0]

    def encode_batch(self, wavs: list[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """int64 codes `[num_codebooks, frames_i]` for each waveform (none for none: a batch whose every
        utterance was rejected)."""
        raise NotImplementedError

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """float32 waveform at `sample_rate` for codes `[num_codebooks, frames]`."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"backend": type(self).__name__, "sample_rate": self.sample_rate, "frame_rate": self.frame_rate,
                "num_codebooks": self.num_codebooks, "codebook_size": self.codebook_size}

    def _check_codes(self, codes: np.ndarray) -> torch.Tensor:
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        if codes.ndim != 2 or codes.shape[0] != self.num_codebooks:
            raise OpusLMError(f"codes must be [{self.num_codebooks}, frames], got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise OpusLMError(f"codes must lie in [0, {self.codebook_size}); got {codes.min()}..{codes.max()}")
        return codes


def _pad_batch(wavs: list[np.ndarray], dtype) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in wavs])
    batch = torch.zeros(len(wavs), 1, int(lengths.max()), dtype=dtype)
    for i, wav in enumerate(wavs):
        batch[i, 0, : len(wav)] = torch.from_numpy(np.asarray(wav)).to(dtype)
    return batch, lengths


class SmallCodecTokenizer(AcousticTokenizer):
    """The project's own codec: `codec.json` + `model.safetensors` in a folder."""

    def __init__(self, folder: str | Path):
        from safetensors.torch import load_file

        from opuslm.tokenize.small_codec import SmallCodec, SmallCodecConfig

        folder = Path(folder)
        meta = json.loads((folder / "codec.json").read_text())
        self.config = SmallCodecConfig(**meta["config"])
        self.model = SmallCodec(self.config)
        self.model.load_state_dict(load_file(str(folder / "model.safetensors")))
        self.synthesis = copy.deepcopy(self.model).float().eval()  # decoding needs no float64
        self.model = self.model.double().eval()  # encoding in float64: see small_codec's docstring
        self.sample_rate, self.frame_rate = self.config.sample_rate, self.config.frame_rate
        self.num_codebooks, self.codebook_size = self.config.num_codebooks, self.config.codebook_size

    def encode_batch(self, wavs, sample_rate):
        if not wavs:
            return []
        wavs = [resample(np.asarray(w, np.float32), sample_rate, self.sample_rate) for w in wavs]
        batch, lengths = _pad_batch(wavs, torch.float64)
        codes = self.model.encode(batch, lengths)
        return [codes[i, :, : self.num_frames(int(n))].numpy() for i, n in enumerate(lengths)]

    @torch.no_grad()
    def decode(self, codes):
        # oneDNN builds its convolution kernels for every new length, and every utterance has one: that
        # took half the time of a first decode, which is the only one a clip gets; torch's own kernels
        # are as fast once built
        onednn = torch.backends.mkldnn.enabled  # (its `flags()` context warns about TF32 on every call)
        torch.backends.mkldnn.enabled = False
        try:
            wav = self.synthesis.decode(self._check_codes(codes)[None])
        finally:
            torch.backends.mkldnn.enabled = onednn
        return wav[0, 0].numpy()


class MelPitchTokenizer(AcousticTokenizer):
    """The mel-pitch codec: `codec.json` (type mel_pitch) + `mel_codebooks.npy` in a folder."""

    def __init__(self, folder: str | Path):
        from opuslm.tokenize.mel_pitch import MelPitchCodec

        self.codec = MelPitchCodec.load(folder)
        config = self.codec.config
        self.sample_rate, self.frame_rate = config.sample_rate, config.frame_rate
        self.num_codebooks, self.codebook_size = config.num_codebooks, config.codebook_size

    def encode_batch(self, wavs, sample_rate):
        return [self.codec.encode(resample(np.asarray(w, np.float32), sample_rate, self.sample_rate)) for w in wavs]

    def decode(self, codes):
        return self.codec.decode(self._check_codes(codes).numpy())


class HFCodecTokenizer(AcousticTokenizer):
    """transformers' EnCodec, DAC or Mimi from a local folder (`config.json` + weights).

    Their convolutions see padding (EnCodec pads by reflection), so `encode_batch` batches only
    waveforms of equal length: that keeps batched codes identical to single ones.
    """

    def __init__(self, folder: str | Path, num_codebooks: int | None = None, device: str = "cpu"):
        from transformers import AutoConfig, DacModel, EncodecModel, MimiModel

        folder = Path(folder)
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        classes = {"encodec": EncodecModel, "dac": DacModel, "mimi": MimiModel}
        if config.model_type not in classes:
            raise OpusLMError(f"{folder} holds a {config.model_type!r} model; supported codecs: {', '.join(classes)}")
        if config.model_type == "encodec" and (config.chunk_length_s or config.audio_channels != 1):
            # the 48 kHz model: overlapping chunks, each with its own scale, and two channels; codes alone
            # do not carry the scales, so decoding them would be wrong
            raise OpusLMError(f"{folder} is a chunked or stereo EnCodec (chunk_length_s {config.chunk_length_s}, "
                              f"{config.audio_channels} channels), which this tokenizer does not support: use the "
                              "24 kHz EnCodec, DAC or Mimi")
        self.kind, self.device = config.model_type, device
        self.model = classes[self.kind].from_pretrained(str(folder), local_files_only=True).to(device).eval()
        self._strides = list(config.downsampling_ratios) if self.kind == "dac" else None
        self.sample_rate = config.sampling_rate
        self.codebook_size = config.codebook_size
        if self.kind == "encodec":
            self.frame_rate = config.frame_rate
            self.bandwidth = max(config.target_bandwidths)
            available = int(self.bandwidth * 1000 // (self.frame_rate * math.log2(self.codebook_size)))
        elif self.kind == "dac":
            self.frame_rate = self.sample_rate / config.hop_length
            available = config.n_codebooks
        else:
            self.frame_rate = config.frame_rate
            available = config.num_quantizers
        self.num_codebooks = num_codebooks or available
        if not 1 <= self.num_codebooks <= available:
            raise OpusLMError(f"{folder} has {available} codebooks; cannot use {self.num_codebooks}")

    def num_frames(self, num_samples: int) -> int:
        if self._strides is None:
            return super().num_frames(num_samples)
        # DAC's strided convolutions (kernel 2s, padding ceil(s/2)) drop a partial last hop, and with
        # an odd stride not always the same way
        frames = num_samples
        for stride in self._strides:
            frames = (frames + 2 * math.ceil(stride / 2) - 2 * stride) // stride + 1
        return frames

    @torch.no_grad()
    def _encode_equal_length(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device)
        if self.kind == "encodec":
            codes = self.model.encode(x, bandwidth=self.bandwidth).audio_codes  # [chunks, B, Q, T]
            codes = torch.cat(list(codes), dim=-1)
        elif self.kind == "dac":
            codes = self.model.encode(x).audio_codes
        else:
            codes = self.model.encode(x, num_quantizers=self.num_codebooks).audio_codes
        return codes[:, : self.num_codebooks].cpu()

    def encode_batch(self, wavs, sample_rate):
        wavs = [resample(np.asarray(w, np.float32), sample_rate, self.sample_rate) for w in wavs]
        out: list[np.ndarray | None] = [None] * len(wavs)
        by_length: dict[int, list[int]] = {}
        for i, wav in enumerate(wavs):
            by_length.setdefault(len(wav), []).append(i)
        for indices in by_length.values():
            batch = torch.from_numpy(np.stack([wavs[i] for i in indices]))[:, None, :]
            codes = self._encode_equal_length(batch)
            for row, i in enumerate(indices):  # no padding happened: the model's frames are the codes
                out[i] = codes[row].numpy().astype(np.int64)
        return out

    @torch.no_grad()
    def decode(self, codes):
        codes = self._check_codes(codes)[None].to(self.device)
        if self.kind == "encodec":
            wav = self.model.decode(codes[None], [None]).audio_values
        else:
            wav = self.model.decode(audio_codes=codes).audio_values
        return wav.reshape(-1).float().cpu().numpy()


class MetaEncodecTokenizer(AcousticTokenizer):
    """Meta's `encodec` package with an original checkpoint file (install the `encodec` extra)."""

    def __init__(self, checkpoint: str | Path, bandwidth: float = 6.0, device: str = "cpu"):
        try:
            from encodec import EncodecModel
        except Exception as error:  # it imports torchaudio, which fails against a mismatched torch
            raise OpusLMError(f"Meta's encodec package cannot be imported ({error}); install the `encodec` extra "
                              "with a torchaudio that matches your torch, or convert the checkpoint to HF format") from error
        checkpoint = Path(checkpoint)
        state = torch.load(str(checkpoint), map_location="cpu")
        model = EncodecModel.encodec_model_48khz(pretrained=False) if "48" in checkpoint.name \
            else EncodecModel.encodec_model_24khz(pretrained=False)
        model.load_state_dict(state)
        model.set_target_bandwidth(bandwidth)
        self.model, self.device = model.to(device).eval(), device
        self.sample_rate, self.frame_rate = model.sample_rate, model.frame_rate
        self.codebook_size = model.quantizer.bins
        self.num_codebooks = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, bandwidth)

    @torch.no_grad()
    def encode_batch(self, wavs, sample_rate):
        out = []
        for wav in wavs:  # one at a time: the original model normalises and chunks each input
            x = torch.from_numpy(resample(np.asarray(wav, np.float32), sample_rate, self.sample_rate))[None, None]
            frames = self.model.encode(x.to(self.device))
            out.append(torch.cat([f[0] for f in frames], dim=-1)[0].cpu().numpy().astype(np.int64))
        return out

    @torch.no_grad()
    def decode(self, codes):
        codes = self._check_codes(codes)[None].to(self.device)
        return self.model.decode([(codes, None)])[0, 0].cpu().numpy()


def load_acoustic_tokenizer(path: str | Path, **options) -> AcousticTokenizer:
    path = Path(path)
    if (path / "codec.json").is_file():
        from opuslm.tokenize.mel_pitch import CODEC_TYPE

        kind = json.loads((path / "codec.json").read_text()).get("type")
        return MelPitchTokenizer(path) if kind == CODEC_TYPE else SmallCodecTokenizer(path)
    if (path / "config.json").is_file():
        return HFCodecTokenizer(path, **options)
    if path.is_file() and path.suffix in (".th", ".pt", ".pth"):
        return MetaEncodecTokenizer(path, **options)
    raise OpusLMError(f"{path} is not a codec: expected a folder with codec.json (train one with "
                      "`opuslm tokenizers train-codec`), an HF EnCodec/DAC/Mimi folder, or an encodec .th checkpoint")
