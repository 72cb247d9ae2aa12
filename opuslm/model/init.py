"""The first model of a run: a text LLM grown to the joint vocabulary of a tokenized corpus."""

from __future__ import annotations

from pathlib import Path

from opuslm.errors import OpusLMError


def init_model(tokens: str | Path, out: str | Path, llm: str | Path | None = None, preset: str | None = None,
               delays: list[int] | None = None, seed: int = 0, codebook_row_scale: float = 1.0,
               stream0_softmax: str = "full", heard_features: bool = False, heard_mix: str = "adapter"):
    """Grow `llm` (a local HF folder) or a `preset` shape (random weights, sized to the corpus's text
    tokenizer) to the vocabulary of the token shards `tokens`; save it at `out` with their tokenizers.
    `codebook_row_scale`: the new codebook rows' scale (`opuslm.model.embeddings.extend_to_joint_vocab`);
    `stream0_softmax`: see `MultiStreamConfig`; `heard_features`: give it the continuous input path, at
    the dimension of the shards' heard features (`opuslm tokenize --heard-features`), which adds
    `heard_mix` (see `MultiStreamConfig`)."""
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
    if heard_mix != "adapter" and not heard_features:
        raise OpusLMError(f"heard_mix {heard_mix} shapes the continuous input path: turn on heard_features too")
    if heard_features and not shards.feature_dim:
        raise OpusLMError(f"{tokens} has no heard features for the continuous input path: tokenize it with "
                          "`opuslm tokenize --heard-features`, or leave heard_features off")
    backbone = llm if llm is not None else preset_config(preset, load_text_tokenizer(paths.text))
    config = MultiStreamConfig(delays=delays, stream0_softmax=stream0_softmax,
                               heard_features=shards.feature_dim if heard_features else 0, heard_mix=heard_mix)
    model = OpusLM.from_llm(backbone, JointVocab.from_tokens(tokens), config, seed=seed,
                            codebook_row_scale=codebook_row_scale)
    model.save_pretrained(out, paths)
    return model
