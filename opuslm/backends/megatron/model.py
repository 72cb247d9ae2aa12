"""`MegatronOpusLM`: the multi-stream LM with Megatron-Core's GPT decoder in place of the HF one.

The multi-stream parts (summed stream embeddings, stream offsets, restricted codebook heads, the
modality-weighted loss) are `opuslm.model.streams`, shared with the HF backend; only the three
backend hooks differ:

- the embedding is Megatron's vocabulary-parallel embedding (each tensor-parallel rank holds a
  block of rows and the lookups are summed over ranks);
- the decoder is `GPTModel.decoder` (local transformer spec, or Transformer Engine's when it is
  installed), called with an explicit packed-row attention mask and RoPE at the batch's own
  position ids, in Megatron's sequence-first layout;
- the joint head is the vocabulary-parallel output matrix gathered over the tensor-parallel group
  (backward hands each rank its own rows) and cut back from the padded vocabulary.

Each tensor-parallel rank computes the same loss on the same batch, so replicated parameters (norms,
stream offsets) get the same gradient on every rank and need no extra reduction.

Models move between stages as HF folders: `from_opuslm` splits an `OpusLM` over the tensor-parallel
ranks and `hf_state_dict` merges it back.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from opuslm.backends.megatron.convert import BackboneShape, hf_to_megatron_shard, megatron_to_hf
from opuslm.backends.megatron.parallel import ModelParallel
from opuslm.errors import OpusLMError
from opuslm.model.config import MultiStreamConfig
from opuslm.model.streams import MultiStreamLM, packed_attention
from opuslm.vocab import JointVocab

# Transformer Engine fuses each norm into the linear layer after it; its state dict names them there.
_TE_NORM_KEYS = {"input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
                 "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight"}


def transformer_engine_available() -> bool:
    import importlib.util

    return torch.cuda.is_available() and importlib.util.find_spec("transformer_engine") is not None


def transformer_config(shape: BackboneShape, tensor: int, dtype: torch.dtype, recompute: bool = False):
    import torch.nn.functional as F
    from megatron.core.transformer import TransformerConfig

    return TransformerConfig(
        num_layers=shape.layers, hidden_size=shape.hidden, num_attention_heads=shape.heads,
        num_query_groups=shape.groups, kv_channels=shape.head_dim, ffn_hidden_size=shape.ffn,
        normalization="RMSNorm", layernorm_epsilon=shape.norm_eps, gated_linear_unit=True, activation_func=F.silu,
        add_bias_linear=False, add_qkv_bias=shape.qkv_bias, hidden_dropout=0.0, attention_dropout=0.0,
        tensor_model_parallel_size=tensor, params_dtype=dtype, bf16=dtype == torch.bfloat16,
        use_cpu_initialization=not torch.cuda.is_available(), attention_softmax_in_fp32=True,
        # the fused kernels need apex / CUDA extensions; Transformer Engine brings its own
        bias_dropout_fusion=False, apply_rope_fusion=False, masked_softmax_fusion=False,
        gradient_accumulation_fusion=False, persist_layer_norm=False,
        **(dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1) if recompute else {}))


class MegatronOpusLM(MultiStreamLM):
    def __init__(self, shape: BackboneShape, vocab: JointVocab, parallel: ModelParallel,
                 config: MultiStreamConfig | None = None, dtype: torch.dtype = torch.float32, max_frames: int = 4096,
                 recompute: bool = False):
        from megatron.core.models.gpt import GPTModel
        from megatron.core.models.gpt.gpt_layer_specs import (
            get_gpt_layer_local_spec,
            get_gpt_layer_with_transformer_engine_spec,
        )

        super().__init__()
        if shape.vocab != vocab.size:
            raise OpusLMError(f"the backbone has {shape.vocab} embedding rows but the joint vocabulary {vocab.hash} "
                              f"has {vocab.size} ids")
        shape.check_tensor_parallel(parallel.tensor_size)
        self.shape, self.parallel = shape, parallel
        self.uses_transformer_engine = transformer_engine_available()
        spec = (get_gpt_layer_with_transformer_engine_spec() if self.uses_transformer_engine
                else get_gpt_layer_local_spec(normalization="RMSNorm"))
        self.gpt = GPTModel(transformer_config(shape, parallel.tensor_size, dtype, recompute), spec,
                            vocab_size=shape.padded_vocab(parallel.tensor_size), max_sequence_length=max_frames,
                            position_embedding_type="rope", rotary_base=shape.rope_theta,
                            share_embeddings_and_output_weights=shape.tied)
        self._init_streams(vocab, config, shape.hidden, dtype)

    # ---- conversion ----
    @classmethod
    def from_opuslm(cls, model, parallel: ModelParallel, dtype: torch.dtype = torch.float32,
                    recompute: bool = False) -> MegatronOpusLM:
        """This rank's tensor-parallel slice of an HF-backbone `OpusLM` (same weights, same outputs)."""
        import copy

        if model.config.heard_features:
            raise OpusLMError("the continuous input path (heard_features) runs on the HF backend only; train this "
                              "stage with parallel: ddp or fsdp, or start from a model without it")
        shape = BackboneShape.of(model.backbone.config)
        converted = cls(shape, model.vocab, parallel, copy.deepcopy(model.config), dtype,
                        getattr(model.backbone.config, "max_position_embeddings", 4096), recompute)
        backbone = {k: v.detach().float() for k, v in model.backbone.state_dict().items()}
        converted.load_shard(hf_to_megatron_shard(backbone, shape, parallel.tensor_size, parallel.tensor_rank))
        converted.stream_offsets.data.copy_(model.stream_offsets.data)
        return converted

    def load_shard(self, shard: dict[str, torch.Tensor]) -> None:
        if self.uses_transformer_engine:
            shard = {_rename_norm(k): v for k, v in shard.items()}
        missing, unexpected = self.gpt.load_state_dict(shard, strict=False)
        missing = [k for k in missing if not k.endswith("_extra_state")]
        if missing or unexpected:
            raise OpusLMError(f"Megatron weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")

    def shard_state(self) -> dict[str, torch.Tensor]:
        """This rank's Megatron weights under the local spec's names (plain tensors)."""
        state = {k: v for k, v in self.gpt.state_dict().items() if isinstance(v, torch.Tensor)}
        if self.uses_transformer_engine:
            back = {v: k for k, v in _TE_NORM_KEYS.items()}
            state = {_rename_norm(k, back): v for k, v in state.items()}
        return state

    def sharded_state_dict(self) -> dict:
        """For Megatron's distributed checkpoint: each slice and replica named once across ranks."""
        from megatron.core.utils import make_sharded_tensor_for_checkpoint

        state = self.gpt.sharded_state_dict(prefix="gpt.")
        state["stream_offsets"] = make_sharded_tensor_for_checkpoint(self.stream_offsets, "stream_offsets")
        return state

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The HF backbone's state dict, merged from every tensor-parallel rank (a collective)."""
        local = self.shard_state()
        shards = [dict() for _ in range(self.parallel.tensor_size)]
        for key in sorted(local):
            tensor = local[key].detach().contiguous()
            parts = [tensor]
            if len(shards) > 1:
                parts = [torch.empty_like(tensor) for _ in shards]
                dist.all_gather(parts, tensor, group=self.parallel.tensor_group)
            for shard, part in zip(shards, parts):
                shard[key] = part
        return megatron_to_hf(shards, self.shape)

    # ---- backend hooks ----
    def input_embeddings(self) -> nn.Module:
        return self.gpt.embedding.word_embeddings

    def table_parameters(self) -> list[nn.Parameter]:
        params = [self.gpt.embedding.word_embeddings.weight]
        return params if self.shape.tied else params + [self.gpt.output_layer.weight]

    def joint_head(self) -> tuple[torch.Tensor, None]:
        from megatron.core.tensor_parallel.mappings import gather_from_sequence_parallel_region

        weight = self.gpt.shared_embedding_or_output_weight() if self.shape.tied else self.gpt.output_layer.weight
        if self.parallel.tensor_size > 1:
            # all-gather the row blocks; backward keeps this rank's rows (every rank has the same loss)
            weight = gather_from_sequence_parallel_region(weight, tensor_parallel_output_grad=False)
        return weight[:self.vocab.size], None

    def hidden_states(self, frames, position_ids=None, document_ids=None, heard=None) -> torch.Tensor:
        if frames.dim() != 3 or frames.shape[1] != self.vocab.num_streams:
            raise OpusLMError(f"frames must be [batch, {self.vocab.num_streams} streams, steps], got {tuple(frames.shape)}")
        batch, _, steps = frames.shape
        if position_ids is None:
            position_ids = torch.arange(steps, device=frames.device).expand(batch, steps)
        if document_ids is None:
            document_ids = torch.zeros(batch, steps, dtype=torch.long, device=frames.device)
        masked = ~packed_attention(document_ids)[:, None]  # Megatron masks where True
        rotary = self.gpt.rotary_pos_emb(int(position_ids.max()) + 1)[position_ids.t()].squeeze(2)  # [S, B, 1, d]
        hidden = self.gpt.decoder(hidden_states=self.embed(frames, heard).transpose(0, 1).contiguous(),
                                  attention_mask=masked, rotary_pos_emb=rotary)
        return hidden.transpose(0, 1)


def _rename_norm(key: str, names: dict[str, str] = _TE_NORM_KEYS) -> str:
    for old, new in names.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key
