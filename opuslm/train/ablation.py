"""`opuslm stages ablate`: one stage (usually anneal) once per data mix and seed, from the same start,
each model scored by `opuslm eval`, in one table beside the baselines OpusLM compares against.

Rows of the table:

    start       the stage's starting model, not trained further ("no anneal")
    continued   the stage's steps on the previous stage's mix, at the LR the previous stage ended at,
                held constant ("continued training": what the same compute buys without a new mix)
    <mix>       the stage with the sources of `ablations.<mix>` in the schedule

Every row is validated on the stage's own sources and evaluated on the same utterances, so their
differences are paired (`opuslm.eval.intervals`). A run lives in

    out/ablations/<stage>/<row>-seed<k>-<key>/     summary.json, model/, eval/ (results.json, hyps.jsonl)

where `key` hashes everything that defines it: the row's stage definition (mix, steps, LR, seed, ...),
its starting model's content and the identity of every dataset it reads. A changed definition gets a
new folder and trains; an unchanged one is reused, and the log says which. The same holds for the
evaluation, keyed by its tasks, limit, corpus and judge.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from opuslm.errors import OpusLMError
from opuslm.json_files import json_text, write_json
from opuslm.train.config import LRConfig, ScheduleConfig, StageConfig, load_schedule, schedule_tasks, with_mixes
from opuslm.train.preflight import definition, preflight

START, CONTINUED = "start", "continued"
# metrics where smaller is better; the table says so beside their names
LOWER_IS_BETTER = ("wer", "perplexity", "validation")


@dataclass
class Row:
    name: str
    stage: StageConfig | None  # None: the start row, which trains nothing
    mix: str  # what the table says about its data
    runs: list[Path] = field(default_factory=list)  # one per seed (the start row: one)


def _sources_text(sources) -> str:
    return ", ".join(f"{s.task} x{s.weight:g} ({s.dataset})" for s in sources)


def rows_of(schedule: ScheduleConfig, stages: list[StageConfig], stage: StageConfig) -> list[Row]:
    """The start, the continued-training baseline (when the stage starts from another stage) and one row
    per mix; each row's stage named after it, so logs and progress bars say which is training."""
    rows = [Row(START, None, f"{stage.start_from}'s model")]
    previous = next((s for s in stages if s.name == stage.start_from), None)
    if previous is not None:
        continued = stage.model_copy(update={
            "name": f"{stage.name}-{CONTINUED}", "data": stage.data.model_copy(update={"sources": previous.data.sources}),
            "lr": LRConfig(schedule="constant", peak="previous", warmup=0)})
        rows.append(Row(CONTINUED, continued, f"{previous.name}'s mix: {_sources_text(previous.data.sources)}"))
    for mix, sources in schedule.ablations.items():
        if mix in (START, CONTINUED):
            raise OpusLMError(f"ablations.{mix}: the names {START} and {CONTINUED} are the baselines' rows; rename the mix")
        variant = stage.model_copy(update={"name": f"{stage.name}-{mix}",
                                           "data": stage.data.model_copy(update={"sources": sources})})
        rows.append(Row(mix, variant, _sources_text(sources)))
    return rows


def dataset_identity(folder: Path) -> str:
    """What a dataset is: a shard folder's tokens.json (its manifest's hash and tokenizers), or a text
    file's bytes."""
    from opuslm.tokenize.identity import folder_hash

    folder = Path(folder)
    return folder_hash(folder / "tokens.json" if (folder / "tokens.json").is_file() else folder)


def run_key(stage: StageConfig, start_hash: str, datasets: dict[str, str], validation_sources) -> str:
    used = sorted({s.dataset for s in [*stage.data.sources, *validation_sources]})
    content = {"definition": definition(stage), "start": start_hash,
               "data": {name: dataset_identity(Path(datasets[name])) for name in used},
               "validation": [s.model_dump() for s in validation_sources]}
    return hashlib.sha256(json_text(content).encode()).hexdigest()[:12]


@dataclass
class EvalSpec:
    tasks: list[str]
    limit: int | None
    corpus: Path
    judge: str  # "none", "embedded" or a folder

    def key(self) -> dict:
        from opuslm.tokenize.identity import folder_hash

        return {"tasks": self.tasks, "limit": self.limit, "corpus": folder_hash(self.corpus / "manifest.jsonl"),
                "judge": self.judge}


