"""The libraries that run a training stage, made known to `opuslm.train.backend` by `register_backends`.

- `hf.py`: the HF backbone alone, under DDP or FSDP2;
- `megatron/`: Megatron-Core (tensor parallel), imported only when a stage asks for it.
"""

from opuslm.backends.hf import HFTraining
from opuslm.train.backend import register_training_backend


def _megatron(stage, world):
    from opuslm.backends.megatron.stage import MegatronTraining

    return MegatronTraining(stage, world)


def register_backends() -> None:
    """Where a run is composed (the CLI, a script, the tests), before any stage runs."""
    register_training_backend("hf", HFTraining)
    register_training_backend("megatron", _megatron)
