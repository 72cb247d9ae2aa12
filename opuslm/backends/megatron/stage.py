"""A training stage on Megatron-Core: the `opuslm.train.backend.TrainingBackend` for `parallel: megatron`.

- the stage's start (an HF-backbone OpusLM folder) is split over the tensor-parallel ranks;
- the packed loader splits the data over the data-parallel group only, so the ranks of one
  tensor-parallel group read the same batch;
- Megatron's `DistributedDataParallel` reduces gradients over the data-parallel group into its
  contiguous buffers (`main_grad`); torch's AdamW steps on them (megatron-core's optimizer wrapper is
  CUDA-only);
- the gradient norm counts each tensor-parallel slice once and each replicated parameter once;
- checkpoints: model and optimiser as a Megatron distributed checkpoint (`distributed/`, each rank
  writes its slices), the scheduler and RNG in `state.pt`, `trainer.json` last;
- the stage's final model is merged back into an HF-backbone folder, which is what the next stage,
  `opuslm eval` and `opuslm generate` read.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from opuslm.backends.megatron.parallel import init_model_parallel
from opuslm.train import checkpoint
from opuslm.train.distributed import World

DISTRIBUTED = "distributed"


class MegatronTraining:
    """The `opuslm.train.backend.TrainingBackend` for `parallel: megatron`."""

    def __init__(self, stage, world: World):
        self.stage, self.world = stage, world
        self.parallel = init_model_parallel(stage.tensor, stage.pipeline, stage.data.seed)

    def load(self, start: Path):
        from opuslm.backends.megatron.model import MegatronOpusLM
        from opuslm.model.multistream import OpusLM

        return MegatronOpusLM.from_opuslm(OpusLM.from_pretrained(start), self.parallel,
                                          recompute=self.stage.activation_checkpointing).to(self.world.device)

    def data_split(self) -> tuple[int, int]:
        return self.parallel.data_rank, self.parallel.data_size

    def wrap(self, forward: torch.nn.Module, model) -> torch.nn.Module:
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

        return DistributedDataParallel(model.gpt.config, DistributedDataParallelConfig(grad_reduce_in_fp32=True),
                                       forward)

    def finish_gradients(self, forward) -> None:
        forward.finish_grad_sync()
        for param in forward.module.parameters():
            if param.requires_grad:
                param.grad = param.main_grad.to(param.dtype)

    def clip(self, model, max_norm: float) -> float:
        sliced = torch.zeros((), dtype=torch.float64)
        replicated = torch.zeros((), dtype=torch.float64)
        for param in model.parameters():
            if param.grad is None:
                continue
            square = param.grad.detach().double().pow(2).sum().cpu()
            if getattr(param, "tensor_model_parallel", False):
                sliced += square
            else:
                replicated += square
        if self.parallel.tensor_size > 1:
            dist.all_reduce(sliced, group=self.parallel.tensor_group)
        norm = float((sliced + replicated).sqrt())
        scale = max_norm / (norm + 1e-6)
        if scale < 1:
            for param in model.parameters():
                if param.grad is not None:
                    param.grad.mul_(scale)
        return norm

    def zero_gradients(self, forward, optimizer) -> None:
        forward.zero_grad_buffer()
        optimizer.zero_grad(set_to_none=True)

    # ---- checkpoints ----
    def _sharded_state(self, model, optimizer) -> dict:
        from megatron.core.dist_checkpointing.optimizer import (
            get_param_id_to_sharded_param_map,
            optim_state_to_sharding_state,
        )

        _ensure_optimizer_state(optimizer)
        model_state = model.sharded_state_dict()
        optim_state = optimizer.state_dict()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optim_state_to_sharding_state(optim_state, get_param_id_to_sharded_param_map(model_state, params),
                                      exclude_keys=("step",))
        return {"model": model_state, "optimizer": optim_state}

    def save(self, folder: Path, step: int, model, optimizer, common: dict, info: dict, keep_last: int) -> None:
        from megatron.core import dist_checkpointing

        tmp = checkpoint.staging_path(folder, step)
        if self.world.main:
            (checkpoint.staging(folder, step) / DISTRIBUTED).mkdir()
        self.world.barrier()
        dist_checkpointing.save(self._sharded_state(model, optimizer), str(tmp / DISTRIBUTED))
        self.world.barrier()
        if self.world.main:
            # the moments are sharded above; the scalars (step, and each group's lr as the schedule set it) here
            groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
            torch.save({**common, "optimizer_step": _optimizer_step(optimizer), "optimizer_groups": groups}, tmp / "state.pt")
            checkpoint.commit(tmp, folder, step, info, keep_last)
        self.world.barrier()

    def restore(self, path: Path, model, optimizer, vocab_hash: str) -> tuple[dict, dict]:
        from megatron.core import dist_checkpointing

        info = checkpoint.read_info(path, vocab_hash)
        state = torch.load(path / "state.pt", weights_only=False)
        template = self._sharded_state(model, optimizer)
        loaded = dist_checkpointing.load(template, str(path / DISTRIBUTED))
        model.load_shard({k.removeprefix("gpt."): v for k, v in loaded["model"].items() if k.startswith("gpt.")})
        model.stream_offsets.data.copy_(loaded["model"]["stream_offsets"])
        optim, step = optimizer.state_dict(), torch.tensor(state.pop("optimizer_step"))
        for index, values in loaded["optimizer"]["state"].items():
            optim["state"][index].update(values, step=step.clone())
        for group, saved in zip(optim["param_groups"], state.pop("optimizer_groups")):
            group.update(saved)
        optimizer.load_state_dict(optim)
        return state, info

    def opuslm_state(self, model) -> dict[str, torch.Tensor]:
        """The state dict of the HF-backbone OpusLM this model converts back to (a collective)."""
        state = {f"backbone.{k}": v for k, v in model.hf_state_dict().items()}
        state["stream_offsets"] = model.stream_offsets.detach().clone()
        return state


def _ensure_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """AdamW creates its moments at the first step; a distributed checkpoint needs them to exist (as
    zeros, which is what the first step would start from) to know what to load into."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if not optimizer.state[param]:
                optimizer.state[param] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(param),
                                          "exp_avg_sq": torch.zeros_like(param)}


def _optimizer_step(optimizer: torch.optim.Optimizer) -> float:
    states = [s["step"] for s in optimizer.state.values() if "step" in s]
    return float(states[0]) if states else 0.0