def evaluate(model: Path, out: Path, spec: EvalSpec, judge, progress: bool, say) -> None:
    """`opuslm eval` of `model` into `out`, reused when `out` holds results of the same spec."""
    from opuslm.eval.runner import Evaluation

    key = spec.key()
    if (out / "results.json").is_file() and (out / "spec.json").is_file() and json.loads((out / "spec.json").read_text()) == key:
        say(f"reused the evaluation in {out}")
        return
    say(f"evaluating {model} on {', '.join(spec.tasks)} -> {out}")
    Evaluation(model, spec.corpus, out, judge, limit=spec.limit, progress=progress).run(spec.tasks)
    write_json(out / "spec.json", key)


def default_eval_tasks(stages: list[StageConfig], judge: str) -> list[str]:
    """ASR, TTS (with a judge), the understanding tasks the schedule trains, and text."""
    from opuslm.eval.runner import EVAL_TASKS

    trained = {s.task.removesuffix("_label") for stage in stages for s in stage.data.sources}
    understanding = [t for t in EVAL_TASKS if t in trained and t not in ("asr", "tts", "text", "continuation", "spoken_qa")]
    return ["asr", *understanding, *(["tts"] if judge != "none" else []), "text"]


def ablate(path: str | Path, stage_name: str, seeds: list[int] | None = None, eval_tasks: list[str] | None = None,
           eval_limit: int | None = None, corpus: Path | None = None, judge: str = "embedded", progress: bool = True,
           steps_scale: float = 1.0, mixes: Path | None = None, say=print) -> Path:
    """Train and evaluate every row (see the module docstring); write ablation.md, .json and .png into
    out/ablations/<stage>/; returns that folder. `mixes`: a YAML file of mixes to use instead of the
    schedule's `ablations`."""
    from opuslm.eval.judge import load_judge
    from opuslm.eval.runner import check_eval_tasks
    from opuslm.train.stages import run_stage, stage_model

    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise OpusLMError("stages ablate runs in one process (each rank would evaluate every model): run it without "
                          "torchrun; `stages run` is the command that trains across ranks")
    schedule, stages = load_schedule(path, steps_scale)
    if mixes is not None:
        schedule = with_mixes(Path(path), schedule, mixes)
    preflight(path, schedule, stages)
    stage = next((s for s in stages if s.name == stage_name), None)
    if stage is None:
        raise OpusLMError(f"no stage {stage_name!r} in {path} (stages: {', '.join(s.name for s in stages)})")
    if not schedule.ablations:
        raise OpusLMError(f"{path} lists no ablations (a mapping of mix name -> sources under `ablations`)")
    seeds = seeds if seeds else [stage.data.seed]
    out = Path(schedule.out)
    start = stage_model(out, stage.start_from)
    if not (start / "opuslm.json").is_file():
        raise OpusLMError(f"the ablations of {stage.name} start from {stage.start_from}'s model, which is not at {start}: "
                          f"run `opuslm stages run {path}` first (it trains {stage.start_from}; the stages after it can be "
                          "stopped), or point the schedule's out at a folder where it has finished")
    spec = EvalSpec(eval_tasks or default_eval_tasks(stages, judge), eval_limit,
                    Path(corpus) if corpus else corpus_of(schedule), judge)
    check_eval_tasks(spec.tasks)
    judge_model = None if judge == "none" or "tts" not in spec.tasks else load_judge(judge)
    rows, planned = planned_runs(schedule, stages, stage, seeds)
    for row, seed, variant, run_dir in planned:
        row.runs.append(run_dir)
        if variant is not None:
            reused = (run_dir / "summary.json").is_file()
            say(f"{'reused' if reused else 'training'} {row.name} (seed {seed}): {variant.steps} steps of "
                f"{row.mix} -> {run_dir}")
            run_stage(variant, schedule.datasets, out, run_dir, progress, validation_sources=stage.data.sources,
                      tasks=schedule_tasks(schedule))
        evaluate(run_dir / "model" if variant is not None else start, run_dir / "eval", spec, judge_model, progress, say)
    folder = out / "ablations" / stage.name
    write_table(folder, stage, rows, seeds, spec)
    return folder


