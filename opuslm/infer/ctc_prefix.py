"""Joint CTC/attention decoding of transcripts: the beam search's next-token scores mixed with the CTC
prefix score of the same audio (Watanabe et al., 2017; how ESPnet decodes its hybrid ASR models).

A decoder-only model that has heard too little speech falls back on its text prior: it writes a sentence
it has read, with the slot words swapped ("please put the book under the table" for "please put our
dirty key under the tree"). The CTC posteriors of the audio it listens to (the auxiliary CTC that training
asked of the continuous input path's adapter, or of the decoder's own states at the audio) say which
words the audio holds and in what order, frame by frame, and cannot invent a sentence. Decoding keeps,
per running hypothesis `g` and candidate id `c`,

    score(g + c) = score(g) + (1 - w) * log p_att(c | g) + w * (log p_ctc(g + c ...) - log p_ctc(g ...))

where `p_ctc(h ...)` is the CTC probability that the transcript begins with `h` (its prefix score), and
for the stop id `p_ctc(g)`, the probability that it is exactly `g`. The CTC terms telescope, so a
finished hypothesis scores `(1 - w) * log p_att + w * log p_ctc` of its whole text. Only the `candidates`
ids the attention scores best (and the stop id) are scored by CTC: the rest stay out (ESPnet's pre-beam).

The prefix score of every candidate costs one pass over the frames (`_extend`), vectorised over the
hypotheses and their candidates; each hypothesis keeps its forward variables `r[t] = (ending in a
non-blank, ending in a blank)` in the log domain.

    scorer = CTCPrefixScorer(log_probs, lengths, text_start, candidates=8)
    state = scorer.initial(rows)                     # rows: the utterance of each hypothesis
    joint, pending = scorer.joint(state, att_logprobs, stop_ids, weight)
    state = scorer.advance(pending, sources, tokens)  # the hypotheses the beam kept
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from opuslm.errors import OpusLMError
from opuslm.infer.sampling import CTC_LAYERS

NEG_INF = float("-inf")
# ids the attention ranks best that CTC scores per hypothesis (ESPnet's pre-beam is 1.5 x the beam; greedy
# decoding needs more than one for CTC to have any say)
CANDIDATES = 10


@dataclass
class JointCTC:
    """Joint decoding of transcripts: `weight` of the CTC prefix score (0 < weight <= 1), `layer` whose
    CTC posteriors score it (`utterance_posteriors`), `candidates` per hypothesis."""

    weight: float
    layer: str = "adapter"
    candidates: int = CANDIDATES

    def __post_init__(self):
        if not 0 < self.weight <= 1:
            raise OpusLMError(f"the CTC weight of joint decoding (--ctc-weight) is in (0, 1], got {self.weight}")
        if self.layer not in CTC_LAYERS:
            raise OpusLMError(f"the CTC layer (--ctc-layer) must be one of {', '.join(CTC_LAYERS)}, got {self.layer!r}")


@dataclass
class PrefixState:
    """The CTC forward variables of `R` hypotheses: `r` `[R, T, 2]` (ending in a non-blank, in a blank),
    `prefix` `[R]` their prefix scores, `last` `[R]` their last CTC index (-1: empty), `utterance` `[R]`."""

    r: torch.Tensor
    prefix: torch.Tensor
    last: torch.Tensor
    utterance: torch.Tensor


@dataclass
class Pending:
    """The candidates scored at one step, for `advance`: their joint ids `[R, K]`, prefix scores `[R, K]`
    and forward variables `[R, T, 2, K]`."""

    ids: torch.Tensor
    prefix: torch.Tensor
    r: torch.Tensor
    state: PrefixState


class CTCPrefixScorer:
    """`log_probs` `[U, T, 1 + text]`: per utterance, CTC log-posteriors over the blank (index 0) and the
    text ids (index i + 1 for the text tokenizer's id i), its frames left-aligned; `lengths` `[U]` its
    frames; `text_start`: the joint id of text id 0; `candidates`: ids scored by CTC per hypothesis."""

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, text_start: int, candidates: int):
        if candidates < 1:
            raise OpusLMError(f"CTC scores at least one candidate per hypothesis, got {candidates}")
        if int(lengths.min()) < 1:
            raise OpusLMError("an utterance with no frames has no CTC posteriors to score its transcript")
        frames = log_probs.shape[1]
        beyond = torch.arange(frames, device=log_probs.device)[None] >= lengths[:, None].to(log_probs.device)
        # past an utterance's end: blank with probability 1, so every sum ending later equals the sum at its end
        self.log_probs = log_probs.float().clone()
        self.log_probs[beyond] = NEG_INF
        self.log_probs[..., 0] = self.log_probs[..., 0].masked_fill(beyond, 0.0)
        self.text_start, self.candidates = text_start, candidates

    def initial(self, utterance: torch.Tensor) -> PrefixState:
        """The empty prefix of each hypothesis (`utterance[r]`: the utterance hypothesis r transcribes)."""
        blank = self.log_probs[utterance, :, 0]
        r = torch.stack([torch.full_like(blank, NEG_INF), blank.cumsum(-1)], -1)
        zeros = torch.zeros(len(utterance), device=blank.device)
        return PrefixState(r, zeros, torch.full_like(utterance, -1), utterance)

    def _extend(self, state: PrefixState, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix scores `[R, K]` and forward variables `[R, T, 2, K]` of every hypothesis extended by each of
        its CTC indices `index` `[R, K]`."""
        frames = torch.arange(self.log_probs.shape[1], device=index.device)
        # only the candidates' and the blank's columns: a hypothesis's whole [T, 1 + text] is 49k columns wide
        x_c = self.log_probs[state.utterance[:, None, None], frames[None, :, None], index[:, None, :]]  # [R, T, K]
        x_blank = self.log_probs[state.utterance, :, :1]
        # phi[t]: the prefix ended by frame t with c still to come; a repeated c needs a blank between
        total = torch.logaddexp(state.r[..., 0], state.r[..., 1])[..., None]
        phi = torch.where(index[:, None, :] == state.last[:, None, None], state.r[..., 1:2], total)
        r_n, r_b = torch.empty_like(x_c), torch.empty_like(x_c)
        empty = (state.last == -1)[:, None]
        r_n[:, 0] = torch.where(empty, x_c[:, 0], torch.full_like(x_c[:, 0], NEG_INF))
        r_b[:, 0] = NEG_INF
        for t in range(1, len(frames)):
            r_n[:, t] = torch.logaddexp(r_n[:, t - 1], phi[:, t - 1]) + x_c[:, t]
            r_b[:, t] = torch.logaddexp(r_n[:, t - 1], r_b[:, t - 1]) + x_blank[:, t]
        prefix = torch.logsumexp(torch.cat([r_n[:, :1], phi[:, :-1] + x_c[:, 1:]], 1), 1)
        return prefix, torch.stack([r_n, r_b], 2)

    def joint(self, state: PrefixState, att: torch.Tensor, stop_ids: torch.Tensor,
              weight: float) -> tuple[torch.Tensor, Pending]:
        """`att` `[R, V]`: the attention's log-probabilities of each hypothesis's next id (-inf where not
        allowed); `stop_ids` `[R]`. The joint scores `[R, V]`: finite only at the `candidates` best allowed
        text ids and the stop id."""
        text = att[:, self.text_start:self.text_start + self.log_probs.shape[-1] - 1]
        best = text.topk(min(self.candidates, text.shape[1]), -1).indices
        prefix, r = self._extend(state, best + 1)
        ending = torch.logaddexp(state.r[:, -1, 0], state.r[:, -1, 1])  # p_ctc(exactly g): the frames are padded
        ids = torch.cat([best + self.text_start, stop_ids[:, None]], 1)
        ctc = torch.cat([prefix, ending[:, None]], 1) - state.prefix[:, None]
        ctc = ctc.masked_fill(ctc.isnan(), NEG_INF)  # an impossible prefix stays impossible (-inf minus -inf)
        chosen = att.gather(1, ids)
        joint = torch.full_like(att, NEG_INF)
        joint.scatter_(1, ids, torch.where(torch.isfinite(chosen), (1 - weight) * chosen + weight * ctc,
                                           torch.full_like(ctc, NEG_INF)))
        return joint, Pending(ids[:, :-1], prefix, r, state)

    def advance(self, pending: Pending, sources: list[int], tokens: list[int]) -> PrefixState:
        """The state of each kept hypothesis: hypothesis `sources[i]` of the scored step extended by joint id
        `tokens[i]` (a stop id, or an id that was no candidate, leaves it as it was: it has ended)."""
        source = torch.as_tensor(sources, device=pending.ids.device)
        token = torch.as_tensor(tokens, device=pending.ids.device)
        match = pending.ids[source] == token[:, None]
        extended = match.any(1)
        k = match.float().argmax(1)  # 0 where not extended: read, then not used
        old = pending.state
        chosen = pending.r[source].gather(3, k[:, None, None, None].expand(-1, pending.r.shape[1], 2, 1))[..., 0]
        r = torch.where(extended[:, None, None], chosen, old.r[source])
        prefix = torch.where(extended, pending.prefix[source].gather(1, k[:, None])[:, 0], old.prefix[source])
        last = torch.where(extended, token - self.text_start + 1, old.last[source])
        return PrefixState(r, prefix, last, old.utterance[source])


def utterance_posteriors(model, prompts, out, known: list[int], layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The CTC log-posteriors `[B, T, 1 + text]` and frame counts `[B]` of the audio each prompt listens to,
    from `layer`: "adapter" scores the continuous input path's adapter output on the prompt's features
    (a `heard_ctc` stage, or data.ctc_layer adapter, trained it), "output" the decoder's own states at the
    audio's steps of the prefill `out` (data.ctc_layer output), the heard audio's steps and the trailer where
    its codebooks land, as training's `ctc_span` scores them. Scored by the same head rows as in training."""
    from opuslm.batch_stream import HeardFeatures
    from opuslm.model.loss import blank_and_text_rows

    if any(p.heard is None for p in prompts):
        raise OpusLMError("CTC scores a transcript of heard audio; a prompt here listens to none")
    weight, bias = blank_and_text_rows(model)
    rows = []
    if layer == "adapter":
        if not model.config.heard_features:
            raise OpusLMError("--ctc-layer adapter needs the continuous input path (the model's heard_features is 0); "
                              "use --ctc-layer output where training set data.ctc_layer output")
        for p in prompts:
            values = torch.as_tensor(np.asarray(p.features, np.float32), device=weight.device)[None]
            present = torch.ones(values.shape[:2], dtype=torch.bool, device=weight.device)
            rows.append(model.heard_adapter_output(HeardFeatures(values, present), weight.dtype)[0])
    else:
        hidden, length, reach = out.last_hidden_state, max(known), max(model.delays)
        for b, p in enumerate(prompts):
            start, end = p.heard[0], min(p.heard[1] + reach, known[b])
            rows.append(hidden[b, length - known[b] + start:length - known[b] + end])
    lengths = torch.tensor([len(r) for r in rows])
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    return F.linear(padded, weight, bias).float().log_softmax(-1), lengths
