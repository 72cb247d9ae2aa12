"""The multi-stream model's own settings, beside the backbone's HF `config.json`."""

from __future__ import annotations

from dataclasses import dataclass, field

from opuslm.errors import OpusLMError
from opuslm.vocab import MODALITIES

# OpusLM's 1.7B weights: semantic 0.5, each of 8 codebooks 0.5 / 8, text 1, special tokens 10.
DEFAULT_LOSS_WEIGHTS = {"special": 10.0, "semantic": 0.5, "codec": 0.0625, "text": 1.0}
STREAM0_SOFTMAX = ("full", "modality")
HEARD_MIX = ("adapter", "text_posterior")


@dataclass
class MultiStreamConfig:
    """`delays`: per-stream delay (None: 0, 1, ..., N-1); `loss_weights`: per modality of the target id
    (codec is per codebook); `loss_chunk`: rows of logits computed at once, so `[B, T, V]` never exists;
    `stream0_softmax`: "full" scores stream 0 over the whole vocabulary, "modality" only over the ids that
    can follow its input (after a semantic id: specials and semantic ids; after a text id: specials and
    text ids; after a special: everything), as decoding allows (`opuslm.model.loss`); `heard_features`:
    the dimension of the continuous input path's features (0: off, the model reads ids alone), see
    `opuslm.model.streams`; `heard_mix`: what the path adds, "adapter" its adapter's output, "text_posterior"
    that output's softmax over the text rows (and a blank that adds nothing) times those rows: the words
    it hears as the LLM's own word embeddings (LegoSLM's connection; train the adapter first with a
    `heard_ctc` stage); `paced_tts`: the model was trained on word-paced TTS (`tts_paced`: each word's text
    ids before its audio), so it speaks that way (the trainer sets it)."""

    delays: list[int] | None = None
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))
    loss_chunk: int = 4096
    stream0_softmax: str = "full"
    heard_features: int = 0
    heard_mix: str = "adapter"
    paced_tts: bool = False

    def __post_init__(self):
        unknown = set(self.loss_weights) - set(MODALITIES)
        missing = set(MODALITIES) - set(self.loss_weights)
        if unknown or missing:
            raise OpusLMError(f"loss_weights needs exactly {', '.join(MODALITIES)}; "
                              f"unknown {sorted(unknown)}, missing {sorted(missing)}")
        if self.stream0_softmax not in STREAM0_SOFTMAX:
            raise OpusLMError(f"stream0_softmax must be one of {', '.join(STREAM0_SOFTMAX)}, got {self.stream0_softmax!r}")
        if self.heard_mix not in HEARD_MIX:
            raise OpusLMError(f"heard_mix must be one of {', '.join(HEARD_MIX)}, got {self.heard_mix!r}")
        if self.heard_features < 0:
            raise OpusLMError(f"heard_features is a feature dimension (0: off), got {self.heard_features}")
