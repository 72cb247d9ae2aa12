"""Batched multi-stream decoding with a KV cache: one delayed frame (every stream) per model step.

Where a token id is *decoded* back into frames. The decoder works in the delayed space the model was
trained in. Step s holds, in stream n, undelayed frame t = s - delays[n]; so at each step every
stream is either

- *forced*: t is still inside the prompt (the ramp: the lagging streams replay the prompt's last
  frames, usually pad), before the start, or at/after the end frame (after end-of-sequence the
  lagging streams finish their frames, then pad); or
- *chosen* from the model: stream 0 over the ids the target allows (text range or semantic range,
  plus the stop id), stream k >= 1 over its codebook's slice; pad is never chosen.

A text prompt may carry a constraint (`opuslm.infer.timed_words`: SRWT after ASR) that says which text
ids may come next and when the text may end; decoding chooses among those only. An audio prompt's
constraint (`opuslm.infer.paced_words`: word-paced TTS) may put text ids between audio frames; a frame
whose stream 0 holds no semantic id carries no codes, so the codebook streams are pad there. Text is greedy; audio
is sampled with temperature, top-k and top-p from a seeded generator (or greedy too). Prompts of different lengths are left-padded with an attention mask and explicit
positions, so a batch returns what single generations return (greedy).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from opuslm.batch_stream import HeardFeatures, heard_steps
from opuslm.errors import OpusLMError
from opuslm.infer.sampling import Sampling
from opuslm.interleave import delay
from opuslm.model.multistream import returned_cache
from opuslm.vocab import PAD_ID

TARGET_KINDS = ("text", "audio")


@dataclass
class Prompt:
    """Undelayed prompt frames `[N, P]` (a template cut at its target), what the target is, the id
    that ends it, and the most frames to generate; for a model with the continuous input path, the
    undelayed frames `[start, end)` of the audio the prompt listens to and their features `[end - start, F]`;
    for a text target, an optional constraint on what it writes (`allowed(text ids written) -> (text ids
    that may follow, whether it may stop)`, as `timed_words.TimedWords` answers); for an audio target, one
    on stream 0 (`allowed(joint ids written) -> (joint text ids that may follow, whether audio may, whether
    it may stop)`, as `paced_words.PacedWords` answers); `transcribes`: the target is
    the heard audio's transcript and nothing else (ASR), which joint CTC decoding can score."""

    frames: np.ndarray
    target: str
    stop_id: int
    max_frames: int
    heard: tuple[int, int] | None = None
    features: np.ndarray | None = None
    constraint: object | None = None
    transcribes: bool = False


@dataclass
class Generated:
    frames: np.ndarray  # undelayed generated frames `[N, T]`, the stop frame excluded
    stopped: bool  # the stop id was produced (False: max_frames reached)


def _sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> torch.Tensor:
    """One id per row of `logits` `[B, V]` (-inf where not allowed)."""
    if sampling.greedy_audio or sampling.temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = logits.sort(-1, descending=True)
        outside = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1) > sampling.top_p
        logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class _Sequence:
    """One prompt's progress in undelayed frames; decides each stream's next cell."""

    def __init__(self, prompt: Prompt, num_streams: int, semantic: tuple[int, int]):
        self.prompt = prompt
        self.semantic = semantic  # [start, end) of the semantic ids: the frames that carry codes
        self.frames = [prompt.frames[:, t].copy() for t in range(prompt.frames.shape[1])]
        self.prompt_length = len(self.frames)
        self.end: int | None = None  # the stop frame's index, once known
        self.stopped = False
        self.num_streams = num_streams

    def clone(self) -> _Sequence:
        """An independent copy (a beam that branches)."""
        other = copy.copy(self)
        other.frames = [frame.copy() for frame in self.frames]
        return other

    def cell(self, stream: int, t: int) -> int | None:
        """The forced id of stream `stream` at frame t, or None when the model chooses it."""
        if t < 0:
            return PAD_ID
        if t < self.prompt_length:
            return int(self.prompt.frames[stream, t])
        if self.end is not None and t >= self.end:
            return PAD_ID if (t > self.end or stream > 0) else self.prompt.stop_id
        if stream > 0 and (self.prompt.target == "text" or not self._carries_codes(t)):
            return PAD_ID
        return None

    def _carries_codes(self, t: int) -> bool:
        """Frame t's stream 0 is a semantic id (or not written yet, where stream 0 lags this stream)."""
        return t >= len(self.frames) or self.semantic[0] <= self.frames[t][0] < self.semantic[1]

    def put(self, stream: int, t: int, value: int) -> None:
        if t < self.prompt_length or t < 0:
            return
        while len(self.frames) <= t:
            self.frames.append(np.full(self.num_streams, PAD_ID, np.int64))
        self.frames[t][stream] = value
        if stream == 0 and self.end is None:
            if value == self.prompt.stop_id:
                self.end, self.stopped = t, True
            elif t + 1 - self.prompt_length >= self.prompt.max_frames:
                self.end = t + 1  # the next frame is forced to stop

    def written_text(self, vocab) -> list[int]:
        """The text-token ids stream 0 has written after the prompt."""
        return vocab.to_text(self.written_stream0()).tolist()

    def written_stream0(self) -> list[int]:
        """The joint ids stream 0 has written after the prompt."""
        return [int(frame[0]) for frame in self.frames[self.prompt_length:]]

    def finished(self, step: int, d0: int, max_delay: int) -> bool:
        """Every stream is past the stop frame: stream 0 wrote it, the lagging ones their last frames."""
        return self.end is not None and step > self.end + d0 and step >= self.end + max_delay

    def result(self) -> Generated:
        end = self.end if self.end is not None else len(self.frames)
        generated = np.stack(self.frames[self.prompt_length:end], 1) if end > self.prompt_length \
            else np.zeros((self.num_streams, 0), np.int64)
        return Generated(generated, self.stopped)


