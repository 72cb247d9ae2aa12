"""The first model of a run: a text LLM grown to the joint vocabulary of a tokenized corpus."""

from __future__ import annotations

from pathlib import Path

from opuslm.errors import OpusLMError


def init_model(tokens: str | Path, out: str | Path, llm: str | Path | None = None, preset: str | None = None,
               delays: list[int] | None = None, seed: int = 0, codebook_row_scale: float = 1.0,
               stream0_softmax: str = "full"):
    """Grow `llm` (a local HF folder) or a `preset` shape (random weights, sized to the corpus's text
    tokenizer) to the vocabulary of the token shards `tokens`; save it at `out` with their tokenizers.
    `codebook_row_scale`: the new codebook rows' scale (`opuslm.model.embeddings.extend_to_joint_vocab`);
    `stream0_softmax`: see `MultiStreamConfig`."""
    from opuslm.model.config import MultiStreamConfig
    from opuslm.model.multistream import OpusLM
    from opuslm.model.presets import preset_config
    from opuslm.tokenize.pipeline import TokenizerPaths
    from opuslm.tokenize.shards import TokenShards
    from opuslm.tokenize.text import load_text_tokenizer
    from opuslm.vocab import JointVocab

    if (llm is None) == (preset is None):
        raise OpusLMError("the initial model needs exactly one of llm (a local HF folder) or preset")
    shards = TokenShards(tokens)
    paths = TokenizerPaths(*(shards.tokenizer_path(name) for name in ("text", "semantic", "acoustic")))
    backbone = llm if llm is not None else preset_config(preset, load_text_tokenizer(paths.text))
    model = OpusLM.from_llm(backbone, JointVocab.from_tokens(tokens), MultiStreamConfig(delays=delays, stream0_softmax=stream0_softmax), seed=seed,
                            codebook_row_scale=codebook_row_scale)
    model.save_pretrained(out, paths)
    return model
