"""HF backbone weights <-> Megatron-Core GPT weights, split over and merged from tensor-parallel ranks.

Pure functions on state dicts, so the mapping can be read (and tested) without building a model.
Covered: the Llama family (Llama, SmolLM2) and Qwen2 — RoPE, grouped-query attention, RMSNorm,
SwiGLU, tied or untied embeddings, Qwen2's q/k/v biases. Megatron's layout differs from HF's in
three places:

- q, k and v are one `linear_qkv` matrix, grouped by key/value head: for each group, its query heads'
  rows, then its key rows, then its value rows. Tensor parallelism cuts it into contiguous blocks of
  whole groups, so the number of key/value heads must divide by the tensor-parallel size;
- gate and up are one `linear_fc1` matrix; each rank holds [its gate rows; its up rows];
- the vocabulary is padded to a multiple of 128 x tensor size (as Megatron pads it); the padded
  rows are zero and the joint head is cut back to the joint vocabulary before any softmax.

Column-parallel matrices (qkv, fc1, embedding and head rows) split along dim 0, row-parallel ones
(the attention output and fc2) along dim 1; norms are replicated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from opuslm.errors import OpusLMError

SUPPORTED = ("llama", "qwen2")
VOCAB_MULTIPLE = 128


@dataclass(frozen=True)
class BackboneShape:
    family: str
    layers: int
    hidden: int
    heads: int
    groups: int  # key/value heads
    head_dim: int
    ffn: int
    vocab: int  # rows of the HF embedding: the joint vocabulary
    tied: bool
    qkv_bias: bool
    norm_eps: float
    rope_theta: float

    @classmethod
    def of(cls, config) -> BackboneShape:
        """The shape of an HF config; refuses what the Megatron model would compute differently."""
        family = config.model_type
        if family not in SUPPORTED:
            raise OpusLMError(f"the Megatron backend converts {', '.join(SUPPORTED)} backbones, not {family!r}")
        rope = dict(getattr(config, "rope_parameters", None) or {})
        scaling = rope.get("rope_type", "default") if rope else getattr(config, "rope_scaling", None)
        if scaling not in (None, "default"):
            raise OpusLMError(f"RoPE scaling {scaling!r} is not converted to Megatron yet")
        if family == "llama" and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
            raise OpusLMError("a Llama config with attention_bias or mlp_bias is not converted to Megatron yet")
        if family == "qwen2" and getattr(config, "use_sliding_window", False):
            raise OpusLMError("Qwen2 sliding-window attention is not converted to Megatron")
        heads = config.num_attention_heads
        return cls(family, config.num_hidden_layers, config.hidden_size, heads,
                   getattr(config, "num_key_value_heads", None) or heads,
                   getattr(config, "head_dim", None) or config.hidden_size // heads, config.intermediate_size,
                   config.vocab_size, bool(config.tie_word_embeddings), family == "qwen2", config.rms_norm_eps,
                   float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))

    def padded_vocab(self, tensor: int) -> int:
        multiple = VOCAB_MULTIPLE * tensor
        return -(-self.vocab // multiple) * multiple

    def check_tensor_parallel(self, tensor: int) -> None:
        if self.groups % tensor or self.heads % tensor or self.ffn % tensor:
            raise OpusLMError(f"tensor parallel {tensor} must divide the key/value heads ({self.groups}), the heads "
                              f"({self.heads}) and the MLP width ({self.ffn})")


def _pad_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([weight, weight.new_zeros(rows - weight.shape[0], *weight.shape[1:])])


def _fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: BackboneShape) -> torch.Tensor:
    """HF q `[H*d, ...]`, k and v `[G*d, ...]` -> Megatron's grouped `[G*(H/G + 2)*d, ...]` (weight or bias)."""
    per_group = shape.heads // shape.groups * shape.head_dim
    rest = q.shape[1:]
    fused = torch.cat([q.reshape(shape.groups, per_group, *rest), k.reshape(shape.groups, shape.head_dim, *rest),
                       v.reshape(shape.groups, shape.head_dim, *rest)], dim=1)
    return fused.reshape(-1, *rest)