def planned_runs(schedule: ScheduleConfig, stages: list[StageConfig], stage: StageConfig, seeds: list[int]):
    """The rows, and every (row, seed, its stage with that data seed, its folder) the ablation trains or
    reuses; the start row has no seed and no stage. Folders are None while the starting model is missing
    (their key holds its hash)."""
    from opuslm.tokenize.identity import folder_hash
    from opuslm.train.stages import stage_model

    start = stage_model(Path(schedule.out), stage.start_from)
    start_hash = folder_hash(start) if (start / "opuslm.json").is_file() else None
    folder = Path(schedule.out) / "ablations" / stage.name
    rows, planned = rows_of(schedule, stages, stage), []
    for row in rows:
        if row.stage is None:
            planned.append((row, None, None, folder / f"{START}-{start_hash}" if start_hash else None))
            continue
        for seed in seeds:
            variant = row.stage.model_copy(update={"data": row.stage.data.model_copy(update={"seed": seed})})
            key = run_key(variant, start_hash, schedule.datasets, stage.data.sources) if start_hash else None
            planned.append((row, seed, variant, folder / f"{row.name}-seed{seed}-{key}" if key else None))
    return rows, planned


def corpus_of(schedule: ScheduleConfig) -> Path:
    """The corpus the schedule's token dataset was made from (its tokens.json records the manifest)."""
    from opuslm.tokenize.shards import TokenShards

    name = schedule.tokens or next(iter(schedule.datasets))
    manifest = Path(TokenShards(schedule.datasets[name]).info["manifest"])
    if not manifest.is_file():
        raise OpusLMError(f"the manifest the dataset {name} was tokenized from is not at {manifest}: pass --corpus")
    return manifest.parent


