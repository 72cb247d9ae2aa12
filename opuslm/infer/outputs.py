"""What a task's text output says, read by the task's target format (`opuslm.tasks.TARGETS`), and what
is wrong with it.

    read_output("transcript+labels", "henry reads<male>", label_count=1)
        -> TaskOutput(transcript="henry reads", labels=["male"], problems=[])
    read_output("transcript", "put the key by the window<male>")
        -> TaskOutput(transcript="put the key by the window", problems=["stray tag <male>"])

A tag separates words, it never glues them: `sheep<0.44>does` holds the words "sheep does". An output
with a problem is *malformed*; `opuslm eval` reports the share per task. The guard (`Sampling.guard`,
`--guard`) decodes within the task's format (`opuslm.infer.task_format`), and of an output that stops
outside it anyway (free SRWT, which no format constraint shapes, or a limit reached mid-format) keeps
`well_formed`, the longest prefix that still reads as the format. It is an option; eval scores the raw
output unless asked, so the malformed rate stays what the model does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from opuslm.templates import ANSWER_MARKER

PIECE = re.compile(r"(<[^<>]*>|[<>])")  # a text split on it alternates words and tags (or a lone bracket)
TIME = re.compile(r"\d+(?:\.\d+)?")
ANSWER = ANSWER_MARKER[1:-1]  # the tag between a transcript and its answer, as `pieces` names it
CLIP_SLACK = 0.1  # seconds a timestamp may pass the clip's end (a frame and a rounding)


@dataclass
class TaskOutput:
    text: str  # what the model wrote
    transcript: str | None = None
    labels: list[str] = field(default_factory=list)
    timestamps: list[tuple[str, float, float]] = field(default_factory=list)
    answer: str | None = None
    problems: list[str] = field(default_factory=list)
    well_formed: str = ""  # the longest prefix of `text` that reads as the format

    @property
    def malformed(self) -> bool:
        return bool(self.problems)

    def fields(self) -> dict:
        """The parts the task's format holds, for `opuslm generate --json`."""
        return {"text": self.text, "transcript": self.transcript, "labels": self.labels,
                "timestamps": [{"word": w, "start": s, "end": e} for w, s, e in self.timestamps],
                "answer": self.answer, "malformed": self.malformed, "problems": self.problems}


def pieces(text: str) -> list[tuple[str, str]]:
    """`("word", "a b")`, `("tag", "male")` and `("broken", "<")` (a bracket that opens or closes no
    tag) in order; whitespace-only words are dropped."""
    out = []
    for i, piece in enumerate(PIECE.split(text)):
        if i % 2:
            out.append(("tag", piece[1:-1].strip().lower()) if len(piece) > 1 else ("broken", piece))
        elif piece.strip():
            out.append(("word", " ".join(piece.split())))
    return out


def emitted_words(text: str) -> str:
    """The words of an output with every tag read as a separator."""
    return " ".join(PIECE.sub(" ", text).split())


def _prefix(text: str, kept: int) -> str:
    """`text` up to the end of its first `kept` pieces (tags and non-blank words)."""
    if kept == 0:
        return ""
    seen = 0
    position = 0
    for i, piece in enumerate(PIECE.split(text)):
        position += len(piece)
        if i % 2 or piece.strip():
            seen += 1
            if seen == kept:
                return text[:position].rstrip()
    return text.rstrip()


def _check_labels(labels: list[str], count: int, known: set[str] | None, problems: list[str]) -> None:
    if len(labels) != count:
        problems.append(f"{len(labels)} labels where the task writes {count}")
    problems += [f"unknown label <{label}>" for label in labels if known is not None and label not in known]


