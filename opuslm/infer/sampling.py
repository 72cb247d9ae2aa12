"""How decoding chooses ids: the one place its defaults are written (the CLI reads them here). Audio is
sampled; text is greedy, or a beam search when `beam` > 1 (`opuslm.infer.beam`)."""

from __future__ import annotations

from dataclasses import dataclass

from opuslm.errors import OpusLMError


@dataclass
class Sampling:
    temperature: float = 0.8  # OpusLM's audio defaults
    top_k: int = 30  # 0: off
    top_p: float = 1.0  # 1: off
    greedy_audio: bool = False
    seed: int = 0
    beam: int = 1  # text targets: the beam width (1: greedy)
    guard: bool = False  # text targets: end where the output leaves the task's format (`opuslm.infer.outputs`)

    def __post_init__(self):
        if self.beam < 1:
            raise OpusLMError(f"the beam width (--beam) must be at least 1, got {self.beam}")
