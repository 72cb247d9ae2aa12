"""Your own labelled clips, for the fine-tuning walkthrough (docs/usage.md, "Fine-tune on your own data").

Writes a JSON Lines manifest of clips from a corpus (absolute audio paths) with a label the demo's model
never trained on: `sentence_type`, one of statement, question or request, read from the sentence's first
word. Any manifest with label keys of your own works the same way.

    .venv/bin/python data_recipes/finetune/label_sentence_types.py --corpus demo_out/corpus --out my_clips
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

QUESTION = {"what", "how", "who", "where", "when", "why", "which", "is", "are", "was", "does", "do", "did",
            "can", "could", "will", "would", "should"}
REQUEST = {"please", "tell", "give", "show", "let", "bring", "put", "take", "open", "close"}


def sentence_type(text: str) -> str:
    first = text.split()[0].lower() if text.split() else ""
    return "question" if first in QUESTION else "request" if first in REQUEST else "statement"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus folder (manifest.jsonl and audio)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for manifest.jsonl")
    parser.add_argument("--train", type=int, default=800, help="train clips kept (dev and test are kept whole)")
    args = parser.parse_args()
    kept, counts = [], Counter()
    train = 0
    for line in (args.corpus / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] == "train":
            if train >= args.train:
                continue
            train += 1
        audio = Path(record["audio"])
        record["audio"] = str(audio if audio.is_absolute() else (args.corpus / audio).resolve())
        record["labels"] = {"sentence_type": sentence_type(record["text"])}
        counts[record["split"], record["labels"]["sentence_type"]] += 1
        kept.append(json.dumps(record, ensure_ascii=False))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "manifest.jsonl").write_text("\n".join(kept) + "\n")
    for split in ("train", "dev", "test"):
        print(split, {label: n for (s, label), n in sorted(counts.items()) if s == split})
    print(f"{len(kept)} clips -> {args.out / 'manifest.jsonl'}")


if __name__ == "__main__":
    main()
