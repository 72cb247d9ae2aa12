"""`opuslm data synth-text`: a text-only corpus from the same grammar as the spoken one.

A real text LLM has read far more text than any speech corpus transcribes. The embedded demo's text
LLM gets the same advantage from this file, so it learns the language rather than memorising the
few thousand transcripts (which it did: its held-out loss rose after 100 steps on transcripts alone).

Lines are transcripts as the speech corpus writes them, and spoken questions followed by their answer
(`what is two plus three five`), the knowledge a text LLM brings to spoken question answering. A line
goes to `train.txt` or `dev.txt` by the speech corpus's own text hash (`text_split`), and lines that
hash to test are left out, so no test transcript of the speech corpus is ever read as text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from opuslm.progress import progress_bar

from opuslm.data.manifest import write_lines_atomic
from opuslm.data.synth import sentences
from opuslm.data.synth.corpus import text_split
from opuslm.errors import OpusLMError
from opuslm.json_files import json_text

WRITTEN_SPLITS = ("train", "dev")


def text_line(rng: random.Random, question_share: float) -> tuple[str, str]:
    """(line, the split its transcript hashes to)."""
    if rng.random() < question_share:
        sentence = sentences.random_question_with_answer(rng)
        return f"{sentence.text} {sentence.answer}", text_split(sentence.text)
    sentence = sentences.random_sentence(rng)
    return sentence.text, text_split(sentence.text)


def describe(summary: dict) -> str:
    """text.json's counts in one line."""
    lines = ", ".join(f"{split} {n}" for split, n in summary["lines"].items())
    return f"{lines} lines (left out {summary['left_out_test_lines']} that hash to test)"


def synthesize_text(out: Path, lines: int, seed: int = 0, question_share: float = 0.15, progress: bool = True) -> dict:
    """Draw `lines` lines; write train.txt, dev.txt and text.json (the counts) under `out`.
    Returns text.json's content; a folder already holding the same config is left as it is."""
    if lines < 1:
        raise OpusLMError(f"--lines must be positive, got {lines}")
    config = {"lines": lines, "seed": seed, "question_share": question_share}
    summary_path = out / "text.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary["config"] == config:
            return summary
        raise OpusLMError(f"{out} holds another text corpus ({summary_path} has config {summary['config']}); "
                          "choose another folder or remove it")
    rng = random.Random(f"text-{seed}")
    kept: dict[str, list[str]] = {split: [] for split in WRITTEN_SPLITS}
    held_out = 0
    for _ in progress_bar(range(lines), desc="text lines", unit="line", disable=not progress):
        line, split = text_line(rng, question_share)
        if split in kept:
            kept[split].append(line)
        else:
            held_out += 1
    out.mkdir(parents=True, exist_ok=True)
    for split, split_lines in kept.items():
        write_lines_atomic(out / f"{split}.txt", split_lines)
    summary = {"config": config, "lines": {split: len(v) for split, v in kept.items()},
               "left_out_test_lines": held_out}
    write_lines_atomic(summary_path, [json_text(summary).rstrip("\n")])
    return summary
