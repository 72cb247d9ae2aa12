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


def joint_rows(pretrained: torch.Tensor, vocab: JointVocab, generator: torch.Generator) -> torch.Tensor:
    """`[V_llm, D]` rows -> `[vocab.size, D]`: text rows copied to the text range, the rest drawn."""
    text = pretrained[: vocab.text_size].detach().float()
    mean, std = text.mean(0), text.std(0)
    rows = mean + std * torch.randn(vocab.size, text.shape[1], generator=generator)
    rows[vocab.text_offset:] = text
    rows[PAD_ID] = 0
    return rows.to(pretrained.dtype)


def extend_to_joint_vocab(backbone, vocab: JointVocab, seed: int = 0) -> None:
    """Resize `backbone` (an HF causal LM) in place from its text vocabulary to `vocab`."""
    embed, head = backbone.get_input_embeddings(), backbone.get_output_embeddings()
    rows = embed.weight.shape[0]
    if rows < vocab.text_size:
        raise OpusLMError(f"the LLM has {rows} embedding rows but its tokenizer {vocab.text_size} tokens; "
                          "the tokenizer does not belong to this model")
    tied = head is not None and head.weight is embed.weight
    generator = torch.Generator().manual_seed(seed)
    embed.weight = nn.Parameter(joint_rows(embed.weight, vocab, generator))
    embed.num_embeddings = vocab.size
    if tied:
        head.weight = embed.weight
    else:
        head.weight = nn.Parameter(joint_rows(head.weight, vocab, generator))
        if head.bias is not None:
            head.bias = nn.Parameter(joint_rows(head.bias[:, None], vocab, generator)[:, 0])
    head.out_features = vocab.size
    config = backbone.config
    config.vocab_size = vocab.size
    for key in TOKEN_ID_KEYS:  # the LLM's special ids are text ids: they move with the text range
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, getattr(config, key) + vocab.text_offset)
    if getattr(backbone, "generation_config", None) is not None:
        for key in TOKEN_ID_KEYS:
            setattr(backbone.generation_config, key, getattr(config, key, None))


def text_token_ids(config, vocab: JointVocab) -> dict[str, int | None]:
    """The LLM's special ids back in text-tokenizer numbering (for exporting the text part)."""
    out = {}
    for key in TOKEN_ID_KEYS:
        value = getattr(config, key, None)
        out[key] = value - vocab.text_offset if isinstance(value, int) else value
    return out
