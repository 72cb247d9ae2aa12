"""Beam search for text targets (ASR and the understanding tasks): per prompt, the `beam` most likely
continuations are kept, and the finished one with the best score wins. A score is the sum of the
stream-0 log-probabilities of its ids, the stop id included, over their number (transformers' beam
search with `length_penalty=1.0`, and its rule for when a prompt is done).

While a text target is written only stream 0 is chosen: every other stream is forced (the prompt's
ramp, then pad), so a beam is one `_Sequence` of `decode.py` and its score. The beams of a prompt
start from one prefill of the prompt, whose KV cache rows are repeated and then reordered as beams
branch (`Cache.batch_repeat_interleave`, `Cache.reorder_cache`). Width 1 is greedy decoding, exactly
(tested against `generate`). With `ctc`, transcripts are scored jointly with the CTC posteriors of the
audio they transcribe (`opuslm.infer.ctc_prefix`), at any width.

    beam_search(model, prompts, beam=4)  # -> one Generated per prompt, as generate returns
    beam_search(model, prompts, beam=1, ctc=JointCTC(weight=0.3, layer="adapter"))
"""

from __future__ import annotations

import torch

from opuslm.errors import OpusLMError
from opuslm.infer.ctc_prefix import CTCPrefixScorer, JointCTC, utterance_posteriors
from opuslm.infer.decode import (Generated, Prompt, _advance, _check_prompts, _feed, _prefill, _Sequence,
                                 _stream0_allowed, constrained)
from opuslm.model.multistream import returned_cache
from opuslm.vocab import PAD_ID


@torch.no_grad()
def beam_search(model, prompts: list[Prompt], beam: int, ctc: JointCTC | None = None) -> list[Generated]:
    """The best-scoring finished continuation of every prompt (all text targets; with `ctc`, all transcripts)."""
    if beam < 1:
        raise OpusLMError(f"the beam width must be at least 1, got {beam}")
    if not prompts:
        return []
    _check_prompts(model, prompts)
    if any(p.target != "text" for p in prompts):
        raise OpusLMError("beam search writes text targets; audio targets are sampled (`generate`)")
    if ctc is not None and not all(p.transcribes for p in prompts):
        raise OpusLMError("joint CTC decoding scores transcripts of heard audio (ASR); a prompt here is another task")
    num_streams, delays = model.vocab.num_streams, model.delays
    device = next(model.parameters()).device
    starts = [_Sequence(p, num_streams, model.vocab.modality_range("semantic")) for p in prompts]
    out, mask, positions, steps = _prefill(model, starts, device)
    batch, width = len(prompts), beam
    cache = returned_cache(out)
    cache.batch_repeat_interleave(width)
    hidden = out.last_hidden_state[:, -1].repeat_interleave(width, 0)
    mask, positions = mask.repeat_interleave(width, 0), positions.repeat_interleave(width, 0)
    if ctc is not None:
        scorer = CTCPrefixScorer(*utterance_posteriors(model, prompts, out, steps, ctc.layer),
                                 model.vocab.modality_range("text")[0], ctc.candidates)
        prefixes = scorer.initial(torch.arange(batch, device=device).repeat_interleave(width))
        stop_ids = torch.tensor([p.stop_id for p in prompts], device=device).repeat_interleave(width)
    steps = [step for step in steps for _ in range(width)]
    allowed = _stream0_allowed(model, prompts, device).repeat_interleave(width, 0)
    beams = [start.clone() for start in starts for _ in range(width)]
    # a prompt's copies but the first score -inf: its first step branches from one beam into `width`
    scores = torch.tensor([0.0 if w == 0 else float("-inf") for _ in prompts for w in range(width)], device=device)
    finished: list[list[tuple[float, Generated]]] = [[] for _ in prompts]
    done = [False] * batch
    length = 0  # ids each running beam has written (all beams of a step have the same number)
    while True:
        logprobs = constrained(model, beams, allowed, model.stream_logits(hidden, 0).float()).log_softmax(-1)
        if ctc is not None:
            logprobs, pending = scorer.joint(prefixes, logprobs, stop_ids, ctc.weight)
        vocab_size = logprobs.shape[-1]
        top_scores, top_index = (scores[:, None] + logprobs).view(batch, -1).topk(2 * width, dim=-1)
        length += 1
        keep, tokens, kept_scores = [], [], []
        for b, prompt in enumerate(prompts):
            kept = []
            for rank, (score, index) in enumerate(zip(top_scores[b].tolist(), top_index[b].tolist())):
                if score == float("-inf"):  # fewer allowed continuations than beams (a constraint)
                    break
                source, token = b * width + index // vocab_size, index % vocab_size
                if token == prompt.stop_id:
                    if rank < width and not done[b]:  # a stop among the best `width` ends a hypothesis
                        ended = beams[source].clone()
                        ended.put(0, steps[source] - delays[0], token)
                        finished[b].append((score / length, ended.result()))
                    continue
                kept.append((source, token, score))
                if len(kept) == width:
                    break
            if not kept:  # every continuation ended: the prompt is done, its rows idle on its stop id
                done[b] = True
                kept = [(b * width, prompt.stop_id, float("-inf"))]
            kept += [(kept[0][0], kept[0][1], float("-inf"))] * (width - len(kept))  # dead rows copy a live one
            for source, token, score in kept:
                keep.append(source), tokens.append(token), kept_scores.append(score)
            finished[b] = sorted(finished[b], key=lambda item: -item[0])[:width]
            best_running = max(score for _, _, score in kept) / length
            done[b] = done[b] or (len(finished[b]) == width and finished[b][-1][0] >= best_running)
        beams = [beams[i].clone() for i in keep]
        if ctc is not None:
            prefixes = scorer.advance(pending, keep, tokens)
        scores = torch.tensor(kept_scores, device=device)
        cache.reorder_cache(torch.tensor(keep, device=device))
        column = _advance(beams, steps, [[token] + [PAD_ID] * (num_streams - 1) for token in tokens], delays)
        for i, seq in enumerate(beams):  # max_frames reached without a stop: it ends here, unstopped
            b = i // width
            if seq.end is not None and not done[b]:
                finished[b].append((scores[i].item() / length, seq.result()))
                done[b] = all(other.end is not None for other in beams[b * width:(b + 1) * width])
        if all(done):
            break
        steps = [step + 1 for step in steps]
        out, mask, positions = _feed(model, column, mask, positions, cache, device)
        hidden, cache = out.last_hidden_state[:, -1], returned_cache(out)
    return [max(hypotheses, key=lambda item: item[0])[1] for hypotheses in finished]
