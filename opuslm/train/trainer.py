"""One training stage: a thin loop over components that each have one job. The backend loads and
wraps the model (`backend.py`), `data.py` builds the batch streams, the `Checkpointer` takes and
restores checkpoints, the `RunLog` records every step and `summarize` reads it back.

A step is `grad_accum` micro-batches. Their loss is normalised by the loss-carrying frames of the
whole step on all ranks, so one step equals one big batch, whatever the accumulation or the number of
ranks. Checkpoints are taken between steps, where the accumulation position is always zero.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from opuslm.errors import OpusLMError
from opuslm.json_files import write_json
from opuslm.model.loss import next_frame_mask
from opuslm.tasks import TaskTable, save_trained_labels
from opuslm.train.backend import training_backend
from opuslm.train.checkpoint import Checkpointer
from opuslm.train.config import StageConfig
from opuslm.train.data import stage_data
from opuslm.train.distributed import World, init_world
from opuslm.train.preflight import definition
from opuslm.train.run_log import RunLog, summarize
from opuslm.train.schedule import lr_factor
from opuslm.train.tuning import add_stage_lora
from opuslm.vocab import PAD_ID


class LossForward(nn.Module):
    """The model's loss as a `forward`, so DDP and FSDP2 hooks see every training call."""

    def __init__(self, model, objective: str = "next_frame"):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, frames, loss_mask, position_ids, document_ids, heard=None, features=None):
        if self.objective == "heard_ctc":
            out = self.model.adapter_ctc_loss(heard, features)
        else:
            out = self.model.loss(frames, loss_mask, position_ids, document_ids, heard, features)
        return out.weighted_sum, out


def loss_frames(batch) -> int:
    """What a batch's loss sum is divided by, in training and validation alike: the frames that carry a
    next-frame loss. A heard_ctc stage's CTC sum is so per frame of its loss region too (about one a
    transcript token), not per heard frame, which would make its validation loss several times smaller."""
    return int(next_frame_mask(batch.loss_mask, batch.document_ids).any(1).sum())


def parameter_groups(model, weight_decay: float, lr_scale: dict[str, float] | None = None) -> list[dict]:
    """Weight decay on matrices only: not on embeddings, the head, norms, biases or stream offsets; frozen
    parameters are left out. Each group carries its `lr_scale`: 1, or with `lr_scale` ({LR group: factor},
    `opuslm.train.tuning.LR_GROUPS`) its group's factor, by which the trainer multiplies the peak LR (the
    schedule's shape is the same for all)."""
    from opuslm.train.tuning import lr_groups

    exempt = {id(p) for p in model.table_parameters()} | {id(model.stream_offsets)}
    group_of = lr_groups(model) if lr_scale else {}
    groups: dict[tuple[bool, float], list] = {(True, 1.0): [], (False, 1.0): []}  # both, as before lr_scale
    for param in model.parameters():
        if param.requires_grad:
            decays = param.ndim >= 2 and id(param) not in exempt
            scale = (lr_scale or {}).get(group_of.get(id(param)), 1.0)
            groups.setdefault((decays, scale), []).append(param)
    ordered = sorted(groups.items(), key=lambda item: (item[0][1] != 1.0, not item[0][0]))  # unscaled, decayed first
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0, "lr_scale": scale}
            for (decays, scale), params in ordered]


def optimizer_and_schedule(model, stage, peak_lr: float):
    """AdamW over `parameter_groups` (each group peaking at `peak_lr` times its `lr_scale`) and the
    stage's LR schedule, which multiplies every group's peak by the same factor at each step."""
    optimizer = torch.optim.AdamW(parameter_groups(model, stage.optim.weight_decay, stage.optim.lr_scale),
                                  lr=peak_lr, betas=stage.optim.betas, eps=stage.optim.eps)
    for group in optimizer.param_groups:  # before the scheduler, which keeps each group's as its peak
        group["lr"] = peak_lr * group["lr_scale"]
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, stage.steps, stage.lr))


