"""Learning-rate schedules as a function of the optimiser step (the multiplier LambdaLR applies).

    cosine          linear warmup, then cosine from peak to floor x peak at the last step
    wsd             warmup, stable at peak, then a linear decay to floor x peak over the last
                    decay_fraction of the steps (warmup-stable-decay)
    linear_to_zero  warmup, then linear from peak to 0 at the last step (annealing)
    constant        warmup, then peak
"""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, config) -> float:
    """The multiplier of the peak LR for the update made at `step` (0-based) of `total`; `step = total`
    gives where the schedule ends (0 for linear_to_zero, floor for cosine and wsd)."""
    if config.warmup and step < config.warmup:
        return (step + 1) / config.warmup
    span = max(total - config.warmup, 1)
    progress = min((step - config.warmup) / span, 1.0)
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "cosine":
        return config.floor + (1 - config.floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "linear_to_zero":
        return 1.0 - progress
    if config.schedule == "wsd":
        decay_steps = max(round(config.decay_fraction * span), 1)
        into_decay = step - (total - decay_steps)
        if into_decay < 0:
            return 1.0
        return 1.0 - (1 - config.floor) * into_decay / decay_steps
    raise ValueError(f"unknown LR schedule {config.schedule!r}")