def _split_qkv(fused: torch.Tensor, shape: BackboneShape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    per_group = shape.heads // shape.groups * shape.head_dim
    rest = fused.shape[1:]
    q, k, v = fused.reshape(shape.groups, per_group + 2 * shape.head_dim, *rest).split(
        [per_group, shape.head_dim, shape.head_dim], dim=1)
    return q.reshape(-1, *rest), k.reshape(-1, *rest), v.reshape(-1, *rest)


def _layer_keys(i: int) -> list[tuple[str, str, int | None]]:
    """(HF key, Megatron key, tensor-parallel split dim or None for replicated) of layer `i`'s plain tensors."""
    hf, mg = f"model.layers.{i}.", f"decoder.layers.{i}."
    return [(hf + "input_layernorm.weight", mg + "input_layernorm.weight", None),
            (hf + "self_attn.o_proj.weight", mg + "self_attention.linear_proj.weight", 1),
            (hf + "post_attention_layernorm.weight", mg + "pre_mlp_layernorm.weight", None),
            (hf + "mlp.down_proj.weight", mg + "mlp.linear_fc2.weight", 1)]


def hf_to_megatron(state: dict[str, torch.Tensor], shape: BackboneShape, tensor: int) -> list[dict[str, torch.Tensor]]:
    """An HF backbone state dict -> one Megatron GPTModel state dict per tensor-parallel rank."""
    return [hf_to_megatron_shard(state, shape, tensor, rank) for rank in range(tensor)]


def hf_to_megatron_shard(state: dict[str, torch.Tensor], shape: BackboneShape, tensor: int,
                         rank: int) -> dict[str, torch.Tensor]:
    """Tensor-parallel rank `rank`'s Megatron state dict; copies only that rank's slices, so each
    process loading a large backbone holds one extra slice, not every rank's."""
    shape.check_tensor_parallel(tensor)
    shard: dict[str, torch.Tensor] = {}

    def put(key: str, value: torch.Tensor, dim: int | None) -> None:
        shard[key] = (value if dim is None else value.chunk(tensor, dim)[rank]).clone()

    rows = shape.padded_vocab(tensor)
    put("embedding.word_embeddings.weight", _pad_rows(state["model.embed_tokens.weight"], rows), 0)
    for i in range(shape.layers):
        for hf_key, mg_key, dim in _layer_keys(i):
            put(mg_key, state[hf_key], dim)
        attn, mg = f"model.layers.{i}.self_attn.", f"decoder.layers.{i}."
        for kind in ("weight", "bias") if shape.qkv_bias else ("weight",):
            put(mg + f"self_attention.linear_qkv.{kind}",
                _fuse_qkv(*(state[f"{attn}{p}_proj.{kind}"] for p in "qkv"), shape), 0)
        gate = state[f"model.layers.{i}.mlp.gate_proj.weight"].chunk(tensor)[rank]
        up = state[f"model.layers.{i}.mlp.up_proj.weight"].chunk(tensor)[rank]
        shard[mg + "mlp.linear_fc1.weight"] = torch.cat([gate, up])
    put("decoder.final_layernorm.weight", state["model.norm.weight"], None)
    if not shape.tied:
        put("output_layer.weight", _pad_rows(state["lm_head.weight"], rows), 0)
    return shard


def megatron_to_hf(shards: list[dict[str, torch.Tensor]], shape: BackboneShape) -> dict[str, torch.Tensor]:
    """The inverse of `hf_to_megatron`: merge the tensor-parallel ranks' state dicts into HF keys."""

    def merged(key: str, dim: int | None) -> torch.Tensor:
        return shards[0][key] if dim is None else torch.cat([s[key] for s in shards], dim)

    state = {"model.embed_tokens.weight": merged("embedding.word_embeddings.weight", 0)[:shape.vocab]}
    for i in range(shape.layers):
        for hf_key, mg_key, dim in _layer_keys(i):
            state[hf_key] = merged(mg_key, dim)
        attn, mg = f"model.layers.{i}.self_attn.", f"decoder.layers.{i}."
        for kind in ("weight", "bias") if shape.qkv_bias else ("weight",):
            q, k, v = _split_qkv(merged(mg + f"self_attention.linear_qkv.{kind}", 0), shape)
            state.update({f"{attn}q_proj.{kind}": q, f"{attn}k_proj.{kind}": k, f"{attn}v_proj.{kind}": v})
        halves = [s[mg + "mlp.linear_fc1.weight"].chunk(2) for s in shards]
        state[f"model.layers.{i}.mlp.gate_proj.weight"] = torch.cat([g for g, _ in halves])
        state[f"model.layers.{i}.mlp.up_proj.weight"] = torch.cat([u for _, u in halves])
    state["model.norm.weight"] = merged("decoder.final_layernorm.weight", None)
    state["lm_head.weight"] = (state["model.embed_tokens.weight"] if shape.tied
                               else merged("output_layer.weight", 0)[:shape.vocab])
    return state