def read_output(target: str, text: str, label_count: int = 0, known_labels: set[str] | None = None,
                clip_seconds: float | None = None) -> TaskOutput:
    """Read `text` as `target` writes it. `label_count`: the labels the task writes (labels,
    transcript+labels); `known_labels`: the labels it may write (its training data's), or None to
    accept any; `clip_seconds`: the heard clip's length, which timestamps may not pass."""
    parts, out = pieces(text), TaskOutput(text)
    problems, kept = out.problems, 0
    problems += [f"a broken tag ({p!r} alone)" for kind, p in parts if kind == "broken"]
    if target in ("transcript", "answer"):
        words = [p for kind, p in parts if kind == "word"]
        value = " ".join(words)
        out.transcript, out.answer = (value, None) if target == "transcript" else (None, value)
        problems += [f"stray tag <{p}>" for kind, p in parts if kind == "tag"]
        if not value:
            problems.append("no words")
        kept = next((i for i, (kind, _) in enumerate(parts) if kind != "word"), len(parts))
    elif target in ("labels", "transcript+labels"):
        lead = 1 if target == "transcript+labels" and parts and parts[0][0] == "word" else 0
        if target == "transcript+labels":
            out.transcript = parts[0][1] if lead else ""
            if not lead:
                problems.append("no transcript before the labels")
        kept = lead
        while kept < len(parts) and parts[kept][0] == "tag" and kept - lead < label_count and \
                (known_labels is None or parts[kept][1] in known_labels):
            kept += 1
        out.labels = [p for kind, p in parts[lead:] if kind == "tag"]
        _check_labels(out.labels, label_count, known_labels, problems)
        if any(kind != "tag" for kind, _ in parts[lead:]):
            problems.append("words among the labels")
    elif target == "timestamps":
        kept = _read_timestamps(parts, clip_seconds, out)
    elif target == "transcript+answer":
        markers = [i for i, (kind, p) in enumerate(parts) if kind == "tag" and p == ANSWER]
        before = parts[:markers[0]] if markers else parts
        out.transcript = " ".join(p for kind, p in before if kind == "word")
        problems += [f"stray tag <{p}>" for kind, p in parts if kind == "tag" and p != ANSWER]
        if not markers:
            problems.append("no <answer>")
            kept = next((i for i, (kind, _) in enumerate(parts) if kind != "word"), len(parts))
        else:
            if len(markers) > 1:
                problems.append(f"{len(markers)} <answer> tags")
            after = parts[markers[0] + 1:]
            answer_end = next((i for i, (kind, _) in enumerate(after) if kind != "word"), len(after))
            out.answer = " ".join(p for _, p in after[:answer_end])
            if not out.answer:
                problems.append("no answer after <answer>")
            clean_before = all(kind == "word" for kind, _ in before)
            kept = markers[0] + 1 + answer_end if clean_before else \
                next(i for i, (kind, _) in enumerate(parts) if kind != "word")
    else:
        raise ValueError(f"unknown target {target!r}")
    out.well_formed = _prefix(text, kept)
    return out


def _read_timestamps(parts: list[tuple[str, str]], clip_seconds: float | None, out: TaskOutput) -> int:
    """`<start>word<end>` per word: fills `out.timestamps`, notes what is wrong, returns the pieces of
    the well-formed prefix (the timed words up to the first one out of order or past the clip)."""
    problems, kept, last_end, i = out.problems, 0, 0.0, 0
    while i < len(parts):
        window = parts[i:i + 3]
        shaped = len(window) == 3 and [k for k, _ in window] == ["tag", "word", "tag"] and \
            TIME.fullmatch(window[0][1]) and TIME.fullmatch(window[2][1])
        if not shaped:
            problems.append(f"not a timed word at {''.join(f'<{p}>' if k == 'tag' else p for k, p in window[:3])!r}")
            break
        start, word, end = float(window[0][1]), window[1][1], float(window[2][1])
        out.timestamps.append((word, start, end))
        ordered = start >= last_end - 1e-9 and end >= start
        inside = clip_seconds is None or end <= clip_seconds + CLIP_SLACK
        if not ordered and "timestamps go backwards" not in problems:
            problems.append("timestamps go backwards")
        if not inside and "timestamps pass the clip's end" not in problems:
            problems.append("timestamps pass the clip's end")
        if ordered and inside and kept == i:
            kept = i + 3
        last_end, i = max(last_end, end), i + 3
    if not out.timestamps and not problems:
        problems.append("no timed words")
    out.transcript = " ".join(w for w, _, _ in out.timestamps)
    return kept
