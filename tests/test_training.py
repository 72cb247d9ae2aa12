"""Training: LR schedules, config errors, atomic checkpoints, a 3-stage schedule, exact resume after
SIGKILL, and DDP / FSDP2 under torchrun against a single process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from opuslm.errors import OpusLMError
from opuslm.train import checkpoint
from opuslm.train.config import LRConfig, load_schedule
from opuslm.train.schedule import lr_factor

STAGES = Path(__file__).parent.parent / "stages"


def test_lr_schedules():
    cosine = LRConfig(schedule="cosine", warmup=2, floor=0.2)
    assert [round(lr_factor(s, 10, cosine), 4) for s in (0, 1, 2, 10)] == [0.5, 1.0, 1.0, 0.2]
    assert lr_factor(6, 10, cosine) == pytest.approx(0.2 + 0.8 * 0.5)  # half-way through the cosine
    linear = LRConfig(schedule="linear_to_zero")
    assert [lr_factor(s, 4, linear) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    wsd = LRConfig(schedule="wsd", decay_fraction=0.5, floor=0.0)
    assert [lr_factor(s, 8, wsd) for s in range(9)] == [1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25, 0.0]


def write_schedule(folder: Path, shards: Path, out: Path, steps=(4, 2, 2), accum=2, **init) -> Path:
    # the first 24 utterances of the tiny corpus are all train: validate on train
    small = {"data": {"row_frames": 512, "rows": 2}, "validation": {"every": 2, "batches": 1, "split": "train"},
             "checkpoint_every": 2}
    first = {"grad_accum": accum, "lr": {"peak": 1e-3, "warmup": 1}}
    schedule = {
        "out": str(out), "tokens": "speech",
        "datasets": {"speech": str(shards), "speech_hq": str(shards), "text": str(shards)},
        "init": {"preset": "tiny", **init},
        "stages": [{"file": str(STAGES / f"{name}.yaml"), "overrides": {**small, "steps": count, **extra}}
                   for name, count, extra in zip(("pretrain", "anneal", "instruct"), steps,
                                                 (first, {}, {"lr": {"warmup": 0}}))],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "schedule.yaml"
    path.write_text(yaml.safe_dump(schedule))
    return path


def test_unknown_or_mistyped_keys_fail_naming_key_and_file(tmp_path, tiny_shards):
    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule = yaml.safe_load(path.read_text())
    schedule["stages"][0]["overrides"]["lr"]["peek"] = 1.0
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match=r"pretrain.yaml.*lr.peek: Extra inputs are not permitted"):
        load_schedule(path)
    schedule["stages"][0]["overrides"]["lr"] = {"peak": "fast"}
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match=r"lr.peak"):
        load_schedule(path)
    schedule["stages"][0]["overrides"]["lr"] = {}
    schedule["stages"] = schedule["stages"][1:]  # anneal now starts from a stage that is not there
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match=r"anneal.yaml .*stage anneal: from: 'pretrain' is not an earlier stage of .*schedule.yaml"):
        load_schedule(path)


@pytest.mark.parametrize("override, named", [
    ({"lr": {"peak": -1e-3}}, r"lr.peak: Value error, the peak LR must be greater than 0 and at most 0.1 \(or 'previous'\), got -0.001"),
    ({"lr": {"peak": 0}}, r"lr.peak: Value error, the peak LR must be greater than 0"),
    ({"optim": {"clip": -1}}, r"optim.clip: Input should be greater than 0"),
    ({"optim": {"weight_decay": -0.1}}, r"optim.weight_decay: Input should be greater than or equal to 0"),
])
def test_a_bad_value_in_the_last_stage_fails_before_any_work_naming_key_and_file(tmp_path, tiny_shards, override, named):
    from opuslm.cli.main import main

    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule = yaml.safe_load(path.read_text())
    schedule["stages"][2]["overrides"].update(override)
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match=rf"instruct.yaml \(with overrides from {path}\): {named}"):
        load_schedule(path)
    assert main(["stages", "check", str(path)]) == 2
    assert main(["stages", "run", str(path), "--quiet"]) == 2
    assert not (tmp_path / "out").exists()  # not even the init model was built


def test_a_missing_dataset_or_llm_fails_before_any_work(tmp_path, tiny_shards):
    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule = yaml.safe_load(path.read_text())
    schedule["datasets"]["speech_hq"] = str(tmp_path / "nowhere")  # read by the anneal stage only
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match=rf"anneal.yaml .*stage anneal, data.sources \w+: datasets.speech_hq in "
                                          rf"{path}: {tmp_path / 'nowhere'} does not exist"):
        load_schedule(path)
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(OpusLMError, match="nowhere is an empty folder; run `opuslm tokenize` into it first"):
        load_schedule(path)
    schedule["datasets"]["speech_hq"] = str(tiny_shards)
    schedule["init"] = {"llm": str(tmp_path / "no_llm")}
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match="init.llm .*no_llm is not a local HF model folder"):
        load_schedule(path)
    schedule["init"] = {"preset": "huge"}
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match="unknown preset 'huge'; presets: tiny"):
        load_schedule(path)


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    checkpoint.save(folder, 2, {"w": torch.ones(3)}, {"vocab_hash": "v", "data": {}}, keep_last=2)

    def killed(src, dst):
        raise KeyboardInterrupt("killed while renaming")

    monkeypatch.setattr(checkpoint.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(folder, 4, {"w": torch.zeros(3)}, {"vocab_hash": "v", "data": {}}, keep_last=2)
    monkeypatch.undo()
    assert [p.name for p in checkpoint.complete(folder)] == ["step-00000002"]
    state, info = checkpoint.load(checkpoint.latest(folder), "v")
    assert info["step"] == 2 and torch.equal(state["w"], torch.ones(3))
    with pytest.raises(OpusLMError, match="joint vocabulary v, this run uses w"):
        checkpoint.load(checkpoint.latest(folder), "w")
    for step in (4, 6, 8):  # keep_last prunes the oldest
        checkpoint.save(folder, step, {}, {"vocab_hash": "v", "data": {}}, keep_last=2)
    assert [p.name for p in checkpoint.complete(folder)] == ["step-00000006", "step-00000008"]


@pytest.fixture(scope="module")
def three_stages(tmp_path_factory, tiny_shards):
    from opuslm.train.stages import run_schedule

    folder = tmp_path_factory.mktemp("schedule")
    path = write_schedule(folder, tiny_shards, folder / "out")
    schedule = yaml.safe_load(path.read_text())
    schedule["ablations"] = {
        "with_text": [{"name": "asr", "dataset": "speech_hq", "task": "asr"},
                      {"name": "text_lm", "dataset": "text", "task": "text_lm"}],
        "speech_only": [{"name": "asr", "dataset": "speech_hq", "task": "asr"}],
    }
    path.write_text(yaml.safe_dump(schedule))
    return path, run_schedule(path, progress=False)


def test_three_stages_run_and_each_starts_where_the_previous_ended(three_stages):
    from opuslm.train.stages import run_schedule

    path, (pretrain, anneal, instruct) = three_stages
    out = path.parent / "out"
    assert (pretrain["steps"], anneal["steps"], instruct["steps"]) == (4, 2, 2)
    assert Path(anneal["from"]) == out / "pretrain" / "model" and Path(instruct["from"]) == out / "anneal" / "model"
    # anneal's step-0 validation uses the same sets on the weights pretraining ended with
    for task in ("asr", "tts", "text_lm"):
        assert anneal["first_validation"][task] == pytest.approx(pretrain["final_validation"][task], rel=1e-6)
    anneal_log = [json.loads(line) for line in (out / "anneal" / "log.jsonl").read_text().splitlines()]
    assert anneal_log[1]["lr"] == pytest.approx(pretrain["final_lr"])  # linear to zero from where pretraining ended
    assert pretrain["final_lr"] == pytest.approx(1e-3 * 0.3)
    assert set(instruct["final_validation"]) >= {"asr", "ser", "sgc", "text_lm"}
    assert "| pretrain | init | 4 |" in (out / "summary.md").read_text()
    again = run_schedule(path, progress=False)  # finished stages are skipped, not redone
    assert again == [pretrain, anneal, instruct]


def test_an_anneal_ablation_trains_each_mix_and_seed_once_and_tables_their_evaluations(three_stages):
    from opuslm.tokenize.identity import folder_hash
    from opuslm.train.ablation import ablate

    path, (pretrain, anneal, _) = three_stages
    said = []
    options = dict(seeds=[0, 1], eval_tasks=["asr"], eval_limit=3, judge="none", progress=False, say=said.append)
    folder = ablate(path, "anneal", **options)
    assert sum(line.startswith("training ") for line in said) == 6  # continued and two mixes, two seeds each
    table = json.loads((folder / "ablation.json").read_text())
    rows = {row["name"]: row for row in table["rows"]}
    assert list(rows)[:2] == ["start", "continued"] and table["baseline"] == "continued"
    assert sorted(list(rows)[2:]) == ["speech_only", "with_text"]  # in the schedule's order
    # the baselines are what they claim: pretraining's model as it is, and its mix for anneal's steps
    out = path.parent / "out"
    assert rows["start"]["runs"] == [str(folder / f"start-{folder_hash(out / 'pretrain' / 'model')}")]
    continued = rows["continued"]["definition"]
    assert continued["data"]["sources"] == pretrain["definition"]["data"]["sources"] and continued["steps"] == 2
    assert (continued["lr"]["schedule"], continued["lr"]["peak"]) == ("constant", "previous")
    assert json.loads((Path(rows["continued"]["runs"][0]) / "summary.json").read_text())["peak_lr"] == pretrain["final_lr"]
    for row in rows.values():  # the table's numbers are the per-run results.json numbers
        runs = [json.loads((Path(run) / "eval" / "results.json").read_text())["metrics"] for run in row["runs"]]
        for metric in ("asr_wer_test", "asr_wer_dev"):
            assert row["metrics"][metric]["mean"] == pytest.approx(sum(r[metric] for r in runs) / len(runs))
        if row["name"] != "start":  # every mix validates on anneal's own sources
            assert set(row["metrics"]) >= {"validation_asr", "validation_tts", "validation_text_lm"}
    assert (folder / "ablation.png").stat().st_size > 1000
    md = (folder / "ablation.md").read_text()
    assert "| with_text | asr x1 (speech_hq), text_lm x1 (text) | 2 |" in md and "Paired differences against continued" in md
    [pair] = table["between_mixes"]  # the two mixes, paired on the same utterances
    first, second = pair.split(" - ")[::-1]
    assert table["between_mixes"][pair]["asr_wer_test"]["mean"] == pytest.approx(
        rows[second]["metrics"]["asr_wer_test"]["mean"] - rows[first]["metrics"]["asr_wer_test"]["mean"])
    # unchanged: every run and evaluation reused; one key of one mix changed: that mix alone trains anew
    said.clear()
    ablate(path, "anneal", **options)
    assert not [line for line in said if line.startswith(("training", "evaluating"))]
    schedule = yaml.safe_load(path.read_text())
    schedule["ablations"]["with_text"][1]["weight"] = 2.0
    path.write_text(yaml.safe_dump(schedule))
    said.clear()
    ablate(path, "anneal", **options)
    assert sorted(line.split(":")[0] for line in said if line.startswith("training")) == [
        "training with_text (seed 0)", "training with_text (seed 1)"]
    assert "text_lm x2 (text)" in (folder / "ablation.md").read_text()


def run_cli(args, env_extra=None, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "opuslm", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def final_weights(out: Path, stage="pretrain") -> dict:
    from safetensors.torch import load_file

    return load_file(out / stage / "model" / "model.safetensors")


def loss_log(out: Path, stage="pretrain") -> list[tuple]:
    lines = [json.loads(line) for line in (out / stage / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("grad_norm"), r.get("lr"), json.dumps(r.get("per_stream")),
             json.dumps(r.get("validation"))) for r in lines]


@pytest.mark.parametrize("lines_at_kill, checkpoint_every", [(5, 2), (3, 100)])
def test_a_run_killed_at_any_step_resumes_bit_identical(tmp_path, tiny_shards, lines_at_kill, checkpoint_every):
    """SIGKILL a real process mid-run (grad accumulation 2), past a checkpoint or before the first one,
    resume, and compare with an uninterrupted run: the same weights bit for bit and the same loss log."""
    straight = write_schedule(tmp_path / "a", tiny_shards, tmp_path / "a" / "out", steps=(6,))
    killed = write_schedule(tmp_path / "b", tiny_shards, tmp_path / "b" / "out", steps=(6,))
    schedule = yaml.safe_load(killed.read_text())
    schedule["stages"][0]["overrides"]["checkpoint_every"] = checkpoint_every
    killed.write_text(yaml.safe_dump(schedule))
    assert run_cli(["stages", "run", str(straight), "--quiet"]).wait(timeout=600) == 0
    process = run_cli(["stages", "run", str(killed), "--quiet"])
    log = tmp_path / "b" / "out" / "pretrain" / "log.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if log.is_file() and sum(1 for _ in log.open()) >= lines_at_kill:  # step-0 validation + steps
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "b" / "out" / "pretrain" / "summary.json").exists()
    assert bool(checkpoint.complete(tmp_path / "b" / "out" / "pretrain" / "checkpoints")) == (checkpoint_every == 2)
    resumed = run_cli(["stages", "run", str(killed), "--quiet"])
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    a, b = final_weights(tmp_path / "a" / "out"), final_weights(tmp_path / "b" / "out")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loss_log(tmp_path / "a" / "out") == loss_log(tmp_path / "b" / "out")


@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_two_gloo_ranks_match_a_single_process(tmp_path, tiny_shards, mode):
    """Same global batch (rows split over ranks), same steps: weights agree within 1e-5."""
    single = write_schedule(tmp_path / "one", tiny_shards, tmp_path / "one" / "out", steps=(3,))
    double = write_schedule(tmp_path / "two", tiny_shards, tmp_path / "two" / "out", steps=(3,))
    schedule = yaml.safe_load(double.read_text())
    schedule["stages"][0]["overrides"]["parallel"] = mode
    double.write_text(yaml.safe_dump(schedule))
    assert run_cli(["stages", "run", str(single), "--quiet"]).wait(timeout=600) == 0
    torchrun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(29500 + os.getpid() % 1000),
         "-m", "opuslm", "stages", "run", str(double), "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=600)
    assert torchrun.returncode == 0, torchrun.stdout[-3000:] + torchrun.stderr[-3000:]
    a, b = final_weights(tmp_path / "one" / "out"), final_weights(tmp_path / "two" / "out")
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    losses_a = [r[1] for r in loss_log(tmp_path / "one" / "out") if r[1] is not None]
    losses_b = [r[1] for r in loss_log(tmp_path / "two" / "out") if r[1] is not None]
    assert losses_a == pytest.approx(losses_b, rel=1e-5)
