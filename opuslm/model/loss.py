"""The multi-stream loss: weighted cross-entropy over the cells that carry loss, computed in chunks.

Only cells in the loss mask are scored: their hidden rows are gathered, and logits are made
`chunk` rows at a time under activation checkpointing, so neither the full `[B, T, V]` logits nor
their gradient buffers ever exist (a 150k-token vocabulary at 8k frames would need 5 GB in fp32).
Each cell's cross-entropy is weighted by the modality of its target id; the weighted sum is
divided by the number of frames that carry loss (OpusLM's normalisation).

The auxiliary CTC loss (`heard_ctc_loss`, off unless a stage sets `data.ctc_weight`) asks the hidden
states of the audio a task listens to for its transcript, frame by frame: the classic remedy for an
attention decoder that is slow to align text with audio, which a small model trained briefly never
does on its own (it falls back on the text prior and writes sentences it has seen).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from opuslm.batch_stream import HeardTranscripts
from opuslm.vocab import MODALITIES, PAD_ID, JointVocab


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, for backward: weighted_sum / frames
    weighted_sum: torch.Tensor  # before normalising: a trainer normalises by the frames of a whole step
    per_stream: dict[str, float]  # mean cross-entropy of each stream's cells
    per_modality: dict[str, float]  # mean cross-entropy of each modality's cells
    frames: int  # frames that carried loss: the normaliser
    cells: int


def _cross_entropy(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
    logits = F.linear(rows, weight, bias)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision up; float64 stays
    return F.cross_entropy(logits, targets, reduction="none")


def chunked_cross_entropy(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """Per-row cross-entropy of `rows @ weight.T + bias` against `targets`, `chunk` rows at a time."""
    recompute = torch.is_grad_enabled() and rows.shape[0] > chunk  # one chunk: nothing to save by recomputing
    pieces = []
    for start in range(0, rows.shape[0], chunk):
        part = (rows[start:start + chunk], weight, bias, targets[start:start + chunk])
        pieces.append(checkpoint(_cross_entropy, *part, use_reentrant=False) if recompute else _cross_entropy(*part))
    return torch.cat(pieces) if pieces else rows.new_zeros(0, dtype=torch.float32)


def next_frame_mask(loss_mask: torch.Tensor, document_ids: torch.Tensor | None) -> torch.Tensor:
    """The cells of `frames[..., 1:]` that carry loss: those in the loss mask, except the first frame of
    an example in a packed row (the frame before it belongs to another example)."""
    mask = loss_mask[..., 1:].bool()
    if document_ids is not None:
        mask = mask & (document_ids[:, 1:] == document_ids[:, :-1])[:, None]
    return mask


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for start, end in ranges:
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _head_rows(weight: torch.Tensor, bias: torch.Tensor | None, ranges: list[tuple[int, int]]):
    """The head's rows (and bias) of the joint-id `ranges`, in order: a view when they are one block."""
    if len(ranges) == 1:
        (start, end), = ranges
        return weight[start:end], None if bias is None else bias[start:end]
    return (torch.cat([weight[start:end] for start, end in ranges]),
            None if bias is None else torch.cat([bias[start:end] for start, end in ranges]))


def _row_of(target: torch.Tensor, ranges: list[tuple[int, int]]) -> torch.Tensor:
    """Each target's row among the concatenated `ranges`, or -1 where it lies in none of them."""
    row, base = torch.full_like(target, -1), 0
    for start, end in ranges:
        row = torch.where((target >= start) & (target < end), target - start + base, row)
        base += end - start
    return row


