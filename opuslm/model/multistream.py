"""The multi-stream speech-text LM: a Hugging Face causal LM that reads and writes delayed frames.

Where a token id is *embedded* and *predicted*: `opuslm.model.streams` (summed stream embeddings,
per-stream offsets, restricted codebook heads, the loss), shared with the Megatron-Core backend.
Here the backbone's decoder (any `AutoModelForCausalLM`: Llama/SmolLM2, Qwen2, OLMo-2, ...) runs on
those embeddings, with its own attention implementation, cache and checkpointing, and its
`lm_head` is the joint head.

Right after `from_llm`, a text-only input gives exactly the LLM's logits over the text range.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from opuslm.errors import OpusLMError
from opuslm.json_files import write_json
from opuslm.model.config import MultiStreamConfig
from opuslm.model.embeddings import extend_to_joint_vocab, keep_text_rows
from opuslm.model.streams import MultiStreamLM, packed_attention
from opuslm.vocab import PAD_ID, JointVocab

FORMAT = "opuslm-multistream-1"
CHECKSUMS = "checksums.json"  # sha256 of every weights file, written at save and verified at load
TOKENIZER_FOLDERS = {"text": "text_tokenizer", "semantic": "semantic_tokenizer"}
# Config keys that usually mean a forward scales embeddings or logits where the multi-stream path does
# not pass (the input_ids lookup, after the head); only named in a refusal, never a reason for one.
_SCALING_KEY = re.compile(r"multiplier|scal|softcap", re.IGNORECASE)
_PROBE_TOKENS = 16


@contextmanager
def _inference(module: nn.Module):
    """Eval mode without gradients; the module's own mode afterwards."""
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(training)


def _own_logits(backbone, ids: torch.Tensor) -> torch.Tensor:
    """The LLM's logits through its own forward (input_ids path, its own head and post-processing)."""
    with _inference(backbone):
        return backbone(input_ids=ids.to(backbone.device)).logits


