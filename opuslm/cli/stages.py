"""`opuslm stages run|ablate|check`: multi-stage training from a schedule YAML."""

from __future__ import annotations

from pathlib import Path

from opuslm.cli import help_formatter


def register(subparsers) -> None:
    group = subparsers.add_parser("stages", help="train: pretrain -> anneal -> instruct from a schedule",
                                  description="Run the stages a schedule YAML lists (see stages/demo.yaml). Works "
                                  "the same under `torchrun --nproc-per-node N -m opuslm stages run ...`.")
    commands = group.add_subparsers(dest="stages_command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", formatter_class=help_formatter, help="run every stage in order (resumes)",
                              description="Run the schedule's stages in order. Finished stages are skipped; an "
                              "interrupted one resumes from its newest checkpoint and continues exactly. Writes "
                              "OUT/summary.json and OUT/summary.md.")
    run.add_argument("schedule", type=Path, help="schedule YAML")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)
    ablate = commands.add_parser("ablate", formatter_class=help_formatter, help="one stage once per data mix",
                                 description="Run one stage (usually anneal) from the same starting model once for each "
                                 "data mix under the schedule's `ablations`, validated on the same sets; writes "
                                 "OUT/ablations/ablation.md and ablation.png.")
    ablate.add_argument("schedule", type=Path, help="schedule YAML")
    ablate.add_argument("--stage", default="anneal", help="the stage whose data mix varies")
    ablate.add_argument("--quiet", action="store_true", help="no progress bars")
    ablate.set_defaults(func=_ablate)
    check = commands.add_parser("check", formatter_class=help_formatter, help="validate a schedule without training",
                                description="Read the schedule and every stage file, apply overrides and print the "
                                "resolved stages; any unknown or mistyped key is an error naming the key and file.")
    check.add_argument("schedule", type=Path, help="schedule YAML")
    check.set_defaults(func=_check)


def _run(args) -> None:
    from opuslm.backends import register_backends
    from opuslm.train.stages import run_schedule

    register_backends()
    summaries = run_schedule(args.schedule, progress=not args.quiet)
    for s in summaries:
        if not s:  # only the main rank of a torchrun job reports
            continue
        print(f"{s['stage']}: {s['steps']} steps, {s['tokens']} tokens, loss {s['first_loss']:.3f} -> {s['final_loss']:.3f}")


def _ablate(args) -> None:
    from opuslm.backends import register_backends
    from opuslm.train.stages import ablate

    register_backends()
    folder = ablate(args.schedule, args.stage, progress=not args.quiet)
    print((folder / "ablation.md").read_text(), end="")
    print(f"plot: {folder / 'ablation.png'}")


def _check(args) -> None:
    from opuslm.train.config import load_schedule

    schedule, stages = load_schedule(args.schedule)
    init = schedule.init.model_dump(exclude_none=True, include={"model"} if schedule.init.model else None)
    tasks = f", tasks {schedule.tasks}" if schedule.tasks else ""
    print(f"schedule {args.schedule}: out {schedule.out}, init {init}{tasks}")
    for stage in stages:
        sources = ", ".join(f"{s.name}({s.task} x{s.weight:g} on {s.dataset})" for s in stage.data.sources)
        tune = stage.tune.model_dump(exclude_defaults=True)
        print(f"  {stage.name} from {stage.start_from}: {stage.steps} steps, lr {stage.lr.schedule} peak {stage.lr.peak}, "
              f"{stage.data.rows} x {stage.data.row_frames} frames, loss on {stage.data.loss_region}; {sources}"
              + (f"; tune {tune}" if tune else ""))
