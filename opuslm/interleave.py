"""The delay interleave: stream n of a multi-stream sequence is shifted right by `delays[n]` frames.

With codebooks predicted one frame apart, codebook k of frame t is generated after codebook k-1 of
the same frame has been seen, at one model step per frame (MusicGen's and OpusLM's pattern).

    >>> import torch
    >>> codes = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])   # [N=3 streams, T=3 frames]
    >>> delay(codes, [0, 1, 2], pad_id=0)
    tensor([[1, 2, 3, 0, 0],
            [0, 4, 5, 6, 0],
            [0, 0, 7, 8, 9]])
    >>> torch.equal(undelay(delay(codes, [0, 1, 2], 0), [0, 1, 2]), codes)
    True
    >>> delay(codes, [0, 1, 1], pad_id=0)                         # Moshi-like: acoustic one frame late
    tensor([[1, 2, 3, 0],
            [0, 4, 5, 6],
            [0, 7, 8, 9]])

The output is max(delays) frames longer, so no frame of any stream is lost at the tail. Masks shift
the same way (`delay(mask, delays, False)`), and logits `[..., N, S, V]` with `delay_logits` /
`undelay_logits`, so every prediction lines up with its target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def default_delays(num_streams: int) -> list[int]:
    """`delays[n] = n`: each codebook one frame after the one before it."""
    return list(range(num_streams))


def check_delays(delays: Sequence[int], num_streams: int) -> list[int]:
    delays = [int(d) for d in delays]
    if len(delays) != num_streams:
        raise ValueError(f"{len(delays)} delays given for {num_streams} streams")
    if any(d < 0 for d in delays) or any(b < a for a, b in zip(delays, delays[1:])):
        raise ValueError(f"delays must be non-negative and non-decreasing, got {delays}")
    return delays


def delay(codes: torch.Tensor, delays: Sequence[int], pad_id) -> torch.Tensor:
    """`[..., N, T] -> [..., N, T + max(delays)]` with `out[..., n, t + delays[n]] = codes[..., n, t]`
    and `pad_id` in every other cell."""
    return _shift(codes, delays, pad_id, time_dim=-1, inverse=False)


def undelay(delayed: torch.Tensor, delays: Sequence[int]) -> torch.Tensor:
    """The exact inverse of `delay`: `[..., N, S] -> [..., N, S - max(delays)]`."""
    return _shift(delayed, delays, None, time_dim=-1, inverse=True)


def delay_logits(logits: torch.Tensor, delays: Sequence[int], fill: float = 0.0) -> torch.Tensor:
    """`delay` for per-frame vectors: `[..., N, T, V] -> [..., N, T + max(delays), V]`."""
    return _shift(logits, delays, fill, time_dim=-2, inverse=False)


def undelay_logits(logits: torch.Tensor, delays: Sequence[int]) -> torch.Tensor:
    """`undelay` for per-frame vectors: `[..., N, S, V] -> [..., N, S - max(delays), V]`."""
    return _shift(logits, delays, None, time_dim=-2, inverse=True)


def _shift(x: torch.Tensor, delays: Sequence[int], fill, time_dim: int, inverse: bool) -> torch.Tensor:
    stream_dim = time_dim - 1
    if x.dim() < -stream_dim:
        raise ValueError(f"expected a tensor with streams at dim {stream_dim} and time at dim {time_dim}, got shape {tuple(x.shape)}")
    delays = check_delays(delays, x.shape[stream_dim])
    max_delay = max(delays)
    length = x.shape[time_dim]
    if inverse and length < max_delay:
        raise ValueError(f"a delayed sequence has at least max(delays) = {max_delay} frames, got {length}")
    out_length = length - max_delay if inverse else length + max_delay
    shape = list(x.shape)
    shape[time_dim] = out_length
    out = x.new_empty(shape) if inverse else x.new_full(shape, fill)
    for n, d in enumerate(delays):
        source, target = x.select(stream_dim, n), out.select(stream_dim, n)
        if inverse:
            target.copy_(source.narrow(time_dim, d, out_length))
        else:
            target.narrow(time_dim, d, length).copy_(source)
    return out