def backbone_positions(config) -> int | None:
    """The positions an HF config says its model has (`max_position_embeddings`, GPT-2's `n_positions`)."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def _learned_position_limit(backbone) -> int | None:
    """The length of a learned absolute position table (GPT-2's wpe, OPT's embed_positions), past which
    the lookup fails with an index error; None for rotary or ALiBi models, which have no such table."""
    limit = backbone_positions(backbone.config)
    tokens = backbone.get_input_embeddings()
    tables = [m for m in backbone.modules() if isinstance(m, nn.Embedding) and m is not tokens]
    # OPT's table keeps two rows beyond its limit
    return limit if limit and any(limit <= m.num_embeddings <= limit + 2 for m in tables) else None


class OpusLM(MultiStreamLM):
    def __init__(self, backbone, vocab: JointVocab, config: MultiStreamConfig | None = None, seed: int = 0):
        super().__init__()
        self.backbone = backbone
        if backbone.get_input_embeddings().weight.shape[0] != vocab.size:
            raise OpusLMError(f"the backbone has {backbone.get_input_embeddings().weight.shape[0]} embedding rows "
                              f"but the joint vocabulary {vocab.hash} has {vocab.size} ids")
        self._init_streams(vocab, config, backbone.config.hidden_size, backbone.get_input_embeddings().weight.dtype, seed)
        self.position_limit = _learned_position_limit(backbone)

    # ---- building ----
    @classmethod
    def from_llm(cls, llm, vocab: JointVocab, config: MultiStreamConfig | None = None, seed: int = 0,
                 attn_implementation: str | None = None, dtype: torch.dtype | None = None,
                 codebook_row_scale: float = 1.0) -> OpusLM:
        """`llm`: a local HF causal-LM folder (pretrained weights) or an HF config (random weights, for a
        model trained from scratch). Its embeddings and head grow to `vocab` (`codebook_row_scale`: see
        `extend_to_joint_vocab`)."""
        from transformers import AutoModelForCausalLM, PretrainedConfig

        options = {k: v for k, v in {"attn_implementation": attn_implementation, "dtype": dtype}.items() if v}
        if isinstance(llm, PretrainedConfig):
            torch.manual_seed(seed)
            backbone = AutoModelForCausalLM.from_config(llm, **options)
        else:
            folder = Path(llm)
            if not (folder / "config.json").is_file():
                raise OpusLMError(f"{folder} is not a local HF model folder (no config.json)")
            backbone = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, **options)
        rows = min(vocab.text_size, backbone.get_input_embeddings().weight.shape[0])  # fewer: refused when grown
        probe = torch.linspace(0, rows - 1, _PROBE_TOKENS).long()[None]
        reference = _own_logits(backbone, probe)[..., :vocab.text_size]
        extend_to_joint_vocab(backbone, vocab, seed, codebook_row_scale)
        model = cls(backbone, vocab, config, seed)
        model._check_text_logits(probe, reference)
        return model

    def text_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits over the text range for text-tokenizer ids `[B, T]` in stream 0, the other streams pad:
        the model read as the text LLM it grew from."""
        frames = torch.full((ids.shape[0], self.vocab.num_streams, ids.shape[1]), PAD_ID, dtype=torch.long, device=ids.device)
        frames[:, 0] = ids + self.vocab.text_offset
        return self.stream_logits(self(frames).last_hidden_state, 0)[..., slice(*self.vocab.modality_range("text"))]

    def _check_text_logits(self, probe: torch.Tensor, reference: torch.Tensor) -> None:
        """Refuse a grown model whose text logits differ from the LLM's own forward on the same ids:
        whatever an architecture does outside the modules this path calls (a logit scale, a softcap, an
        embedding multiplier on the input_ids path only) shows up here, listed or not."""
        with _inference(self):
            ours = self.text_logits(probe.to(self.backbone.device)).float()
        # a half-precision backbone differs from itself in rounding only
        tolerance = (1e-4 if reference.dtype == torch.float32 else 2e-2) * (1.0 + reference.abs().max().item())
        gap = (ours - reference.float().to(ours.device)).abs().max().item()
        if gap > tolerance:
            suspects = [f"{k}={v}" for k, v in sorted(self.backbone.config.to_dict().items())
                        if _SCALING_KEY.search(k) and isinstance(v, (int, float)) and not isinstance(v, bool)
                        and v not in (0, 1)]
            raise OpusLMError(
                f"{type(self.backbone).__name__}: the grown model's text logits differ from the LLM's own by up to "
                f"{gap:.3g} (tolerance {tolerance:.3g}): its forward scales embeddings or logits outside the modules "
                f"the multi-stream model calls ({', '.join(suspects) or 'no scaling key in its config'}). "
                "This architecture is not supported yet: start from an LLM whose logits are its head's output")

    def enable_activation_checkpointing(self) -> None:
        options = {"use_reentrant": False}
        if hasattr(self.backbone, "activation_checkpointing_enable"):  # transformers >= 5
            self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)

    # ---- forward ----
    def input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def joint_head(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        head = self.backbone.get_output_embeddings()
        return head.weight, head.bias

    def table_parameters(self) -> list[nn.Parameter]:
        return [self.backbone.get_input_embeddings().weight, self.backbone.get_output_embeddings().weight]

    def hidden_states(self, frames, position_ids=None, document_ids=None, heard=None) -> torch.Tensor:
        return self(frames, position_ids=position_ids, document_ids=document_ids, heard=heard).last_hidden_state

    def forward(self, frames: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values=None, use_cache: bool = False,
                document_ids: torch.Tensor | None = None, heard=None):
        """Hidden states `[B, S, D]` (`.last_hidden_state`) and, with `use_cache`, the KV cache.
        `document_ids` `[B, S]` (packed rows): attention stays within each example. `heard`: the
        continuous input path's features of these steps (`HeardFeatures`), or None."""
        if frames.dim() != 3 or frames.shape[1] != self.vocab.num_streams:
            raise OpusLMError(f"frames must be [batch, {self.vocab.num_streams} streams, steps], got {tuple(frames.shape)}")
        if self.position_limit is not None:
            self._check_positions(frames.shape[2], position_ids, past_key_values)
        embeds = self.embed(frames, heard)
        if document_ids is not None:
            attention_mask = self._packed_mask(document_ids, embeds.dtype)
        decoder = self.backbone.get_decoder()
        return decoder(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=use_cache, **_cache_argument(decoder, past_key_values))

    def _check_positions(self, steps: int, position_ids, past_key_values) -> None:
        if position_ids is not None:
            needed = int(position_ids.max()) + 1
        else:
            needed = steps + (past_key_values.get_seq_length() if past_key_values is not None else 0)
        if needed > self.position_limit:
            raise OpusLMError(f"{needed} frames need more positions than the {self.position_limit} of "
                              f"{type(self.backbone).__name__}'s learned position table: shorten the input (audio "
                              "and text together) or start from an LLM with rotary positions")

    def _packed_mask(self, document_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """Packed-row attention as an additive `[B, 1, S, S]` mask. FlashAttention-2 takes packed rows
        from the restarting position ids instead (no S x S mask)."""
        if self.backbone.config._attn_implementation == "flash_attention_2":
            return None
        allowed = packed_attention(document_ids)
        return torch.zeros(allowed.shape, dtype=dtype, device=document_ids.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)[:, None]

    # ---- saving ----
    def save_pretrained(self, folder: str | Path, tokenizers=None) -> Path:
        """A movable folder: the backbone in HF format (config.json, safetensors; LoRA adapters apart in
        `adapter/`, see `opuslm.model.lora`), `opuslm.json`,
        `vocab.json` and the stream offsets. With `tokenizers` (TokenizerPaths), the text and semantic
        tokenizers are copied in (small; a text tokenizer without its LLM's weights), the acoustic one is
        recorded by path (a codec can be hundreds of MB; `opuslm generate --codec` relocates it), and
        `tokenizers.json` records all three identities, which data and copies are checked against."""
        from safetensors.torch import save_file

        from opuslm.model.lora import ADAPTER_FOLDER, base_state, has_lora, save_adapter
        from opuslm.tokenize.identity import NOT_TEXT_TOKENIZER

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if has_lora(self):  # the base weights under their own names, the adapters beside them
            self.backbone.save_pretrained(str(folder), state_dict=base_state(self.backbone))
            save_adapter(self, folder)
        else:
            self.backbone.save_pretrained(str(folder))
            shutil.rmtree(folder / ADAPTER_FOLDER, ignore_errors=True)
        save_file(self.stream_state(), str(folder / "streams.safetensors"))
        self.vocab.save(folder / "vocab.json")
        write_json(folder / "opuslm.json", {"format": FORMAT, "vocab_hash": self.vocab.hash, "config": self.config.__dict__})
        write_json(folder / CHECKSUMS, {name: _sha256(folder / name) for name in _weight_files(folder)})
        if tokenizers is not None:
            for name, source in (("text", tokenizers.text), ("semantic", tokenizers.semantic)):
                if Path(source).resolve() != (folder / TOKENIZER_FOLDERS[name]).resolve():
                    shutil.copytree(source, folder / TOKENIZER_FOLDERS[name], dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns(*NOT_TEXT_TOKENIZER))
            identity = tokenizers.identity()
            recorded = {name: {"hash": identity[name]} for name in TOKENIZER_FOLDERS}
            recorded["acoustic"] = {"path": str(Path(tokenizers.acoustic).resolve()), "hash": identity["acoustic"]}
            write_json(folder / "tokenizers.json", recorded, indent=1)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, expect_vocab: JointVocab | None = None, **options) -> OpusLM:
        """Load a folder written by `save_pretrained`; `expect_vocab` refuses another layout by hash."""
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        from opuslm.model.lora import ADAPTER_FOLDER, load_adapter

        folder = require_model_folder(folder)
        verify_weights(folder)
        info = json.loads((folder / "opuslm.json").read_text())
        if info.get("format") != FORMAT:
            raise OpusLMError(f"{folder} has model format {info.get('format')!r}; this opuslm reads {FORMAT}")
        vocab = JointVocab.load(folder / "vocab.json")
        if info["vocab_hash"] != vocab.hash:
            raise OpusLMError(f"{folder}: opuslm.json names vocabulary {info['vocab_hash']} but vocab.json is {vocab.hash}")
        if expect_vocab is not None:
            expect_vocab.require_same(vocab, f"model {folder}")
        streams = folder / "streams.safetensors"
        if not streams.is_file():
            raise OpusLMError(f"{folder} has no streams.safetensors (the per-stream offsets): the folder is incomplete; "
                              "copy it again")
        try:  # a truncated or damaged file fails inside transformers or safetensors with their own errors
            backbone = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, **options)
            stream_state = load_file(str(streams))
        except Exception as error:
            raise OpusLMError(f"{folder}: its weights cannot be read ({type(error).__name__}: {error}); the folder is "
                              "incomplete or damaged: copy it again") from error
        model = cls(backbone, vocab, MultiStreamConfig(**info["config"]))
        model.load_stream_state(stream_state, folder)
        if (folder / ADAPTER_FOLDER).is_dir():
            load_adapter(model, folder)
        return model

    def export_text_lm(self, folder: str | Path, text_tokenizer_dir: str | Path | None = None) -> Path:
        """The text part as a plain HF causal LM: only the text rows of the embeddings and the head, the
        LLM's own special ids; `AutoModelForCausalLM` loads it and gives the same text logits."""
        tokenizer = None
        if text_tokenizer_dir is not None:
            from opuslm.tokenize.text import load_text_tokenizer

            tokenizer = load_text_tokenizer(text_tokenizer_dir)
            if len(tokenizer) > self.vocab.text_size:
                raise OpusLMError(f"the text tokenizer at {text_tokenizer_dir} has {len(tokenizer)} tokens but the model "
                                  f"{self.vocab.text_size} text rows: it is not this model's tokenizer")
        from opuslm.model.lora import merge_lora

        merged = copy.deepcopy(self)
        merge_lora(merged)  # a plain HF model has no adapters
        text = merged.backbone
        keep_text_rows(text, self.vocab)
        folder = Path(folder)
        text.save_pretrained(str(folder))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder))
        return folder


