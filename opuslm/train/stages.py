"""`opuslm stages run|ablate`: the stages of a schedule in order, each starting from the one it names.

Layout of a schedule's `out` folder:

    init/model/            the text LLM grown to the joint vocabulary (or a preset from scratch), or a
                           link to the trained model folder a fine-tuning run starts from
    <stage>/               log.jsonl, tensorboard/, checkpoints/, model/, summary.json (= finished)
    ablations/<stage>/     the stage's data-mix ablation (`opuslm.train.ablation`)
    summary.json, summary.md   per stage: steps, tokens, first/final losses, validation per task, time

A finished stage is skipped; an interrupted one resumes from its newest checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from opuslm.errors import OpusLMError
from opuslm.json_files import write_json
from opuslm.tasks import TaskTable
from opuslm.train.config import StageConfig, load_schedule, schedule_tasks
from opuslm.train.preflight import known_peak_lr, preflight, require_same_definition


def stage_model(out: Path, stage: str) -> Path:
    """The model folder stage `stage` of a schedule whose `out` is `out` ends with ("init": the start)."""
    return Path(out) / stage / "model"


def stage_summary(out: Path, stage: str) -> dict:
    """What a finished stage's summary.json holds (steps, losses, validation, final LR, data)."""
    return json.loads((Path(out) / stage / "summary.json").read_text())


def build_init(schedule, out: Path) -> Path:
    """The model every `from: init` stage starts from, made once."""
    from opuslm.model.init import init_model

    folder = stage_model(out, "init")
    init = schedule.init
    if init.model is not None:  # fine-tuning: the trained model itself, linked, not copied
        target = Path(init.model).resolve()
        if folder.is_symlink() or folder.exists():
            if folder.resolve() != target:
                raise OpusLMError(f"{out} was started from {folder.resolve()}, not from init.model {target}; "
                                  "use a new out folder")
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(target, target_is_directory=True)
        return folder
    if (folder / "opuslm.json").is_file():
        return folder
    tmp = folder.with_name("model.tmp")
    init_model(schedule.datasets[schedule.tokens], tmp, init.llm, init.preset, init.delays, init.seed,
               init.codebook_row_scale, init.stream0_softmax, init.heard_features, init.heard_mix)
    tmp.rename(folder)
    return folder


def run_stage(stage: StageConfig, datasets, out: Path, run_dir: Path, progress: bool, validation_sources=None,
              tasks: TaskTable | None = None) -> dict:
    """Train `stage` into `run_dir`, resuming its newest checkpoint; a finished run of the same definition
    is reused, one of another definition refused (`require_same_definition`)."""
    from opuslm.train.trainer import StageRun

    start = stage_model(out, stage.start_from)
    if not (start / "opuslm.json").is_file():
        raise OpusLMError(f"stage {stage.name} starts from {stage.start_from}, whose model is missing at {start}: "
                          f"run `opuslm stages run` on the schedule first (it trains {stage.start_from}), or point "
                          "the schedule's out at a folder where it has finished")
    if stage.lr.peak == "previous" and stage.start_from == "init":
        raise OpusLMError(f"{stage.file}: stage {stage.name}: lr.peak 'previous' needs a stage to start from, not init")
    peak_lr = known_peak_lr(stage, out)
    if peak_lr is None:
        raise OpusLMError(f"stage {stage.name}: lr.peak 'previous' is the LR {stage.start_from} ended at, but "
                          f"{out / stage.start_from} has no summary.json: let `opuslm stages run` finish {stage.start_from}")
    require_same_definition(stage, run_dir, peak_lr)
    if (run_dir / "summary.json").is_file():
        return json.loads((run_dir / "summary.json").read_text())
    return StageRun(stage, datasets, start, run_dir, peak_lr, progress, validation_sources, tasks).run()


def run_schedule(path: str | Path, progress: bool = True, steps_scale: float = 1.0) -> list[dict]:
    """Every stage of the schedule at `path` in order (`steps_scale`: see `opuslm.train.config.scaled`)."""
    from opuslm.train.distributed import close_world, init_world

    schedule, stages = load_schedule(path, steps_scale)
    preflight(path, schedule, stages)
    out = Path(schedule.out)
    world = init_world()
    if world.main:
        build_init(schedule, out)
    world.barrier()
    summaries, tasks = [], schedule_tasks(schedule)
    for stage in stages:
        summaries.append(run_stage(stage, schedule.datasets, out, out / stage.name, progress, tasks=tasks))
    if world.main:
        write_summary(out, summaries)
    close_world(world)
    return summaries


def write_summary(out: Path, summaries: list[dict]) -> None:
    write_json(out / "summary.json", summaries, indent=1)
    tasks = sorted({t for s in summaries for t in s["final_validation"]})
    lines = ["| stage | from | steps | tokens | train loss first -> final | " + " | ".join(f"val {t}" for t in tasks) + " |",
             "|" + " --- |" * (4 + len(tasks) + 1)]
    for s in summaries:
        cells = []
        for t in tasks:
            first, final = s["first_validation"].get(t), s["final_validation"].get(t)
            cells.append(f"{first:.3f} -> {final:.3f}" if first is not None else "")
        lines.append(f"| {s['stage']} | {Path(s['from']).parent.name} | {s['steps']} | {s['tokens']} | "
                     f"{s['first_loss']:.3f} -> {s['final_loss']:.3f} | " + " | ".join(cells) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