class StageRun:
    def __init__(self, stage: StageConfig, datasets: dict[str, str], start: Path, run_dir: Path,
                 peak_lr: float, progress: bool = True, validation_sources=None, tasks: TaskTable | None = None):
        from opuslm.model.multistream import model_identity, model_tokenizers
        from opuslm.tokenize.text import load_text_tokenizer

        self.stage, self.run_dir, self.start, self.peak_lr = stage, Path(run_dir), Path(start), peak_lr
        self.world: World = init_world()
        self.tokenizers = model_tokenizers(start)
        self.tasks = TaskTable.of_model(start).merged(tasks or TaskTable())
        self.backend = training_backend(stage, self.world)
        self.model = self.backend.load(start)
        self.data = stage_data(stage, datasets, self.model, load_text_tokenizer(self.tokenizers.text), model_identity(start),
                               *self.backend.data_split(), validation_sources, self.tasks)  # tensor-parallel peers share a batch
        self.forward = self.backend.wrap(LossForward(self.model, stage.objective), self.model)
        # after wrapping: FSDP2 replaces the parameters with sharded ones, which the optimiser must hold
        self.optimizer, self.scheduler = optimizer_and_schedule(self.model, stage, peak_lr)
        self.checkpoints = Checkpointer(self.run_dir / "checkpoints", self.backend, stage.checkpoint_every,
                                        stage.keep_last, stage.steps)
        self.log = RunLog(self.run_dir, stage.name, stage.steps, stage.log_every, self.world.main, progress)
        resumed = self.checkpoints.resume(self.model, self.optimizer, self.scheduler, self.data.train, self.model.vocab.hash)
        self.log.resume_at(resumed)
        self.step = resumed or 0
        use_bf16 = stage.bf16 == "on" or (stage.bf16 == "auto" and self.world.device.type == "cuda")
        self.autocast = (lambda: torch.autocast(self.world.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext

    # ---- the loop ----
    def run(self) -> dict:
        started = time.time()
        with self.log.open(self.step):
            if self.step == 0:  # where the stage starts, for the summary's first -> final (every rank validates)
                self.log.write({"step": 0, "validation": self.validate()})
            while self.step < self.stage.steps:
                record = self._timed_step()
                if self.step % self.stage.validation.every == 0 or self.step == self.stage.steps:
                    record["validation"] = self.validate()
                self.log.write(record)
                if self.checkpoints.due(self.step):
                    self.checkpoints.save(self.step, self.model, self.optimizer, self.scheduler, self.data.train,
                                          {"vocab_hash": self.model.vocab.hash, "peak_lr": self.peak_lr,
                                           "stage": self.stage.model_dump(by_alias=True),
                                           "definition": definition(self.stage)})
        return self._finish(time.time() - started)

    # ---- one step ----
    def _timed_step(self) -> dict:
        tick = time.perf_counter()
        record = self._train_step()
        seconds = time.perf_counter() - tick
        if not math.isfinite(record["loss"]):
            raise OpusLMError(f"stage {self.stage.name}: the loss became {record['loss']} at step {self.step}; "
                              "lower the LR or check the data (the last checkpoint is intact)")
        return {**record, "frames_per_s": self.world.all_sum(record["frames"]) / seconds,
                "tokens_per_s": self.world.all_sum(record["tokens"]) / seconds}

    def _train_step(self) -> dict:
        batches = [self.data.train.next_batch() for _ in range(self.stage.grad_accum)]
        frames_total = self.world.all_sum(float(sum(loss_frames(b) for b in batches)))
        if frames_total == 0:
            raise OpusLMError(f"stage {self.stage.name}: a step with no loss-carrying frames; check the data mixture")
        weighted, per_stream, per_modality = 0.0, {}, {}
        self.model.train()
        for index, batch in enumerate(batches):
            sync = index == len(batches) - 1 or not hasattr(self.forward, "no_sync")
            with (nullcontext() if sync else self.forward.no_sync()), self.autocast():
                weighted_sum, out = self.forward(*batch.model_inputs(self.world.device))
                # gradients are averaged over ranks; the loss is the sum over all ranks / all frames
                (weighted_sum * self.world.size / frames_total).backward()
            weighted += float(weighted_sum.detach())
            for name, value in out.per_stream.items():
                per_stream[name] = per_stream.get(name, 0.0) + value / len(batches)
            for name, value in out.per_modality.items():
                per_modality[name] = per_modality.get(name, 0.0) + value / len(batches)
        self.backend.finish_gradients(self.forward)
        grad_norm = self.backend.clip(self.model, self.stage.optim.clip)
        lr = self.peak_lr * lr_factor(self.scheduler.last_epoch, self.stage.steps, self.stage.lr)  # the schedule's
        self.optimizer.step()
        self.scheduler.step()
        self.backend.zero_gradients(self.forward, self.optimizer)
        self.step += 1
        real = sum(b.real_frames for b in batches)
        cells = sum(int((b.frames != PAD_ID).sum()) for b in batches)
        capacity = sum(b.frames.shape[0] * b.frames.shape[2] for b in batches)
        return {"step": self.step, "loss": self.world.all_sum(weighted) / frames_total, "lr": lr,
                "grad_norm": float(grad_norm), "per_stream": per_stream, "per_modality": per_modality,
                "examples": sum(b.examples for b in batches), "frames": real, "tokens": cells,
                "packing": real / capacity}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        losses = {}
        for name, batches in self.data.validation.items():
            total = frames = 0.0
            for b in batches:
                with self.autocast():
                    _, out = self.forward(*b.model_inputs(self.world.device))
                total += float(out.weighted_sum)
                frames += loss_frames(b)
            losses[name] = self.world.all_sum(total) / max(self.world.all_sum(frames), 1)
        return losses

    def _finish(self, seconds: float) -> dict:
        """Save the stage's model folder (with its tokenizers) and summary; returns the summary."""
        from opuslm.model.multistream import OpusLM

        state = self.backend.opuslm_state(self.model)
        summary = {}
        if self.world.main:
            final = OpusLM.from_pretrained(self.start)
            add_stage_lora(final, self.stage.tune)  # the trained state holds the adapters
            final.load_state_dict(state)
            final.config.paced_tts |= any(s.config.task == "tts_paced" for s in self.data.train.sources)
            final.save_pretrained(self.run_dir / "model", self.tokenizers)
            self.tasks.save(self.run_dir / "model")
            save_trained_labels(self.run_dir / "model", self.start, self.data.train.trained_labels())
            summary = {"stage": self.stage.name, "steps": self.step, "from": str(self.start), **summarize(self.log.path),
                       "final_lr": self.peak_lr * lr_factor(self.stage.steps, self.stage.steps, self.stage.lr),
                       "peak_lr": self.peak_lr, "definition": definition(self.stage),
                       "seconds_this_run": round(seconds, 1), "data": self.data.train.describe(),
                       "validation_notes": self.data.notes}
            write_json(self.run_dir / "summary.json", summary, indent=1)
        self.world.barrier()
        return summary