def _cache_argument(decoder, cache) -> dict:
    """The KV cache under the name the backbone's forward takes: transformers 5.24 renamed
    `past_key_values` to `cache`, and warns on every call that passes the old name, even as None."""
    if cache is None:
        return {}
    import inspect

    return {"cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values": cache}


def returned_cache(output):
    """The KV cache a forward returned, under either name (see `_cache_argument`)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _weight_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.safetensors"))


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(folder: Path) -> None:
    """Refuse weights whose bytes differ from the checksums recorded at save (a flipped byte inside the
    tensor data loads without complaint and generates garbage). Folders saved before checksums were
    recorded are read as they are."""
    path = Path(folder) / CHECKSUMS
    if not path.is_file():
        return
    for name, digest in json.loads(path.read_text()).items():
        file = Path(folder) / name
        if not file.is_file():
            raise OpusLMError(f"{folder}: {name} is missing (checksums.json lists it): the folder is incomplete; copy it again")
        if _sha256(file) != digest:
            raise OpusLMError(f"{folder}: {name} does not match the checksum recorded when it was saved: the file is "
                              "damaged; copy the model folder again")


def require_model_folder(folder: str | Path) -> Path:
    """`folder` as a Path when it is an OpusLM model folder; else an error that names the model folder
    inside it (a stage's run folder holds one in model/) when there is one."""
    folder = Path(folder)
    if (folder / "opuslm.json").is_file():
        return folder
    inside = sorted(p.parent for p in folder.glob("*/opuslm.json")) if folder.is_dir() else []
    hint = f": did you mean {inside[0]}?" if inside else ""
    what = "does not exist" if not folder.exists() else "is not an OpusLM model folder (no opuslm.json)"
    raise OpusLMError(f"{folder} {what}{hint}")


def reads_heard_features(folder: str | Path) -> int:
    """The feature dimension a model folder's continuous input path reads (0: none)."""
    info = json.loads((require_model_folder(folder) / "opuslm.json").read_text())
    return int(info["config"].get("heard_features", 0))


def model_identity(folder: str | Path) -> dict[str, str]:
    """The content hashes of the tokenizers a saved model was trained with (`tokenizers.json`). A
    folder saved before the text and semantic identities were recorded gets those of its copies."""
    from opuslm.tokenize.identity import TOKENIZER_NAMES, tokenizer_hash

    folder = require_model_folder(folder)
    info_path = folder / "tokenizers.json"
    if not info_path.is_file():
        raise OpusLMError(f"{folder} was saved without its tokenizers (no tokenizers.json)")
    recorded = json.loads(info_path.read_text())
    return {name: recorded[name]["hash"] if "hash" in recorded.get(name, {})
            else tokenizer_hash(name, folder / TOKENIZER_FOLDERS[name]) for name in TOKENIZER_NAMES}


def model_tokenizers(folder: str | Path, acoustic: str | Path | None = None):
    """The TokenizerPaths of a saved model, each checked against the identity it was saved with;
    `acoustic` relocates its codec."""
    from opuslm.tokenize.identity import TOKENIZER_NAMES
    from opuslm.tokenize.pipeline import TokenizerPaths

    folder = Path(folder)
    identity = model_identity(folder)
    recorded = json.loads((folder / "tokenizers.json").read_text())["acoustic"]
    path = Path(acoustic) if acoustic is not None else Path(recorded["path"])
    if not path.exists():
        raise OpusLMError(f"the codec of {folder} is not at {path}; pass its folder with --codec")
    paths = TokenizerPaths(folder / TOKENIZER_FOLDERS["text"], folder / TOKENIZER_FOLDERS["semantic"], path)
    for name in TOKENIZER_NAMES:
        require_tokenizer(folder, name, getattr(paths, name), identity[name])
    return paths


def require_tokenizer(folder: Path, name: str, path: Path, expected: str) -> None:
    """Refuse tokenizer `name` at `path` unless it is the one model `folder` was trained with."""
    from opuslm.tokenize.identity import tokenizer_hash

    found = tokenizer_hash(name, path)
    if found != expected:
        raise OpusLMError(f"the {name} tokenizer at {path} (hash {found}) is not the one {folder} was trained with "
                          f"(hash {expected}); restore that tokenizer's folder")
