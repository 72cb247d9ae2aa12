"""The delay interleave against naive loops, over random shapes and delay patterns."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from opuslm.interleave import default_delays, delay, delay_logits, undelay, undelay_logits

PAD = -1


@st.composite
def streams_and_delays(draw):
    num_streams = draw(st.integers(1, 9))
    delays = sorted(draw(st.lists(st.integers(0, 12), min_size=num_streams, max_size=num_streams)))
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    length = draw(st.integers(0, 30))
    seed = draw(st.integers(0, 2**31 - 1))
    codes = torch.randint(0, 1000, (*batch, num_streams, length), generator=torch.Generator().manual_seed(seed))
    return codes, delays


def naive_delay(codes, delays, pad):
    *batch, num_streams, length = codes.shape
    out = torch.full((*batch, num_streams, length + max(delays)), pad, dtype=codes.dtype)
    for n in range(num_streams):
        for t in range(length):
            out[..., n, t + delays[n]] = codes[..., n, t]
    return out


@settings(max_examples=300, deadline=None)
@given(streams_and_delays())
def test_delay_equals_the_naive_double_loop_and_undelay_inverts_it(case):
    codes, delays = case
    delayed = delay(codes, delays, PAD)
    assert delayed.shape[-1] == codes.shape[-1] + max(delays)
    assert torch.equal(delayed, naive_delay(codes, delays, PAD))
    assert torch.equal(undelay(delayed, delays), codes)


@settings(max_examples=100, deadline=None)
@given(streams_and_delays())
def test_no_frame_is_lost_at_the_tail(case):
    """The last frame of every stream sits at T - 1 + delays[n], inside the output."""
    codes, delays = case
    if codes.shape[-1] == 0:
        return
    delayed = delay(codes, delays, PAD)
    for n, d in enumerate(delays):
        assert torch.equal(delayed[..., n, codes.shape[-1] - 1 + d], codes[..., n, -1])
    assert (delayed != PAD).sum() == codes.numel()


@settings(max_examples=100, deadline=None)
@given(streams_and_delays(), st.integers(1, 5))
def test_logits_shift_like_ids(case, vocab):
    """delay_logits moves every vector with its frame; undelay_logits is its inverse."""
    codes, delays = case
    logits = torch.randn(*codes.shape, vocab, generator=torch.Generator().manual_seed(int(codes.sum()) % 1000))
    shifted = delay_logits(logits, delays, fill=float("nan"))
    for v in range(vocab):
        assert torch.equal(torch.nan_to_num(shifted[..., v], nan=PAD), naive_delay(logits[..., v], delays, PAD))
    assert torch.equal(undelay_logits(shifted, delays), logits)


def test_predictions_line_up_with_their_targets():
    """A model whose step-s output predicts delayed frame s+1 exactly: undelaying its logits
    gives back every original code, the tail frames included. Only stream 0's first frame (delay 0)
    has no step before it to predict it: it is the prompt's first token."""
    codes = torch.randint(0, 7, (2, 4, 10))
    delays = default_delays(4)
    delayed = delay(codes, delays, pad_id=7)
    inputs, targets = delayed[..., :-1], delayed[..., 1:]
    perfect = torch.nn.functional.one_hot(targets, 8).float()  # [B, N, S-1, V]: step s -> frame s+1
    # prediction for frame s sits at step s-1; put it back on frame s before undelaying
    per_frame = torch.cat([torch.zeros_like(perfect[..., :1, :]), perfect], dim=-2)
    predicted = undelay_logits(per_frame, delays).argmax(-1)
    assert torch.equal(predicted[..., 1:, :], codes[..., 1:, :])
    assert torch.equal(predicted[..., 0, 1:], codes[..., 0, 1:])
    assert inputs.shape[-1] == codes.shape[-1] + max(delays) - 1


def test_masks_shift_with_pad_false():
    mask = torch.ones(3, 5, dtype=torch.bool)
    shifted = delay(mask, [0, 1, 1], False)
    assert shifted.tolist() == [[True] * 5 + [False], [False] + [True] * 5, [False] + [True] * 5]


def test_moshi_like_delays():
    codes = torch.arange(12).reshape(4, 3)
    assert delay(codes, [0, 1, 1, 1], -1).tolist() == [
        [0, 1, 2, -1], [-1, 3, 4, 5], [-1, 6, 7, 8], [-1, 9, 10, 11]]


@pytest.mark.parametrize("delays, error", [
    ([0, 1], "2 delays given for 3 streams"),
    ([0, 2, 1], "non-decreasing"),
    ([-1, 0, 0], "non-negative"),
])
def test_bad_delays_are_refused(delays, error):
    with pytest.raises(ValueError, match=error):
        delay(torch.zeros(3, 4, dtype=torch.long), delays, 0)


def test_undelay_refuses_a_sequence_shorter_than_the_delay():
    with pytest.raises(ValueError, match="at least max"):
        undelay(torch.zeros(3, 1, dtype=torch.long), [0, 1, 2])
