"""How decoding chooses ids: the one place its defaults are written (the CLI reads them here). Audio is
sampled; text is greedy, or a beam search when `beam` > 1 (`opuslm.infer.beam`). Timestamp tasks (SRWT)
are written after ASR by default: the model's own transcript, with only the times chosen
(`opuslm.infer.timed_words`); "free" writes words and times in one pass, as the task was trained."""

from __future__ import annotations

from dataclasses import dataclass

from opuslm.errors import OpusLMError

TIMESTAMP_DECODINGS = ("after-asr", "free")


@dataclass
class Sampling:
    temperature: float = 0.8  # OpusLM's audio defaults
    top_k: int = 30  # 0: off
    top_p: float = 1.0  # 1: off
    greedy_audio: bool = False
    seed: int = 0
    beam: int = 1  # text targets: the beam width (1: greedy)
    guard: bool = False  # text targets: end where the output leaves the task's format (`opuslm.infer.outputs`)
    timestamps: str = "after-asr"  # timestamp targets: "after-asr" or "free"

    def __post_init__(self):
        if self.beam < 1:
            raise OpusLMError(f"the beam width (--beam) must be at least 1, got {self.beam}")
        if self.timestamps not in TIMESTAMP_DECODINGS:
            raise OpusLMError(f"--timestamps must be one of {', '.join(TIMESTAMP_DECODINGS)}, got {self.timestamps!r}")
