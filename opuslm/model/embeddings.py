"""Grow a text LLM's embedding table and output head to the joint vocabulary, keeping its text rows.

The pretrained rows move, unchanged, to the text range; every new row is drawn from a normal with
the per-dimension mean and standard deviation of the pretrained rows (OpusLM's code passed the
variance where the std belongs; new rows then had the wrong scale). The pad row is zero. The
modules keep their class (a scaled embedding stays scaled); only their weight grows, and tied
weights stay tied.
"""

from __future__ import annotations

import torch
from torch import nn

from opuslm.errors import OpusLMError
from opuslm.vocab import PAD_ID, JointVocab

TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


def joint_rows(pretrained: torch.Tensor, vocab: JointVocab, generator: torch.Generator,
               codebook_row_scale: float = 1.0) -> torch.Tensor:
    """`[V_llm, D]` rows -> `[vocab.size, D]`: text rows copied to the text range, the rest drawn; the
    codebook rows then scaled by `codebook_row_scale` (see `extend_to_joint_vocab`)."""
    text = pretrained[: vocab.text_size].detach().float()
    mean, std = text.mean(0), text.std(0)
    rows = mean + std * torch.randn(vocab.size, text.shape[1], generator=generator)
    rows[slice(*vocab.modality_range("codec"))] *= codebook_row_scale
    rows[slice(*vocab.modality_range("text"))] = text
    rows[PAD_ID] = 0
    return rows.to(pretrained.dtype)


def replace_vocab_rows(backbone, rows_of, size: int, id_shift: int) -> None:
    """Give `backbone` `size` vocabulary rows in place: `rows_of` maps each old row table (the
    embeddings, an untied head, a head bias as a column) to its new one; tied weights stay tied, and
    the LLM's special ids in its configs move by `id_shift`."""
    embed, head = backbone.get_input_embeddings(), backbone.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    embed.weight = nn.Parameter(rows_of(embed.weight))
    embed.num_embeddings = size
    if tied:
        head.weight = embed.weight
    else:
        head.weight = nn.Parameter(rows_of(head.weight))
        if head.bias is not None:
            head.bias = nn.Parameter(rows_of(head.bias[:, None])[:, 0])
    head.out_features = size
    config = backbone.config
    config.vocab_size = size
    for key in TOKEN_ID_KEYS:
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, getattr(config, key) + id_shift)
    if getattr(backbone, "generation_config", None) is not None:
        for key in TOKEN_ID_KEYS:
            setattr(backbone.generation_config, key, getattr(config, key, None))


def extend_to_joint_vocab(backbone, vocab: JointVocab, seed: int = 0, codebook_row_scale: float = 1.0) -> None:
    """Resize `backbone` (an HF causal LM) in place from its text vocabulary to `vocab`; its special
    ids are text ids, so they move with the text range.

    `codebook_row_scale` < 1 starts the codebook rows smaller than the others. An audio frame embeds as
    its semantic row plus one row per codebook: drawn at full scale, K codebook rows bury the semantic
    row (a 1 : sqrt(K) ratio) and the content is learned slower; at 0 a frame starts as its semantic
    row alone, and the codebook rows grow from their gradients as they become useful."""
    rows = backbone.get_input_embeddings().weight.shape[0]
    if rows < vocab.text_size:
        raise OpusLMError(f"the LLM has {rows} embedding rows but its tokenizer {vocab.text_size} tokens; "
                          "the tokenizer does not belong to this model")
    generator = torch.Generator().manual_seed(seed)
    replace_vocab_rows(backbone, lambda table: joint_rows(table, vocab, generator, codebook_row_scale), vocab.size,
                       vocab.text_offset)


def keep_text_rows(backbone, vocab: JointVocab) -> None:
    """The inverse for the text part: only the text range's rows remain, special ids back in the
    text tokenizer's numbering."""
    replace_vocab_rows(backbone, lambda table: table[slice(*vocab.modality_range("text"))].detach().clone(), vocab.text_size,
                       -vocab.text_offset)
