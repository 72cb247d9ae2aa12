"""The HF backbone's training backend: one process, DDP or FSDP2 (`parallel: ddp | fsdp2`).

Checkpoints hold full (unsharded) state dicts, loadable by any number of ranks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from opuslm.errors import OpusLMError
from opuslm.train import checkpoint
from opuslm.train.distributed import World, wrap

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class HFTraining:
    """The HF backbone; checkpoints hold full (unsharded) state dicts, loadable by any number of ranks."""

    def __init__(self, stage, world: World):
        self.stage, self.world = stage, world

    def load(self, start: Path):
        """The start model with the stage's `tune` applied (LoRA, frozen groups) before any wrapping:
        DDP and FSDP2 take what trains as they find it."""
        from opuslm.model.multistream import OpusLM
        from opuslm.train.tuning import apply_tuning, train_only_heard_adapter

        model = OpusLM.from_pretrained(start).to(self.world.device)
        apply_tuning(model, self.stage.tune)
        if self.stage.objective == "heard_ctc":
            train_only_heard_adapter(model)
        if self.stage.activation_checkpointing:
            model.enable_activation_checkpointing()
        return model

    def data_split(self) -> tuple[int, int]:
        return self.world.rank, self.world.size

    def wrap(self, forward: torch.nn.Module, model) -> torch.nn.Module:
        return wrap(forward, getattr(model.backbone.get_decoder(), "layers", []), self.world, self.stage.parallel)

    def finish_gradients(self, forward) -> None:
        """Gradients are in `.grad`, reduced over ranks, once backward returns."""

    def clip(self, model, max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))

    def zero_gradients(self, forward, optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)

    def save(self, folder: Path, step: int, model, optimizer, common: dict, info: dict, keep_last: int) -> None:
        state = {"model": get_model_state_dict(model, options=FULL),
                 "optimizer": get_optimizer_state_dict(model, optimizer, options=FULL), **common}
        if self.world.main:
            checkpoint.save(folder, step, state, info, keep_last)
        self.world.barrier()

    def restore(self, path: Path, model, optimizer, vocab_hash: str) -> tuple[dict, dict]:
        """Load model and optimiser state from `path`; returns the rest of the state and trainer.json."""
        state, info = checkpoint.load(path, vocab_hash)
        try:
            set_model_state_dict(model, state.pop("model"), options=StateDictOptions(full_state_dict=True))
            set_optimizer_state_dict(model, optimizer, state.pop("optimizer"), options=StateDictOptions(full_state_dict=True))
        except (RuntimeError, KeyError, ValueError) as error:  # torch's own message lists every key and shape
            first = str(error).strip().splitlines()[0][:300]
            raise OpusLMError(f"checkpoint {path} does not fit this stage's model ({first}): it was made by a model of "
                              "another shape or tuning (LoRA or not); resume it with the model and stage that made it, "
                              "or use a new out folder") from error
        return state, info

    def opuslm_state(self, model) -> dict[str, torch.Tensor]:
        """The full state dict of an HF-backbone `OpusLM` (a collective under FSDP2)."""
        return get_model_state_dict(model, options=FULL)
