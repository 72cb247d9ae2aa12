"""Megatron's process groups over the ranks `torchrun` started: tensor x pipeline x data.

Ranks of one tensor-parallel group hold slices of the same layers and must see the same batch; the
data-parallel group is what the packed loader splits the data over and what DDP averages over.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch.distributed as dist

from opuslm.backends.megatron.cpu import redirect_cuda_calls
from opuslm.errors import OpusLMError


@dataclass(frozen=True)
class ModelParallel:
    tensor_rank: int
    tensor_size: int
    data_rank: int
    data_size: int

    @property
    def tensor_group(self):
        from megatron.core import parallel_state

        return parallel_state.get_tensor_model_parallel_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_model_parallel(tensor: int = 1, pipeline: int = 1, seed: int = 0) -> ModelParallel:
    """Set up (once per process) Megatron's groups; a single process without torchrun gets a world of
    one, so conversion and tests run in a plain Python process."""
    from megatron.core import parallel_state, tensor_parallel

    if pipeline != 1:
        raise OpusLMError(f"pipeline parallel {pipeline}: this backend trains with pipeline 1 so far "
                          "(megatron-core's pipeline schedules are CUDA-only and untested here); use tensor parallel")
    redirect_cuda_calls()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) != 1:
            raise OpusLMError("under torchrun, join the process group (opuslm.train.distributed.init_world) first")
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    world = dist.get_world_size()
    if world % (tensor * pipeline):
        raise OpusLMError(f"{world} processes do not divide into tensor {tensor} x pipeline {pipeline}")
    if parallel_state.model_parallel_is_initialized():
        if parallel_state.get_tensor_model_parallel_world_size() != tensor:
            raise OpusLMError(f"this process already runs tensor parallel "
                              f"{parallel_state.get_tensor_model_parallel_world_size()}, not {tensor}")
    else:
        parallel_state.initialize_model_parallel(tensor_model_parallel_size=tensor, pipeline_model_parallel_size=pipeline)
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
    return ModelParallel(parallel_state.get_tensor_model_parallel_rank(), tensor,
                         parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size())
