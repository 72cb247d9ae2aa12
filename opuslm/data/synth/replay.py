"""`opuslm data replay-text`: text the LLM writes itself, to replay while it learns speech.

Continued pretraining from a real LLM must keep what the LLM knew in text. Replaying its own
pretraining data is the usual way; a wheel-shipped LLM comes without it, and the demo's grammar text
is far narrower than what the LLM read (training on it pulls the LLM towards the grammar: SmolLM2's
English perplexity rose from 59 to 95 in the CPU pilot). Samples drawn from the LLM before any speech
training are the next best thing: the next-token loss on them is, in expectation, the KL divergence
from the original LLM's distribution to the trained one (plus a constant), so a text_lm source over
them pulls the trained model back towards the LLM it started from, on text of the LLM's own kind.

Samples are drawn with transformers' own `generate` from the LLM's BOS, at temperature 1 without
truncation (top-k or top-p would distill a sharper distribution than the LLM's). One sample is one
line (newlines become spaces); every `DEV_EVERY`-th goes to `dev.txt`, the rest to `train.txt`, which
is the layout a text_lm source reads. `replay.json` records the LLM's weights hash and the sampling,
and a folder holding another config is refused rather than mixed.
"""

from __future__ import annotations

import json
from pathlib import Path

from opuslm.data.manifest import write_lines_atomic
from opuslm.errors import OpusLMError
from opuslm.json_files import json_text
from opuslm.progress import progress_bar

DEV_EVERY = 20
SUMMARY_FILE = "replay.json"


def weights_hash(llm: Path) -> str:
    """The sha256 of an HF folder's weight files (the safetensors, else the torch .bin files)."""
    from opuslm.pretrained import sha256_of

    files = sorted(llm.glob("*.safetensors")) or sorted(llm.glob("*.bin"))
    if not files:
        raise OpusLMError(f"{llm} holds no weights (*.safetensors or *.bin); give an HF model folder")
    return sha256_of(*files)


def describe(summary: dict) -> str:
    """replay.json's counts in one line."""
    lines = ", ".join(f"{split} {n}" for split, n in summary["lines"].items())
    return f"{lines} lines the LLM wrote ({summary['empty']} empty samples left out)"


def as_line(sample: str) -> str:
    """One sample as one line of a text file: whitespace runs, newlines included, become one space."""
    return " ".join(sample.split())


def replay_text(llm: Path, out: Path, lines: int, seed: int = 0, max_new_tokens: int = 96, batch_size: int = 32,
                progress: bool = True) -> dict:
    """Draw `lines` samples from the LLM in `llm`; write train.txt, dev.txt and replay.json under `out`.
    Returns replay.json's content; a folder already holding the same config is left as it is."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if lines < DEV_EVERY:
        raise OpusLMError(f"--lines must be at least {DEV_EVERY} (every {DEV_EVERY}th line is dev), got {lines}")
    if max_new_tokens < 1 or batch_size < 1:
        raise OpusLMError(f"--max-new-tokens and --batch-size must be positive, got {max_new_tokens}, {batch_size}")
    if not (llm / "config.json").is_file():
        raise OpusLMError(f"{llm} is not an HF model folder (no config.json)")
    config = {"llm_weights": weights_hash(llm), "lines": lines, "seed": seed, "max_new_tokens": max_new_tokens,
              "batch_size": batch_size, "temperature": 1.0}
    summary_path = out / SUMMARY_FILE
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary["config"] == config:
            return summary
        raise OpusLMError(f"{out} holds other replay text ({summary_path} has config {summary['config']}, this "
                          f"call's is {config}); choose another folder or remove it")
    tokenizer = AutoTokenizer.from_pretrained(llm, local_files_only=True)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise OpusLMError(f"{llm}'s tokenizer has neither a BOS nor an EOS token to start a sample from")
    model = AutoModelForCausalLM.from_pretrained(llm, local_files_only=True).eval()
    # each batch seeded by its first line: the same config draws the same samples in any process
    samples: list[str] = []
    with progress_bar(total=lines, desc="replay text", unit="line", disable=not progress) as bar:
        for first in range(0, lines, batch_size):
            count = min(batch_size, lines - first)
            torch.manual_seed(seed * 1_000_003 + first)
            prompt = torch.full((count, 1), start, dtype=torch.long)
            with torch.no_grad():
                ids = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, temperature=1.0,
                                     top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                                     pad_token_id=tokenizer.eos_token_id)
            samples += tokenizer.batch_decode(ids[:, 1:], skip_special_tokens=True)
            bar.update(count)
    kept = {"train": [], "dev": []}
    empty = 0
    for index, sample in enumerate(samples):
        line = as_line(sample)
        if not line:
            empty += 1
            continue
        kept["dev" if index % DEV_EVERY == DEV_EVERY - 1 else "train"].append(line)
    if not kept["train"] or not kept["dev"]:
        raise OpusLMError(f"{llm} wrote {empty} empty samples of {lines}; nothing to replay")
    out.mkdir(parents=True, exist_ok=True)
    for split, split_lines in kept.items():
        write_lines_atomic(out / f"{split}.txt", split_lines)
    summary = {"config": config, "llm": str(llm.resolve()), "lines": {s: len(v) for s, v in kept.items()},
               "empty": empty}
    write_lines_atomic(summary_path, [json_text(summary).rstrip("\n")])
    return summary