# ---- the table ----
def _read_run(run_dir: Path) -> tuple[dict, dict, dict]:
    """(metrics, per-utterance terms, final validation losses) of one run's folder."""
    from opuslm.eval.intervals import utterance_terms

    results = json.loads((run_dir / "eval" / "results.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "eval" / "hyps.jsonl").read_text().splitlines() if line.strip()]
    summary = run_dir / "summary.json"
    validation = json.loads(summary.read_text()).get("final_validation", {}) if summary.is_file() else {}
    return results["metrics"], utterance_terms(rows), validation


def table_numbers(rows: list[Row], baseline: str) -> dict:
    """Per row and metric, the Estimate over its runs; per row but the baseline, the paired difference
    against it; per pair of mixes, their paired difference. Metrics: those with per-utterance terms, the
    other numeric ones, and validation losses."""
    from opuslm.eval.intervals import over_runs, paired_difference
    from opuslm.eval.intervals import interval as ratio_interval

    read = {row.name: [_read_run(r) for r in row.runs] for row in rows}
    numbers = {}
    for row in rows:
        runs = read[row.name]
        estimates = {}
        for name in runs[0][1]:
            estimates[name] = ratio_interval([terms[name] for _, terms, _ in runs])
        for name, value in runs[0][0].items():
            if name not in estimates and isinstance(value, (int, float)) and not isinstance(value, bool):
                values = [m.get(name) for m, _, _ in runs]
                if all(isinstance(v, (int, float)) for v in values):
                    estimates[name] = over_runs(values)
        for task in runs[0][2]:
            estimates[f"validation_{task}"] = over_runs([v[task] for _, _, v in runs])
        numbers[row.name] = estimates
    def paired(a: str, b: str) -> dict:
        """b minus a, per metric both score per utterance."""
        return {name: paired_difference([t[name] for _, t, _ in read[a]], [t[name] for _, t, _ in read[b]])
                for name in read[b][0][1] if name in read[a][0][1]}

    differences = {row.name: paired(baseline, row.name) for row in rows if row.name != baseline and baseline in read}
    mixes = [row.name for row in rows if row.name not in (START, CONTINUED)]
    between = {f"{b} - {a}": paired(a, b) for i, a in enumerate(mixes) for b in mixes[i + 1:]}
    return {"numbers": numbers, "differences": differences, "between_mixes": between}


METRIC_ORDER = ("asr_wer_test", "asr_wer_dev", "tts_wer", "text_perplexity", "english_perplexity")


def _columns(numbers: dict) -> list[str]:
    names = {n for estimates in numbers.values() for n in estimates}
    wanted = [n for n in METRIC_ORDER if n in names]
    wanted += sorted(n for n in names if n.endswith("_accuracy") and n not in wanted)
    wanted += sorted(n for n in names if n.startswith("validation_"))
    return wanted


def _header(name: str) -> str:
    return f"{name} {'(lower better)' if any(k in name for k in LOWER_IS_BETTER) else '(higher better)'}"


def write_table(folder: Path, stage: StageConfig, rows: list[Row], seeds: list[int], spec: EvalSpec) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baseline = CONTINUED if any(r.name == CONTINUED for r in rows) else START
    computed = table_numbers(rows, baseline)
    numbers, differences = computed["numbers"], computed["differences"]
    columns = _columns(numbers)
    steps = {row.name: (row.stage.steps if row.stage else 0) for row in rows}
    lines = [f"# Ablation of stage {stage.name}", "",
             f"Seeds {', '.join(map(str, seeds))}; eval of {', '.join(spec.tasks)} on {spec.corpus}"
             + (f" (at most {spec.limit} utterances per task)" if spec.limit else "") + ". Cells: mean over seeds "
             f"[{int(100 * 0.95)}% interval]: a bootstrap over utterances and seeds where eval scores each utterance "
             "(WER, accuracies), over seeds alone for the others (perplexity, validation loss; no interval with one "
             "seed).", "",
             "| row | data | steps | " + " | ".join(_header(c) for c in columns) + " |",
             "|" + " --- |" * (3 + len(columns))]
    for row in rows:
        cells = [numbers[row.name][c].cell() if c in numbers[row.name] else "" for c in columns]
        lines.append(f"| {row.name} | {row.mix} | {steps[row.name]} | " + " | ".join(cells) + " |")
    for title, table in ((f"Paired differences against {baseline} on the same utterances (row minus {baseline}; * "
                          "where the interval excludes 0):", differences),
                         ("Paired differences between the mixes (* where the interval excludes 0):",
                          computed["between_mixes"])):
        paired = [c for c in columns if any(c in d for d in table.values())]
        if not paired:
            continue
        lines += ["", title, "", "| row | " + " | ".join(paired) + " |", "|" + " --- |" * (1 + len(paired))]
        for name, diffs in table.items():
            lines.append(f"| {name} | " + " | ".join(
                (diffs[c].cell() + (" *" if diffs[c].excludes(0.0) else "")) if c in diffs else "" for c in paired) + " |")
    (folder / "ablation.md").write_text("\n".join(lines) + "\n")
    write_json(folder / "ablation.json", {
        "stage": stage.name, "seeds": seeds, "eval": {"tasks": spec.tasks, "limit": spec.limit, "corpus": str(spec.corpus),
                                                      "judge": spec.judge},
        "baseline": baseline,
        "between_mixes": {pair: {n: vars(e) for n, e in diffs.items()} for pair, diffs in computed["between_mixes"].items()},
        "rows": [{"name": r.name, "data": r.mix, "steps": steps[r.name], "runs": [str(p) for p in r.runs],
                  "definition": definition(r.stage) if r.stage else None,
                  "metrics": {n: vars(e) for n, e in numbers[r.name].items()},
                  "difference": {n: vars(e) for n, e in differences.get(r.name, {}).items()}} for r in rows]})
    shown = [c for c in columns if not c.startswith("validation_")][:4] or columns[:4]
    figure, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.6), squeeze=False)
    for axis, column in zip(axes[0], shown):
        names = [r.name for r in rows if column in numbers[r.name]]
        estimates = [numbers[n][column] for n in names]
        errors = [[e.mean - (e.low if e.low is not None else e.mean) for e in estimates],
                  [(e.high if e.high is not None else e.mean) - e.mean for e in estimates]]
        axis.bar(range(len(names)), [e.mean for e in estimates], yerr=errors, capsize=4, color="#4c72b0")
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axis.set_title(_header(column), fontsize=9)
    figure.suptitle(f"{stage.name}: data mix ablation (95% intervals)")
    figure.tight_layout()
    figure.savefig(folder / "ablation.png", dpi=120)
    plt.close(figure)
