"""What a training stage needs from the library that runs the model: loading it, splitting the data
over ranks, wrapping for data parallelism, clipping, and checkpoints.

The trainer knows only this interface. The implementations live in `opuslm.backends` (`hf.py`: the HF
backbone alone, under DDP or FSDP2; `megatron/stage.py`: Megatron-Core); `opuslm.backends.register_backends()`
registers them here where a run is composed (the CLI does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import torch

from opuslm.errors import OpusLMError
from opuslm.train.distributed import World


class TrainingBackend(Protocol):
    def load(self, start: Path):
        """The stage's start model folder, on this rank's device, with the stage's `tune` applied where
        the backend supports it (HF; Megatron stages refuse `tune`)."""

    def data_split(self) -> tuple[int, int]:
        """(this rank's index, the number of ranks) among those that read different batches."""

    def wrap(self, forward: torch.nn.Module, model) -> torch.nn.Module:
        """`forward` (the model's loss) wrapped for data parallelism."""

    def finish_gradients(self, forward) -> None:
        """After the last backward of a step: gradients reduced and where the optimiser reads them."""

    def clip(self, model, max_norm: float) -> float:
        """Clip the gradients; returns their norm before clipping."""

    def zero_gradients(self, forward, optimizer) -> None: ...

    def save(self, folder: Path, step: int, model, optimizer, common: dict, info: dict, keep_last: int) -> None:
        """A checkpoint of model, optimiser and `common` state, with `info` as its trainer.json."""

    def restore(self, path: Path, model, optimizer, vocab_hash: str) -> tuple[dict, dict]:
        """Load model and optimiser state from `path`; returns the rest of the state and trainer.json."""

    def opuslm_state(self, model) -> dict[str, torch.Tensor]:
        """The full state dict of an HF-backbone `OpusLM`, whatever the backend trained."""


BackendFactory = Callable[[object, World], TrainingBackend]
_FACTORIES: dict[str, BackendFactory] = {}


def register_training_backend(name: str, factory: BackendFactory) -> None:
    _FACTORIES[name] = factory


def backend_name(stage) -> str:
    return "megatron" if stage.parallel == "megatron" else "hf"


def training_backend(stage, world: World) -> TrainingBackend:
    name = backend_name(stage)
    if name not in _FACTORIES:
        raise OpusLMError(f"no training backend {name!r} is registered: call `opuslm.backends.register_backends()` "
                          "before running a stage (the `opuslm` command does)")
    return _FACTORIES[name](stage, world)
