"""Understanding tasks as data: what a task reads from the manifest, the answer it writes, how it is
asked, and how `opuslm eval` scores it. OSUM's tasks are entries of `tasks.yaml` beside this file; a
user declares their own in the same form, in a YAML file the schedule names (`tasks: my_tasks.yaml`):

    sentence_type:                  # the task's name, used in stage sources and `opuslm eval --tasks`
      labels: [sentence_type]       # manifest label keys it reads, in order
      target: labels                # what the answer holds (TARGETS below)
      score: first_tag              # how eval scores it (SCORES below); omit to leave it unscored
      instructions:                 # paraphrases; training draws one per example
        - Is this a statement, a question or a request?
        - What kind of sentence is this?
      heard_features: true          # optional: false leaves the task to the ids alone when the model has
                                    # the continuous input path (labels of the voice, see below)

Targets: `transcript`; `labels` (`<value>` per key); `transcript+labels` (ASR + X); `timestamps`
(`<0.00>word<0.34>` per word); `answer`; `transcript+answer` (`transcript<answer>answer`). Scores:
`first_tag` (accuracy of the first `<tag>`, with a confusion matrix and the labels never seen in
training listed), `exact` (normalised exact match), `wer` (word error rate); the built-ins also use
`timestamps` (word WER and boundary shift) and `answer` (the answer after `<answer>`).

A built-in task has its own task id `<task:NAME>` in the joint vocabulary. A declared task has none:
adding ids would change the vocabulary's layout and so every checkpoint's hash. Its instructions tell
it apart, as OSUM's do. A model folder keeps the tasks it was trained on (`tasks.json`).

`heard_features: false` marks a task whose answer is about the voice (gender, age, emotion): a model with
the continuous input path trains and answers it from the ids only, because the speech encoder's states
are trained to ignore the speaker and a model given them leans on them (demo, 2026-12-03: gender 0.99
from the ids, 0.89-0.92 with the features added, 0.985 with them withheld at answer time).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from opuslm.config_files import Strict, read_yaml, validate
from opuslm.errors import OpusLMError
from opuslm.json_files import write_json
from opuslm.vocab import TASKS

TARGETS = ("transcript", "labels", "transcript+labels", "timestamps", "answer", "transcript+answer")
SCORES = ("first_tag", "exact", "wer", "timestamps", "answer")
DECLARED_SCORES = SCORES[:3]  # `timestamps` and `answer` are the built-ins' own scorers (SRWT, STTC)
GENERATIVE_TASKS = ("text_lm", "asr", "tts", "tts_paced", "audio_lm")  # built by their own templates, not declared
TASKS_FILE = "tasks.json"  # in a model folder: the declared tasks it was trained on
LABELS_FILE = "trained_labels.json"  # in a model folder: per task, the labels its training data held


class TaskSpec(Strict):
    name: str = ""  # the key it is declared under
    target: Literal[TARGETS]
    labels: list[str] = []
    score: Literal[SCORES] | None = None
    instructions: list[str] = Field(min_length=1)
    heard_features: bool = True  # the continuous input path adds the heard audio's features (False: ids only)

    @field_validator("labels")
    @classmethod
    def _labels_named(cls, labels: list[str]) -> list[str]:
        if any(not key.strip() for key in labels):
            raise ValueError("label keys must be non-empty")
        return labels

    @property
    def builtin(self) -> bool:
        """Has a task id of its own in the vocabulary's layout."""
        return self.name in TASKS

    @property
    def marker(self) -> tuple[str, ...]:
        """The specials after `<sos>` that open the task's instruction."""
        return (f"<task:{self.name}>", "<text_start>") if self.builtin else ("<text_start>",)

    def check(self, where: str) -> TaskSpec:
        if self.target in ("labels", "transcript+labels") and not self.labels:
            raise OpusLMError(f"{where}: task {self.name} writes labels but names no label keys (labels: [key, ...])")
        if self.score == "first_tag" and not self.labels:
            raise OpusLMError(f"{where}: task {self.name} is scored by its first tag but writes no labels")
        return self


