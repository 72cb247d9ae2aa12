"""`opuslm stages run|ablate|check`: multi-stage training from a schedule YAML."""

from __future__ import annotations

from pathlib import Path

from opuslm.cli import help_formatter, positive

STEPS_SCALE = ("multiply every stage's steps and LR warmup by this (at least 1 step): 0.1 for a short run of the "
               "same schedule; the scaled stages are other definitions, so use another out folder")


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
    run.add_argument("--steps-scale", type=positive(float), default=1.0, help=STEPS_SCALE)
    run.set_defaults(func=_run)
    ablate = commands.add_parser(
        "ablate", formatter_class=help_formatter, help="one stage per data mix and seed, evaluated, with baselines",
        description="Run one stage (usually anneal) from the same starting model once per data mix under the "
        "schedule's `ablations` and per seed, evaluate every model with `opuslm eval`, and write one table and plot "
        "(OUT/ablations/STAGE/ablation.md, .json, .png): each mix's weights and steps, each metric's mean over seeds "
        "with a 95% interval (a bootstrap over utterances and seeds), the starting model and continued training on "
        "the previous stage's mix as baselines, and paired differences on the same utterances. Runs are keyed by "
        "what defines them: a changed mix trains anew, an unchanged one is reused (and says so).")
    ablate.add_argument("schedule", type=Path, help="schedule YAML")
    ablate.add_argument("--stage", default="anneal", help="the stage whose data mix varies")
    ablate.add_argument("--mixes", type=Path, help="a YAML file of mixes (`ablations: {name: [sources]}`) to compare "
                        "instead of the schedule's own ablations, e.g. stages/demo_ablation.yaml")
    ablate.add_argument("--seeds", default=None, help="comma-separated data seeds (default: the stage's data.seed)")
    ablate.add_argument("--eval-tasks", help="comma-separated eval tasks (default: asr, the understanding tasks the "
                        "schedule trains, tts when there is a judge, text)")
    ablate.add_argument("--eval-limit", type=positive(int), help="at most this many utterances per eval task")
    ablate.add_argument("--corpus", type=Path, help="the corpus to evaluate on (default: the one the schedule's "
                        "tokens dataset was made from)")
    ablate.add_argument("--judge", default="embedded", help="TTS judge, as for `opuslm eval --judge` ('none': no TTS)")
    ablate.add_argument("--quiet", action="store_true", help="no progress bars")
    ablate.add_argument("--steps-scale", type=positive(float), default=1.0, help=STEPS_SCALE)
    ablate.set_defaults(func=_ablate)
    check = commands.add_parser("check", formatter_class=help_formatter, help="validate a schedule without training",
                                description="Make every check `stages run` makes before its first step, without "
                                "training: keys and values, datasets and their tokenizers against the model's, "
                                "delays, LoRA targets against the backbone's modules, rows against its positions, "
                                "warmup against steps, and earlier runs in out against their definitions. Prints "
                                "the resolved stages and ablations and what run would start, resume or reuse; any "
                                "problem is an error naming the key and the file.")
    check.add_argument("schedule", type=Path, help="schedule YAML")
    check.add_argument("--steps-scale", type=positive(float), default=1.0, help=STEPS_SCALE)
    check.add_argument("--ablate-stage", default="anneal", help="the stage the ablations vary (as ablate's --stage)")
    check.set_defaults(func=_check)


def _run(args) -> None:
    from opuslm.backends import register_backends
    from opuslm.train.stages import run_schedule

    register_backends()
    summaries = run_schedule(args.schedule, progress=not args.quiet, steps_scale=args.steps_scale)
    for s in summaries:
        if not s:  # only the main rank of a torchrun job reports
            continue
        print(f"{s['stage']}: {s['steps']} steps, {s['tokens']} tokens, loss {s['first_loss']:.3f} -> {s['final_loss']:.3f}")


def _ablate(args) -> None:
    from opuslm.backends import register_backends
    from opuslm.train.ablation import ablate

    register_backends()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    tasks = [t.strip() for t in args.eval_tasks.split(",") if t.strip()] if args.eval_tasks else None
    folder = ablate(args.schedule, args.stage, seeds, tasks, args.eval_limit, args.corpus, args.judge,
                    progress=not args.quiet, steps_scale=args.steps_scale, mixes=args.mixes)
    print((folder / "ablation.md").read_text(), end="")
    print(f"plot: {folder / 'ablation.png'}")


def _check(args) -> None:
    from opuslm.train.config import load_schedule
    from opuslm.train.preflight import preflight

    schedule, stages = load_schedule(args.schedule, args.steps_scale)
    backbone = preflight(args.schedule, schedule, stages)
    init = schedule.init.model_dump(exclude_none=True, include={"model"} if schedule.init.model else None)
    tasks = f", tasks {schedule.tasks}" if schedule.tasks else ""
    print(f"schedule {args.schedule}: out {schedule.out}, init {init}{tasks}")
    print(f"  model: {backbone.num_streams} streams, tokenizers of {backbone.identity_from}, "
          f"{backbone.position_limit or 'unlimited'} positions ({backbone.config_from}); every dataset matches")
    out = Path(schedule.out)
    for stage in stages:
        print(f"  {stage.name} from {stage.start_from}: {_describe(stage)}; "
              f"{_run_state(out / stage.name)}")
    ablated = next((s for s in stages if s.name == args.ablate_stage), None)
    if schedule.ablations and ablated is not None:
        from opuslm.train.ablation import planned_runs

        _, planned = planned_runs(schedule, stages, ablated, [ablated.data.seed])
        for row, _, variant, run_dir in planned:
            what = _describe(variant) if variant is not None else row.mix
            state = _run_state(run_dir) if run_dir is not None else f"would start once {ablated.start_from} has finished"
            if variant is None and run_dir is not None:
                state = "evaluated, would be reused" if (run_dir / "eval" / "results.json").is_file() else "would be evaluated"
            print(f"  ablation of {ablated.name}, {row.name}: {what}; {state}")


def _source(source) -> str:
    return f"{source.name}({source.task} x{source.weight:g} on {source.dataset})"


def _describe(stage) -> str:
    tune = stage.tune.model_dump(exclude_defaults=True)
    return (f"{stage.steps} steps, lr {stage.lr.schedule} peak {stage.lr.peak} warmup {stage.lr.warmup}, "
            f"{stage.data.rows} x {stage.data.row_frames} frames, loss on {stage.data.loss_region}; "
            + ", ".join(_source(s) for s in stage.data.sources) + (f"; tune {tune}" if tune else ""))


def _run_state(run_dir: Path) -> str:
    """What `stages run` would do with the run in `run_dir` (its definition was checked by preflight)."""
    from opuslm.train.checkpoint import latest

    if (run_dir / "summary.json").is_file():
        return f"finished in {run_dir}, would be reused"
    newest = latest(run_dir / "checkpoints")
    return f"would resume at {newest.name}" if newest is not None else "would start"
