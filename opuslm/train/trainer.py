"""One training stage: a thin loop that composes the model, the packed loader, the optimiser and LR
schedule, checkpoints and logging.

A step is `grad_accum` micro-batches. Their loss is normalised by the loss-carrying frames of the
whole step on all ranks, so one step equals one big batch, whatever the accumulation or the number of
ranks. Checkpoints are taken between steps, where the accumulation position is always zero.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from opuslm.errors import OpusLMError
from opuslm.model.loss import next_frame_mask
from opuslm.train import checkpoint
from opuslm.train.backend import training_backend
from opuslm.train.config import DataConfig, StageConfig
from opuslm.train.distributed import World, init_world
from opuslm.train.schedule import lr_factor
from opuslm.vocab import PAD_ID


class LossForward(nn.Module):
    """The model's loss as a `forward`, so DDP and FSDP2 hooks see every training call."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, frames, loss_mask, position_ids, document_ids, heard=None):
        out = self.model.loss(frames, loss_mask, position_ids, document_ids, heard)
        return out.weighted_sum, out


def parameter_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on embeddings, the head, norms, biases or stream offsets."""
    exempt = {id(p) for p in model.table_parameters()} | {id(model.stream_offsets)}
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim < 2 or id(param) in exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def frame_rate_of(datasets: dict[str, str], sources) -> float:
    from opuslm.data.loader import text_dataset_file
    from opuslm.tokenize.shards import TokenShards

    for source in sources:
        path = Path(datasets[source.dataset])
        if text_dataset_file(path, source.split) is None:
            return float(TokenShards(path).info["frame_rate"])
    return 25.0  # text-only mixtures never crop a speaker prompt


class StageRun:
    def __init__(self, stage: StageConfig, datasets: dict[str, str], start: Path, run_dir: Path,
                 peak_lr: float, progress: bool = True, validation_sources=None):
        from opuslm.data.loader import PackedLoader
        from opuslm.model.multistream import model_identity, model_tokenizers
        from opuslm.templates import TemplateBuilder, prompt_frames
        from opuslm.tokenize.text import load_text_tokenizer

        self.stage, self.run_dir, self.start, self.progress = stage, Path(run_dir), Path(start), progress
        self.world: World = init_world()
        self.tokenizers = model_tokenizers(start)
        self.backend = training_backend(stage, self.world)
        self.model = self.backend.load(start)
        builder = TemplateBuilder(self.model.vocab, load_text_tokenizer(self.tokenizers.text), max(self.model.delays),
                                  prompt_frames=prompt_frames(frame_rate_of(datasets, stage.data.sources)))
        self.data_rank, self.data_size = self.backend.data_split()  # tensor-parallel peers share a batch
        self.identity = model_identity(start)
        self.loader = PackedLoader(stage.data, datasets, builder, self.model.delays, self.data_rank, self.data_size,
                                   tokenizers=self.identity)
        self.validation, self.validation_notes = self._validation_sets(
            datasets, builder, validation_sources or stage.data.sources)
        self.forward = self.backend.wrap(LossForward(self.model), self.model)
        # after wrapping: FSDP2 replaces the parameters with sharded ones, which the optimiser must hold
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, stage.optim.weight_decay), lr=peak_lr,
                                           betas=stage.optim.betas, eps=stage.optim.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, stage.steps, stage.lr))
        self.peak_lr = peak_lr
        self.step = 0
        self.log_path = self.run_dir / "log.jsonl"
        self.checkpoints = self.run_dir / "checkpoints"
        self._resume()
        use_bf16 = stage.bf16 == "on" or (stage.bf16 == "auto" and self.world.device.type == "cuda")
        self.autocast = (lambda: torch.autocast(self.world.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext

    # ---- setup ----
    def _validation_sets(self, datasets, builder, sources):
        from opuslm.data.loader import PackedLoader

        sets, notes = {}, []
        for source in sources:
            config = DataConfig(sources=[source], row_frames=self.stage.data.row_frames, rows=self.stage.data.rows,
                                loss_region=self.stage.data.loss_region, seed=self.stage.data.seed)
            try:
                loader = PackedLoader(config, datasets, builder, self.model.delays, self.data_rank, self.data_size,
                                      split=self.stage.validation.split, tokenizers=self.identity)
            except OpusLMError as error:
                notes.append(f"{source.name}: no validation ({error})")
                continue
            sets[source.name] = [loader.next_batch() for _ in range(self.stage.validation.batches)]
        return sets, notes

    def _resume(self) -> None:
        found = checkpoint.latest(self.checkpoints)
        if found is not None:
            state, info = self.backend.restore(found, self.model, self.optimizer, self.model.vocab.hash)
            self.scheduler.load_state_dict(state["scheduler"])
            checkpoint.set_rng_state(state["rng"])
            self.loader.load_state(info["data"])
            self.step = info["step"]
        if self.world.main and self.log_path.is_file():
            # the log continues exactly where the checkpoint was; with none (killed before the first), the
            # stage starts over and so does its log
            kept = [line for line in self.log_path.read_text().splitlines()
                    if found is not None and json.loads(line)["step"] <= self.step]
            self.log_path.write_text("".join(line + "\n" for line in kept))

    # ---- one step ----
    def _train_step(self) -> dict:
        batches = [self.loader.next_batch() for _ in range(self.stage.grad_accum)]
        frames_total = self.world.all_sum(float(sum(int(next_frame_mask(b.loss_mask, b.document_ids).any(1).sum())
                                                    for b in batches)))
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
        lr = self.optimizer.param_groups[0]["lr"]
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
        for name, batches in self.validation.items():
            total = frames = 0.0
            for b in batches:
                with self.autocast():
                    _, out = self.forward(*b.model_inputs(self.world.device))
                total += float(out.weighted_sum)
                frames += out.frames
            losses[name] = self.world.all_sum(total) / max(self.world.all_sum(frames), 1)
        return losses

    def _save_checkpoint(self) -> None:
        self.backend.save(self.checkpoints, self.step, self.model, self.optimizer,
                          {"scheduler": self.scheduler.state_dict(), "rng": checkpoint.rng_state()},
                          {"data": self.loader.state(), "vocab_hash": self.model.vocab.hash,
                           "stage": self.stage.model_dump(by_alias=True), "peak_lr": self.peak_lr},
                          self.stage.keep_last)

    # ---- the loop ----
    def run(self) -> dict:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        main = self.world.main
        self.run_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step) if main else None
        log = open(self.log_path, "a", encoding="utf-8") if main else None
        bar = tqdm(total=self.stage.steps, initial=self.step, desc=self.stage.name, unit="step", disable=not (main and self.progress))
        started, last = time.time(), {}
        try:
            if self.step == 0 and main:  # where the stage starts, for the summary's first -> final
                log.write(json.dumps({"step": 0, "validation": self.validate()}) + "\n")
            elif self.step == 0:
                self.validate()  # every rank joins the collectives
            while self.step < self.stage.steps:
                tick = time.perf_counter()
                record = self._train_step()
                seconds = time.perf_counter() - tick
                record.update(frames_per_s=self.world.all_sum(record["frames"]) / seconds,
                              tokens_per_s=self.world.all_sum(record["tokens"]) / seconds)
                if not math.isfinite(record["loss"]):
                    raise OpusLMError(f"stage {self.stage.name}: the loss became {record['loss']} at step {self.step}; "
                                      "lower the LR or check the data (the last checkpoint is intact)")
                if self.step % self.stage.validation.every == 0 or self.step == self.stage.steps:
                    record["validation"] = self.validate()
                last = record
                if main:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    for key in ("loss", "lr", "grad_norm", "frames_per_s", "packing"):
                        writer.add_scalar(f"train/{key}", record[key], self.step)
                    for group in ("per_stream", "per_modality", "validation"):
                        for name, value in record.get(group, {}).items():
                            writer.add_scalar(f"{group}/{name}", value, self.step)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                                    fps=f"{record['frames_per_s']:.0f}")
                bar.update(1)
                if self.step % self.stage.checkpoint_every == 0 or self.step == self.stage.steps:
                    self._save_checkpoint()
            return self._finish(last, time.time() - started)
        finally:
            bar.close()
            if main:
                log.close()
                writer.close()

    def _finish(self, last: dict, seconds: float) -> dict:
        """Save the stage's model folder (with its tokenizers) and summary; returns the summary."""
        from opuslm.model.multistream import OpusLM

        state = self.backend.opuslm_state(self.model)
        summary = {}
        if self.world.main:
            final = OpusLM.from_pretrained(self.start)
            final.load_state_dict(state)
            final.save_pretrained(self.run_dir / "model", self.tokenizers)
            lines = [json.loads(line) for line in self.log_path.read_text().splitlines()]
            records = [r for r in lines if "loss" in r]
            validations = [r for r in lines if "validation" in r]
            summary = {
                "stage": self.stage.name, "steps": self.step, "from": str(self.start),
                "examples": sum(r["examples"] for r in records), "frames": sum(r["frames"] for r in records),
                "tokens": sum(r["tokens"] for r in records),
                "first_loss": records[0]["loss"] if records else None, "final_loss": records[-1]["loss"] if records else None,
                "first_validation": validations[0]["validation"] if validations else {},
                "final_validation": validations[-1]["validation"] if validations else {},
                "final_lr": self.peak_lr * lr_factor(self.stage.steps, self.stage.steps, self.stage.lr),
                "packing": sum(r["packing"] for r in records) / max(len(records), 1),
                "seconds_this_run": round(seconds, 1), "data": self.loader.describe(),
                "validation_notes": self.validation_notes,
            }
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        self.world.barrier()
        return summary
