"""Megatron-Core without a GPU: its few hard-coded CUDA calls, redirected to CPU equivalents.

megatron-core's GPT model runs forward and backward on CPU under gloo (tensor parallel included)
except where it calls CUDA directly: `torch.cuda.current_device()` as a tensor device,
`torch.cuda.synchronize()`, and the CUDA RNG (`torch.cuda.manual_seed`, `get_rng_state`, and the
RNG tracker's `_get_cuda_rng_state` / `_set_cuda_rng_state`, which tensor-parallel regions fork).
`redirect_cuda_calls()` replaces exactly those, and only when CUDA is unavailable, so a GPU run uses
megatron-core untouched. This is the only place the backend patches a library.

On CPU the tracker's "CUDA" states are kept as seeded CPU generator states that nothing draws
from: dropout inside a tensor-parallel region uses the CPU generator. The stages train with
dropout 0, so this changes no result; it is for tests, not for CPU training at scale.
"""

from __future__ import annotations

import torch

_redirected = False


def redirect_cuda_calls() -> bool:
    """Redirect megatron-core's CUDA calls when no GPU is present; returns whether they are redirected.
    Idempotent; call it before building a megatron-core model."""
    global _redirected
    if torch.cuda.is_available():
        return False
    if _redirected:
        return True
    from megatron.core.tensor_parallel import random as megatron_random

    states = {"current": torch.get_rng_state()}

    def manual_seed(seed: int) -> None:
        states["current"] = torch.Generator().manual_seed(int(seed)).get_state()

    def get_rng_state(device="cuda", clone: bool = False, graph_safe: bool = False) -> torch.Tensor:
        return states["current"].clone()

    def set_rng_state(new_state: torch.Tensor, device=-1, graph_safe: bool = False) -> None:
        states["current"] = new_state

    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.manual_seed = manual_seed
    torch.cuda.get_rng_state = get_rng_state
    megatron_random._get_cuda_rng_state = get_rng_state
    megatron_random._set_cuda_rng_state = set_rng_state
    _redirected = True
    return True
