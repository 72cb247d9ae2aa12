"""`opuslm eval --suite osum|opuslm`: the papers' test sets that are on disk, in the papers' rows, with
their published numbers beside ours (from REFERENCE.md; second-hand figures are marked so).

A set is found at `<data-root>/<name>/manifest.jsonl`, as `opuslm data recipe ... --split test --out
<data-root>/<name>` writes it; a set that is not there is reported as "not present".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SuiteSet:
    name: str  # folder under the data root
    row: str  # the paper's row
    task: str  # "asr" or a classification task
    metric: str  # key in the evaluation's results
    published: dict[str, float] = field(default_factory=dict)  # system -> number, in the row's unit
    percent: bool = True


SUITES = {
    "osum": (
        SuiteSet("librispeech-test-clean", "LibriSpeech test-clean WER %", "asr", "asr_wer_test",
                 {"OSUM v1": 2.55, "OSUM (later)": 2.19, "Qwen2-Audio": 1.6}),
        SuiteSet("librispeech-test-other", "LibriSpeech test-other WER %", "asr", "asr_wer_test",
                 {"OSUM v1": 5.96, "OSUM (later)": 5.53, "Qwen2-Audio": 3.6}),
        SuiteSet("meld-test", "SER accuracy % (MELD)", "ser", "ser_accuracy", {"OSUM": 56.6}),
        SuiteSet("vocalsound-test", "VED accuracy % (VocalSound)", "ved", "ved_accuracy", {"OSUM": 80.8}),
        SuiteSet("common-voice-test", "SGC accuracy % (Common Voice)", "sgc", "sgc_accuracy",
                 {"OSUM (its own SGC sets)": 100.0}),
        SuiteSet("common-voice-test", "SAP accuracy % (Common Voice)", "sap", "sap_accuracy",
                 {"OSUM (its own SAP set)": 76.7}),
    ),
    "opuslm": (
        SuiteSet("librispeech-test-clean", "LibriSpeech test-clean WER %", "asr", "asr_wer_test",
                 {"OpusLM-7B (unverified)": 2.3, "OpusLM-0.4B (unverified)": 4.2}),
        SuiteSet("librispeech-test-other", "LibriSpeech test-other WER %", "asr", "asr_wer_test",
                 {"OpusLM-0.4B (unverified)": 8.7}),
    ),
}


def run_suite(suite: str, model: Path, data_root: Path, out: Path, limit: int | None = None,
              batch_size: int = 8, codec: Path | None = None, beam: int = 1) -> str:
    """Evaluate every present set; returns the table (also written to `out/suite-<name>.md`)."""
    from opuslm.eval.runner import Evaluation
    from opuslm.infer.sampling import Sampling
    from opuslm.infer.speech_lm import SpeechLM

    lm = None
    lines = [f"| {suite.upper()} row | ours | published |", "| --- | --- | --- |"]
    for entry in SUITES[suite]:
        corpus = data_root / entry.name
        published = "; ".join(f"{system} {value:g}" for system, value in entry.published.items())
        if not (corpus / "manifest.jsonl").is_file():
            lines.append(f"| {entry.row} | not present ({corpus}) | {published} |")
            continue
        lm = lm or SpeechLM.load(model, codec, sampling=Sampling(seed=0, beam=beam))
        evaluation = Evaluation(model, corpus, out / entry.name, batch_size=batch_size, limit=limit, lm=lm)
        if entry.task == "asr":
            evaluation.asr("test")
        else:
            evaluation.classification(entry.task, "test")
        value = evaluation.results.get(entry.metric)
        shown = "n/a" if value is None else f"{100 * value:.2f}" if entry.percent else f"{value:.3f}"
        lines.append(f"| {entry.row} | {shown} | {published} |")
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"suite-{suite}.md").write_text(table + "\n")
    return table