def stream0_cross_entropy(vocab: JointVocab, rows: torch.Tensor, kind: torch.Tensor, target: torch.Tensor,
                          weight: torch.Tensor, bias: torch.Tensor | None, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The "modality" softmax of stream 0: a cell whose input is a semantic id is scored over the specials
    and semantic ids only, one whose input is a text id over the specials and text ids, any other cell
    (and one whose target lies outside its input's set) over the whole vocabulary. The same as the full
    softmax with the other logits at minus infinity, without computing them. Returns (cross-entropy,
    targets), both in an order of its own (the caller sums and buckets, so order does not matter).
    `kind`: the MODALITIES index of each cell's input."""
    special = vocab.modality_range("special")
    allowed = {MODALITIES.index(m): _merged([special, vocab.modality_range(m)]) for m in ("semantic", "text")}
    parts, targets = [], []
    rest = torch.ones_like(target, dtype=torch.bool)
    for modality, ranges in allowed.items():
        row = _row_of(target, ranges)
        chosen = (kind == modality) & (row >= 0)
        if chosen.any():
            rows_weight, rows_bias = _head_rows(weight, bias, ranges)
            parts.append(chunked_cross_entropy(rows[chosen], rows_weight, rows_bias, row[chosen], chunk))
            targets.append(target[chosen])
        rest &= ~chosen
    if rest.any():
        parts.append(chunked_cross_entropy(rows[rest], weight, bias, target[rest], chunk))
        targets.append(target[rest])
    return torch.cat(parts), torch.cat(targets)


def multistream_loss(model, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                     inputs: torch.Tensor | None = None) -> LossOutput:
    """`hidden` `[B, S, D]`, `targets` `[B, N, S]` joint ids (the frame after each step), `mask`
    `[B, N, S]` cells that carry loss, `inputs` `[B, S]` stream 0's ids at each step (needed by the
    "modality" stream-0 softmax). `model` gives the stream heads (`stream_heads()`)."""
    vocab: JointVocab = model.vocab
    weights = torch.tensor([model.config.loss_weights[m] for m in MODALITIES], device=hidden.device)
    boundaries = torch.tensor(vocab.modality_starts(), device=hidden.device)
    total = hidden.new_zeros((), dtype=torch.float32)
    per_stream, sums, counts = {}, torch.zeros(len(MODALITIES)), torch.zeros(len(MODALITIES))
    if model.config.stream0_softmax == "modality" and inputs is None:
        raise ValueError("the modality stream-0 softmax needs stream 0's inputs")
    heads = model.stream_heads()
    for n in range(targets.shape[1]):
        cells = mask[:, n]
        if not cells.any():
            continue
        rows = model.stream_rows(hidden[cells], n)
        weight, bias, start = heads[n]
        target = targets[:, n][cells]
        if n == 0 and model.config.stream0_softmax == "modality":
            kind = torch.bucketize(inputs[cells], boundaries, right=True)
            ce, target = stream0_cross_entropy(vocab, rows, kind, target, weight, bias, model.config.loss_chunk)
        else:
            ce = chunked_cross_entropy(rows, weight, bias, target - start, model.config.loss_chunk)
        modality = torch.bucketize(target, boundaries, right=True)
        total = total + (ce * weights[modality]).sum()
        per_stream[f"stream{n}"] = ce.mean().item()
        sums.index_add_(0, modality.cpu(), ce.detach().float().cpu())
        counts.index_add_(0, modality.cpu(), torch.ones(ce.shape[0]))
    # every parameter joins the graph even when a batch has no audio cells: DDP and FSDP2 expect the
    # same gradients on every rank, and a text-only micro-batch would leave the stream offsets (and the
    # continuous input path's adapter) out
    total = total + 0.0 * sum(p.sum() for p in model.stream_state_parameters())
    frames = int(mask.any(1).sum())
    per_modality = {m: (sums[i] / counts[i]).item() for i, m in enumerate(MODALITIES) if counts[i] > 0}
    return LossOutput(total / max(frames, 1), total, per_stream, per_modality, frames, int(mask.sum()))


def _utterance_ctc(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
    log_probs = F.linear(rows, weight, bias).float().log_softmax(-1)[:, None]  # [T, 1, 1 + text]
    return F.ctc_loss(log_probs, target[None], torch.tensor([rows.shape[0]]), torch.tensor([target.numel()]),
                      blank=0, reduction="sum", zero_infinity=True)


def blank_and_text_rows(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The head rows the auxiliary CTC scores against: pad's (the blank) first, then the text range."""
    weight, bias = model.joint_head()
    return _head_rows(weight, bias, [(PAD_ID, PAD_ID + 1), model.vocab.modality_range("text")])


def heard_ctc_loss(model, hidden: torch.Tensor, heard: HeardTranscripts) -> tuple[torch.Tensor, float]:
    """(weight x the summed CTC loss of every heard segment, the mean loss per transcript token).

    Scored by stream 0's own head rows, restricted to the text range plus pad's row as the blank (pad
    is never a stream-0 target and embeds to zero, so its row is free): no new parameters, and since a
    softmax over that subset ignores the other logits, it does not fight the audio positions' own
    next-frame targets. One utterance at a time under activation checkpointing, so no `[T, text]`
    logits outlive their utterance (a 49k-token text range at 30 s is 150 MB each)."""
    rows_weight, rows_bias = blank_and_text_rows(model)
    total, tokens = hidden.new_zeros((), dtype=torch.float32), 0
    for row, (start, end), transcript in zip(heard.rows, heard.spans, heard.transcripts):
        target = transcript.to(hidden.device) + 1  # 0 is the blank
        part = (hidden[row, start:min(end, hidden.shape[1])], rows_weight, rows_bias, target)
        total = total + (checkpoint(_utterance_ctc, *part, use_reentrant=False) if torch.is_grad_enabled()
                         else _utterance_ctc(*part))
        tokens += target.numel()
    return total * heard.weight, total.item() / max(tokens, 1)