def _check_prompts(model, prompts: list[Prompt]) -> None:
    num_streams = model.vocab.num_streams
    for p in prompts:
        if p.target not in TARGET_KINDS:
            raise OpusLMError(f"prompt target must be one of {TARGET_KINDS}, got {p.target!r}")
        if p.frames.shape[0] != num_streams or p.frames.shape[1] == 0:
            raise OpusLMError(f"a prompt needs [{num_streams} streams, >= 1 frame], got {p.frames.shape}")


def _stream0_allowed(model, prompts: list[Prompt], device) -> torch.Tensor:
    """`[B, V]`: 0 where stream 0 may choose an id (the target's range and the prompt's stop id), -inf elsewhere."""
    vocab = model.vocab
    allowed = {kind: torch.full((vocab.size,), float("-inf"), device=device) for kind in TARGET_KINDS}
    allowed["text"][slice(*vocab.modality_range("text"))] = 0
    allowed["audio"][slice(*vocab.modality_range("semantic"))] = 0
    return torch.stack([allowed[p.target].clone().index_fill_(0, torch.tensor([p.stop_id], device=device), 0)
                        for p in prompts])


def constrained(model, sequences: list[_Sequence], allowed: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Stream 0's `logits` `[B, V]` within `allowed` (`_stream0_allowed`) and, for each sequence whose prompt has
    a constraint and is still writing, -inf outside the ids the constraint allows next (and the stop id unless
    it may stop). A word-paced sequence that may begin its next word scores that word's first id by the
    model's mass on every text id: the model says when a word begins, the pacing says which (a model unsure
    of the word would otherwise rarely begin one, and run on)."""
    if not any(seq.prompt.constraint is not None for seq in sequences):
        return logits + allowed
    vocab, rows, onset = model.vocab, allowed.clone(), None
    for b, seq in enumerate(sequences):
        if seq.prompt.constraint is None or seq.end is not None:
            continue
        row = torch.full_like(rows[b], float("-inf"))
        if seq.prompt.target == "text":
            ids, may_stop = seq.prompt.constraint.allowed(seq.written_text(vocab))
            ids = vocab.text(ids)
        else:
            ids, audio, may_stop = seq.prompt.constraint.allowed(seq.written_stream0())
            if audio:
                row[slice(*vocab.modality_range("semantic"))] = 0
                if ids:  # a word may begin
                    if onset is None:
                        onset, logits = logits[:, slice(*vocab.modality_range("text"))].logsumexp(-1), logits.clone()
                    logits[b, ids] = onset[b]
        row[torch.as_tensor(ids, dtype=torch.long, device=row.device)] = 0
        if may_stop:
            row[seq.prompt.stop_id] = 0
        rows[b] = row
    return logits + rows


def _prefill(model, sequences: list[_Sequence], device):
    """Run the prompts' known delayed columns, left-padded to a common length: (model output with its
    KV cache, attention mask, last positions, the delayed step each sequence produces next)."""
    delays, num_streams = model.delays, model.vocab.num_streams
    known = [len(s.frames) + delays[0] for s in sequences]  # delayed columns [0, P + d0) are fully known
    length = max(known)
    columns = torch.full((len(sequences), num_streams, length), PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(sequences), length, dtype=torch.long)
    for b, seq in enumerate(sequences):  # those columns hold prompt frames and the ramp's pad only
        frames = torch.as_tensor(seq.prompt.frames, dtype=torch.long)
        columns[b, :, length - known[b]:] = delay(frames, delays, PAD_ID)[:, :known[b]]
        mask[b, length - known[b]:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    heard = prompt_features([s.prompt for s in sequences], known, length, delays[0])
    options = {} if heard is None else {"heard": heard.to(device)}
    out = model(columns.to(device), attention_mask=mask.to(device), position_ids=positions.to(device), use_cache=True,
                **options)
    return out, mask, positions[:, -1:], known


def prompt_features(prompts: list[Prompt], known: list[int], length: int, stream0_delay: int) -> HeardFeatures | None:
    """The prompts' heard features in `_prefill`'s delayed columns, left-padded to `length` (`known[b]`:
    prompt b's columns), placed by training's own rule (`heard_steps`); None when no prompt has any (a
    model without the continuous input path). Generated frames are never heard, as in training, where
    only the audio a task listens to has them."""
    with_features = [p for p in prompts if p.features is not None]
    if not with_features:
        return None
    values = torch.zeros(len(prompts), length, with_features[0].features.shape[1])
    present = torch.zeros(len(prompts), length, dtype=torch.bool)
    for b, prompt in enumerate(prompts):
        if prompt.features is not None:
            placed, heard = heard_steps(prompt.frames, prompt.heard, prompt.features, stream0_delay, known[b])
            values[b, length - known[b]:] = torch.from_numpy(placed.astype(np.float32))
            present[b, length - known[b]:] = torch.from_numpy(heard)
    return HeardFeatures(values, present)


def _advance(sequences: list[_Sequence], steps: list[int], chosen: list[list[int]], delays) -> torch.Tensor:
    """Write each sequence's cells of its delayed step (forced ones replace what was chosen); the
    column `[B, N]` to feed back."""
    for b, seq in enumerate(sequences):
        for n in range(len(delays)):
            t = steps[b] - delays[n]
            forced = seq.cell(n, t)
            if forced is not None:
                chosen[b][n] = forced
            seq.put(n, t, chosen[b][n])
    return torch.tensor(chosen)


def _feed(model, column: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache, device):
    """One delayed column `[B, N]` more through the model on its KV cache: (output, mask, positions)."""
    mask = torch.cat([mask, torch.ones(len(column), 1, dtype=torch.long)], 1)
    positions = positions + 1
    out = model(column[:, :, None].to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                past_key_values=cache, use_cache=True)
    return out, mask, positions


@torch.no_grad()
def generate(model, prompts: list[Prompt], sampling: Sampling | None = None, progress: bool = False) -> list[Generated]:
    """Continue every prompt until its stop id (and the lagging streams' last frames) or max_frames."""
    from opuslm.progress import progress_bar

    if not prompts:
        return []
    _check_prompts(model, prompts)
    sampling = sampling or Sampling()
    vocab, delays = model.vocab, model.delays
    num_streams, d0, max_delay = vocab.num_streams, delays[0], max(delays)
    device = next(model.parameters()).device
    sequences = [_Sequence(p, num_streams, vocab.modality_range("semantic")) for p in prompts]
    stop_allowed = _stream0_allowed(model, prompts, device)
    generator = torch.Generator(device=device).manual_seed(sampling.seed)
    out, mask, positions, steps = _prefill(model, sequences, device)
    is_text = torch.tensor([p.target == "text" for p in prompts], device=device)
    codebook_starts = torch.tensor([vocab.stream_range(n)[0] for n in range(1, num_streams)], device=device)[:, None]
    bar = progress_bar(total=max(p.max_frames for p in prompts) + max_delay, desc="generating", unit="frame",
               disable=not progress)
    while True:
        hidden = out.last_hidden_state[:, -1]
        # stream 0 first: its stop decides the other streams' cells; the codebooks are sampled together
        logits = constrained(model, sequences, stop_allowed, model.stream_logits(hidden, 0).float())
        choice = logits.argmax(-1)
        if not is_text.all():
            choice = torch.where(is_text, choice, _sample(logits, sampling, generator))
        codes = model.codebook_logits(hidden).transpose(0, 1).float()  # [K, B, size]
        codes = _sample(codes.flatten(0, 1), sampling, generator).view(num_streams - 1, len(prompts))
        chosen = torch.cat([choice[None], codes + codebook_starts], 0).T.tolist()  # [B][N]
        column = _advance(sequences, steps, chosen, delays)
        steps = [s + 1 for s in steps]
        bar.update(1)
        if all(seq.finished(steps[b], d0, max_delay) for b, seq in enumerate(sequences)):
            break
        out, mask, positions = _feed(model, column, mask, positions, returned_cache(out), device)
    bar.close()
    return [seq.result() for seq in sequences]


@torch.no_grad()
def teacher_forced(model, frames: np.ndarray) -> np.ndarray:
    """The model's greedy choice for every cell of undelayed `frames` `[N, T]` given the true cells before
    it in the delayed order it was trained in (each stream over its own ids): `[N, T]`. What generation
    would choose if every earlier choice had been right, so a target missed here is missed by the model's
    predictions, not by its drift; the first delayed column, which nothing predicts, keeps its ids."""
    from opuslm.interleave import undelay

    vocab, delays = model.vocab, model.delays
    device = next(model.parameters()).device
    delayed = delay(torch.as_tensor(frames, dtype=torch.long)[None], delays, PAD_ID).to(device)  # [1, N, S]
    hidden = model.hidden_states(delayed[..., :-1])
    choices = delayed.clone()
    for n in range(vocab.num_streams):
        choices[:, n, 1:] = model.stream_logits(hidden, n).argmax(-1) + vocab.stream_range(n)[0]
    return undelay(choices, delays)[0].cpu().numpy()
