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


def train_text_tokenizer(texts: Iterable[str], out: str | Path, vocab_size: int = 1024,
                         whole: Iterable[str] = ()) -> Path:
    """Train a byte-level BPE (HF `tokenizers`) and save it as an AutoTokenizer-loadable folder.

    Byte-level BPE never needs an unknown token, so any text round-trips. `whole`: strings kept as one
    token each, within `vocab_size` (a corpus's tags, `opuslm.templates.corpus_tags`). They stay text,
    not specials: decoding writes them, and a model writes a label as one id instead of a few pieces it
    can leave half-written (`the gray wallet>` for `the gray wallet<male>`).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    whole = list(dict.fromkeys(whole))
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size - len(whole) < len(SPECIAL_TOKENS) + len(alphabet):
        raise OpusLMError(f"text tokenizer: a vocabulary of {vocab_size} cannot hold {len(SPECIAL_TOKENS)} specials, "
                          f"{len(alphabet)} bytes and {len(whole)} whole tags; give a larger vocabulary size")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(whole),
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(text, normalized=False, special=False) for text in whole])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    out = Path(out)
    wrapped.save_pretrained(str(out))
    return out
