"""The trainer's components on their own: the run log and its summary, the checkpointer, the backend
registry. (A whole stage, resume bit for bit and ranks are in test_training.py.)"""

import json

import pytest
import torch

from opuslm.backends.hf import HFTraining
from opuslm.errors import OpusLMError
from opuslm.train import backend as backends
from opuslm.train.checkpoint import Checkpointer, complete
from opuslm.train.distributed import World
from opuslm.train.run_log import RunLog, summarize


def step_record(step: int, loss: float, **extra) -> dict:
    return {"step": step, "loss": loss, "lr": 1e-3, "grad_norm": 1.0, "frames_per_s": 100.0, "packing": 0.5,
            "per_stream": {"stream0": loss}, "per_modality": {"text": loss}, "examples": 2, "frames": 10 * step,
            "tokens": 20, **extra}


def test_the_log_keeps_every_step_and_the_summary_reads_it_back(tmp_path):
    with RunLog(tmp_path, "pretrain", steps=3, log_every=2, progress=False).open(0) as log:
        log.write({"step": 0, "validation": {"asr": 5.0}})
        log.write(step_record(1, 4.0))
        log.write(step_record(2, 3.0, validation={"asr": 2.5}))
        log.write(step_record(3, 2.0))
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 2, 3]
    assert summarize(tmp_path / "log.jsonl") == {
        "examples": 6, "frames": 60, "tokens": 60, "first_loss": 4.0, "final_loss": 2.0,
        "first_validation": {"asr": 5.0}, "final_validation": {"asr": 2.5}, "packing": 0.5}


def test_tensorboard_gets_every_log_every_step_and_every_validation(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLog(tmp_path, "s", steps=7, log_every=3, progress=False).open(0) as log:
        for step in range(1, 8):
            log.write(step_record(step, float(step), **({"validation": {"asr": 1.0}} if step == 5 else {})))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [3, 5, 6]
    assert [e.step for e in events.Scalars("validation/asr")] == [5]


@pytest.mark.parametrize("checkpoint_step, kept", [(2, [0, 1, 2]), (None, [])])
def test_resume_cuts_the_log_at_the_checkpoint_or_starts_it_over(tmp_path, checkpoint_step, kept):
    log = RunLog(tmp_path, "s", steps=4, progress=False)
    with log.open(0):
        for step in range(4):
            log.write(step_record(step, 1.0) if step else {"step": 0, "validation": {}})
    log.resume_at(checkpoint_step)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == kept


def test_other_ranks_write_nothing(tmp_path):
    with RunLog(tmp_path, "s", steps=1, main=False, progress=False).open(0) as log:
        log.write(step_record(1, 1.0))
    assert not (tmp_path / "log.jsonl").exists() and not (tmp_path / "tensorboard").exists()


class Stream:
    """What a checkpoint needs of a batch stream: its state, and restoring it."""

    def __init__(self):
        self.position = 0

    def state(self) -> dict:
        return {"position": self.position}

    def load_state(self, state: dict) -> None:
        self.position = state["position"]


def training_parts(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    return model, optimizer, scheduler, Stream()


def train(model, optimizer, scheduler, stream, steps: int) -> None:
    for _ in range(steps):
        model(torch.randn(4, 3)).square().sum().backward()  # draws from the RNG a checkpoint restores
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        stream.position += 1


def test_checkpoints_are_due_on_their_cadence_and_at_the_end_and_only_keep_last_stay(tmp_path):
    checkpoints = Checkpointer(tmp_path, HFTraining(None, World()), every=2, keep_last=2, final_step=5)
    assert [step for step in range(1, 6) if checkpoints.due(step)] == [2, 4, 5]
    parts = training_parts(0)
    for step in range(1, 6):
        train(*parts, 1)
        if checkpoints.due(step):
            checkpoints.save(step, *parts, {"vocab_hash": "h"})
    assert [path.name for path in complete(tmp_path)] == ["step-00000004", "step-00000005"]


def test_a_resumed_run_continues_exactly_as_the_uninterrupted_one(tmp_path):
    straight = training_parts(0)
    train(*straight, 6)

    first = training_parts(0)
    train(*first, 3)
    Checkpointer(tmp_path, HFTraining(None, World()), every=3, keep_last=1, final_step=6).save(3, *first, {"vocab_hash": "h"})
    resumed = training_parts(1)  # other weights, optimiser moments and RNG, until restored
    checkpoints = Checkpointer(tmp_path, HFTraining(None, World()), every=3, keep_last=1, final_step=6)
    assert checkpoints.resume(*resumed, "h") == 3 and resumed[3].position == 3
    train(*resumed, 3)
    assert all(torch.equal(a, b) for a, b in zip(straight[0].state_dict().values(), resumed[0].state_dict().values()))
    assert resumed[2].state_dict() == straight[2].state_dict()
    with pytest.raises(OpusLMError, match="joint vocabulary h, this run uses other"):
        checkpoints.resume(*training_parts(2), "other")


def test_no_checkpoint_resumes_nothing(tmp_path):
    checkpoints = Checkpointer(tmp_path / "none", HFTraining(None, World()), every=1, keep_last=1, final_step=1)
    assert checkpoints.resume(*training_parts(0), "h") is None


def test_a_stage_names_the_missing_backend_and_a_registered_one_is_built(monkeypatch):
    class Stage:
        parallel = "megatron"

    monkeypatch.setattr(backends, "_FACTORIES", {})
    with pytest.raises(OpusLMError, match=r"no training backend 'megatron' is registered: call `opuslm.backends.register_backends\(\)`"):
        backends.training_backend(Stage(), World())
    backends.register_training_backend("megatron", lambda stage, world: ("built", stage.parallel))
    assert backends.training_backend(Stage(), World()) == ("built", "megatron")
