"""A stage's record of its steps, and the summary made from it.

`log.jsonl` gets every step (one JSON line, with `validation` where the stage validated, and a
`step: 0` line with the validation before the first step): it is what `summarize` and a resume read.
TensorBoard scalars and the progress bar's figures follow every `log_every` steps. Only the main
rank writes; on the others the log is silent.
"""

from __future__ import annotations

import json
from pathlib import Path
from opuslm.json_files import json_text


class RunLog:
    def __init__(self, run_dir: Path, name: str, steps: int, log_every: int = 1, main: bool = True, progress: bool = True):
        self.path = Path(run_dir) / "log.jsonl"
        self.tensorboard = Path(run_dir) / "tensorboard"
        self.name, self.steps, self.log_every, self.main, self.progress = name, steps, log_every, main, progress
        self._file = self._writer = self._bar = None

    def resume_at(self, step: int | None) -> None:
        """Keep the lines up to `step`, where the checkpoint a run resumes from was taken; with no
        checkpoint (`None`: killed before the first) the stage starts over, and so does its log."""
        if not (self.main and self.path.is_file()):
            return
        kept = [line for line in self.path.read_text().splitlines() if step is not None and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    # ---- writing ----
    def __enter__(self) -> RunLog:
        return self

    def open(self, step: int) -> RunLog:
        """Start writing after step `step` (0 for a fresh stage)."""
        from torch.utils.tensorboard import SummaryWriter
        from opuslm.progress import progress_bar

        if self.main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            self._writer = SummaryWriter(str(self.tensorboard), purge_step=step)
        self._bar = progress_bar(total=self.steps, initial=step, desc=self.name, unit="step", disable=not (self.main and self.progress))
        return self

    def write(self, record: dict) -> None:
        """One line for `record` (a step's figures, or `{"step": 0, "validation": ...}`)."""
        if self.main:
            self._file.write(json_text(record, None) + "\n")
            self._file.flush()
        step = record["step"]
        if step == 0:
            return
        if self.main and (step % self.log_every == 0 or "validation" in record):
            for key in ("loss", "lr", "grad_norm", "frames_per_s", "packing"):
                self._writer.add_scalar(f"train/{key}", record[key], step)
            for group in ("per_stream", "per_modality", "validation"):
                for name, value in record.get(group, {}).items():
                    self._writer.add_scalar(f"{group}/{name}", value, step)
            self._bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}", fps=f"{record['frames_per_s']:.0f}")
        self._bar.update(1)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            self._file.close()
            self._writer.close()
        self._file = self._writer = self._bar = None


def summarize(log_path: Path) -> dict:
    """What a stage's log says of it: totals, first and final training loss and validation, packing."""
    lines = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    records = [r for r in lines if "loss" in r]
    validations = [r for r in lines if "validation" in r]
    return {
        "examples": sum(r["examples"] for r in records), "frames": sum(r["frames"] for r in records),
        "tokens": sum(r["tokens"] for r in records),
        "first_loss": records[0]["loss"] if records else None, "final_loss": records[-1]["loss"] if records else None,
        "first_validation": validations[0]["validation"] if validations else {},
        "final_validation": validations[-1]["validation"] if validations else {},
        "packing": sum(r["packing"] for r in records) / max(len(records), 1),
    }