def _parse(data: dict, where: str) -> dict[str, TaskSpec]:
    specs = {}
    for name, fields in data.items():
        if not isinstance(fields, dict):
            raise OpusLMError(f"{where}: task {name} must be a mapping of keys (target, labels, score, instructions)")
        specs[name] = validate(TaskSpec, {**fields, "name": name}, f"{where}, task {name}").check(where)
    return specs


BUILTIN_TASKS: dict[str, TaskSpec] = _parse(read_yaml(Path(__file__).with_name("tasks.yaml")), "opuslm/tasks.yaml")


def read_tasks(path: str | Path) -> dict[str, TaskSpec]:
    """A user's task declarations. A name may not reuse a built-in's or a generative task's."""
    declared = _parse(read_yaml(path), str(path))
    taken = sorted(set(declared) & set(TASKS))  # the built-in and generative tasks are all named there
    if taken:
        raise OpusLMError(f"{path}: task name(s) {', '.join(taken)} are built in; choose other names")
    for name, spec in declared.items():
        if spec.score is not None and spec.score not in DECLARED_SCORES:
            raise OpusLMError(f"{path}: task {name} scores {spec.score}, which only the built-in tasks use; "
                              f"choose {', '.join(DECLARED_SCORES)}, or leave score out")
    return declared


class TaskTable:
    """The built-in tasks and the declared ones a model or a run knows."""

    def __init__(self, declared: dict[str, TaskSpec] | None = None):
        self.declared = dict(declared or {})
        self.specs = {**BUILTIN_TASKS, **self.declared}

    def __contains__(self, name: str) -> bool:
        return name in self.specs

    def get(self, name: str) -> TaskSpec | None:
        return self.specs.get(name)

    def names(self) -> list[str]:
        return list(self.specs)

    def hears_features(self, name: str) -> bool:
        """Whether task `name` reads the heard features of a model's continuous input path: the one rule of
        training (the loader) and decoding (`SpeechLM`); the generative tasks do, declared ones say."""
        spec = self.specs.get(name)
        return spec is None or spec.heard_features

    def require(self, name: str) -> TaskSpec:
        if name not in self.specs:
            declared = f"; declared: {', '.join(self.declared)}" if self.declared else \
                " (declare your own in a tasks YAML file: see opuslm/tasks.py)"
            raise OpusLMError(f"unknown understanding task {name!r}; built in: {', '.join(BUILTIN_TASKS)}{declared}")
        return self.specs[name]

    def merged(self, other: TaskTable) -> TaskTable:
        """Both tables' declared tasks; the same name declared differently is refused."""
        for name, spec in other.declared.items():
            if name in self.declared and self.declared[name] != spec:
                raise OpusLMError(f"task {name} is declared twice, differently: {self.declared[name]} and {spec}")
        return TaskTable({**self.declared, **other.declared})

    # ---- a model folder's ----
    def save(self, folder: str | Path) -> None:
        path = Path(folder) / TASKS_FILE
        if self.declared:
            write_json(path, {n: s.model_dump(exclude={"name"}) for n, s in self.declared.items()}, indent=1)

    @classmethod
    def of_model(cls, folder: str | Path) -> TaskTable:
        path = Path(folder) / TASKS_FILE
        return cls(_parse(json.loads(path.read_text()), str(path)) if path.is_file() else None)


def trained_labels(folder: str | Path) -> dict[str, list[str]]:
    """Per task, the labels a model folder's training taught it to write (none recorded: {})."""
    path = Path(folder) / LABELS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def save_trained_labels(folder: str | Path, start: str | Path, labels: dict[str, list[str]]) -> None:
    """The labels of the model `start` was trained on, and those of this run's training data."""
    merged = {task: set(values) for task, values in trained_labels(start).items()}
    for task, values in labels.items():
        merged.setdefault(task, set()).update(values)
    if merged:
        write_json(Path(folder) / LABELS_FILE, {t: sorted(v) for t, v in sorted(merged.items())})
