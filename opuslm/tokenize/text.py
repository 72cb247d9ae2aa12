"""The text tokenizer: the backbone LLM's own (AutoTokenizer), or a small BPE trained on a corpus.

The joint vocabulary's text range equals `len(tokenizer)` exactly, so nothing here may add tokens
to a pretrained tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from opuslm.errors import OpusLMError

SPECIAL_TOKENS = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>"}


def corpus_texts(utterances) -> list[str]:
    """What a corpus's text tokenizer is trained on: every transcript, then every answer."""
    return [u.text for u in utterances] + [u.answer for u in utterances if u.answer]


def text_ids(tokenizer, text: str):
    """A text's ids without the tokenizer's own specials: what shards store and templates place."""
    import numpy as np

    return np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)


def load_text_tokenizer(path: str | Path):
    """The tokenizer of a local HF folder (an LLM's folder or one made by `train_text_tokenizer`)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise OpusLMError(f"text tokenizer folder not found: {path} (give a local HF model or tokenizer folder)")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as error:
        raise OpusLMError(f"{path} holds no loadable tokenizer ({error})") from error


def train_text_tokenizer(texts: Iterable[str], out: str | Path, vocab_size: int = 1024) -> Path:
    """Train a byte-level BPE (HF `tokenizers`) and save it as an AutoTokenizer-loadable folder.

    Byte-level BPE never needs an unknown token, so any text round-trips.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    out = Path(out)
    wrapped.save_pretrained(str(out))
    return out
