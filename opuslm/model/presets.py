"""Named HF configs for backbones trained from scratch (the embedded demo, tests, smoke runs).

A real run names a local pretrained LLM folder instead; these only fix the shape of a random one.
The text vocabulary size and special ids come from the text tokenizer, never from the preset.
"""

from __future__ import annotations

from opuslm.errors import OpusLMError

PRESETS = {
    # about 0.1 M backbone parameters: unit tests and smoke runs
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    # about 0.75 M backbone parameters: the CPU demo. On 2 cores it trains 1.9x the frames per second
    # of small, and twice small's steps of it at twice the LR learn more in the same time (docs/results.md,
    # "What the demo's budget buys")
    "mini": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
    # about 3 M backbone parameters; on 2 cores 1.6x the frames per second of a 6-layer model of its width
    "small": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
}


def preset_config(name: str, text_tokenizer, max_frames: int = 4096):
    """A Llama (SmolLM2's architecture) config of preset `name` for `text_tokenizer`'s vocabulary."""
    from transformers import LlamaConfig

    if name not in PRESETS:
        raise OpusLMError(f"unknown backbone preset {name!r}; presets: {', '.join(PRESETS)}")
    return LlamaConfig(vocab_size=len(text_tokenizer), max_position_embeddings=max_frames, tie_word_embeddings=True,
                       bos_token_id=text_tokenizer.bos_token_id, eos_token_id=text_tokenizer.eos_token_id,
                       pad_token_id=text_tokenizer.pad_token_id, **PRESETS[name])
