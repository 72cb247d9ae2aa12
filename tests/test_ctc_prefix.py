"""CTC prefix scores against a naive sum over every alignment, and joint CTC decoding of transcripts: what the
posteriors spell is written, and they are the posteriors training asked of the same states."""

import itertools
import math

import numpy as np
import pytest
import torch

from opuslm.batch_stream import HeardFeatures
from opuslm.errors import OpusLMError
from opuslm.infer import beam
from opuslm.infer.ctc_prefix import CTCPrefixScorer, JointCTC, utterance_posteriors
from opuslm.infer.decode import Prompt, _prefill, _Sequence, prompt_features
from opuslm.infer.sampling import Sampling
from opuslm.interleave import delay
from opuslm.model.loss import blank_and_text_rows
from opuslm.vocab import PAD_ID
from test_decode import VOCAB as DECODE_VOCAB
from test_decode import random_prompts, tiny_model
from test_heard_features import grown
from test_model import VOCAB as MODEL_VOCAB

TEXT_START, VOCAB = 10, 16  # joint ids: text ids 0, 1, 2 are 10, 11, 12; 15 is the stop id


def collapsed(path):
    out, previous = [], 0
    for index in path:
        if index != 0 and index != previous:
            out.append(index)
        previous = index
    return tuple(out)


def naive(log_probs, length, text, exact):
    """log p(the transcript is `text` (exact) or begins with it), summed over every alignment path."""
    total = 0.0
    for path in itertools.product(range(log_probs.shape[-1]), repeat=length):
        out = collapsed(path)
        if (out == text) if exact else (out[:len(text)] == text):
            total += math.exp(sum(log_probs[t, i].item() for t, i in enumerate(path)))
    return math.log(total) if total else float("-inf")


def scorer_and_posteriors(seed=0, candidates=3):
    torch.manual_seed(seed)
    log_probs = torch.randn(2, 5, 4).log_softmax(-1)  # utterance 1 has 3 frames: its last two are padding
    return CTCPrefixScorer(log_probs, torch.tensor([5, 3]), TEXT_START, candidates), log_probs


def uniform_attention(rows):
    att = torch.full((rows, VOCAB), float("-inf"))
    att[:, TEXT_START:TEXT_START + 3] = math.log(0.25)
    att[:, 15] = math.log(0.25)
    return att


@pytest.mark.parametrize("texts", [[(1, 2, 2), (3, 1)], [(2,), (2, 2)], [(3, 3, 1), (1, 1, 1)]])
def test_prefix_and_exact_scores_equal_the_sum_over_alignments(texts):
    scorer, log_probs = scorer_and_posteriors()
    stop = torch.tensor([15, 15])
    state = scorer.initial(torch.tensor([0, 1]))
    for step in range(max(map(len, texts)) + 1):
        joint, pending = scorer.joint(state, uniform_attention(2), stop, weight=1.0)
        for u, text in enumerate(texts):
            prefix = text[:step]
            ended = naive(log_probs[u], [5, 3][u], prefix, exact=True)
            assert joint[u, 15].item() + state.prefix[u].item() == pytest.approx(ended, abs=1e-4)
            for index in (1, 2, 3):
                extended = naive(log_probs[u], [5, 3][u], prefix + (index,), exact=False)
                got = joint[u, TEXT_START + index - 1].item() + state.prefix[u].item()
                assert got == pytest.approx(extended, abs=1e-4) or (math.isinf(extended) and math.isinf(got))
        tokens = [TEXT_START + text[step] - 1 if step < len(text) else 15 for text in texts]
        state = scorer.advance(pending, [0, 1], tokens)


def test_only_the_attentions_best_candidates_and_the_stop_are_scored():
    scorer, _ = scorer_and_posteriors(candidates=2)
    att = uniform_attention(1)
    att[0, TEXT_START + 1] = math.log(0.05)  # text id 1 is the attention's worst: not a candidate
    joint, _ = scorer.joint(scorer.initial(torch.tensor([0])), att, torch.tensor([15]), weight=0.5)
    finite = torch.isfinite(joint[0]).nonzero()[:, 0].tolist()
    assert finite == [TEXT_START, TEXT_START + 2, 15]


def test_the_weight_mixes_attention_and_ctc():
    scorer, _ = scorer_and_posteriors()
    state = scorer.initial(torch.tensor([0]))
    att = uniform_attention(1)
    only_ctc, _ = scorer.joint(state, att, torch.tensor([15]), weight=1.0)
    half, _ = scorer.joint(state, att, torch.tensor([15]), weight=0.5)
    allowed = torch.isfinite(att[0])
    assert torch.allclose(half[0, allowed], 0.5 * att[0, allowed] + 0.5 * only_ctc[0, allowed])


def test_a_stopped_hypothesis_keeps_its_state():
    scorer, _ = scorer_and_posteriors()
    state = scorer.initial(torch.tensor([0, 1]))
    _, pending = scorer.joint(state, uniform_attention(2), torch.tensor([15, 15]), weight=1.0)
    kept = scorer.advance(pending, [1, 1], [15, TEXT_START])  # row 1 twice: once stopped, once extended
    assert torch.equal(kept.r[0], state.r[1]) and kept.last.tolist() == [-1, 1]
    assert kept.utterance.tolist() == [1, 1]


def test_bad_settings_are_refused():
    for weight in (0.0, 1.5):
        with pytest.raises(OpusLMError, match="--ctc-weight"):
            JointCTC(weight)
    with pytest.raises(OpusLMError, match="--ctc-layer"):
        JointCTC(0.3, "middle")
    with pytest.raises(OpusLMError, match="no frames"):
        CTCPrefixScorer(torch.zeros(1, 2, 4), torch.tensor([0]), TEXT_START, 3)


# ---- joint decoding in the beam search ----

def spelled(text_ids, frames_each=2):
    """CTC log-posteriors `[1, T, 1 + text]` all but certain of `text_ids` (a blank between ids)."""

    path = [0]
    for i in text_ids:
        path += [i + 1] * frames_each + [0]
    probs = torch.full((len(path), 1 + DECODE_VOCAB.text_size), 1e-4)
    probs[torch.arange(len(path)), path] = 1.0
    return (probs / probs.sum(-1, keepdim=True)).log()[None], torch.tensor([len(path)])


@pytest.mark.parametrize("width", [1, 3])
def test_joint_decoding_writes_what_the_ctc_posteriors_spell(monkeypatch, width):


    model = tiny_model()
    prompt = random_prompts(4, 1)[0]
    prompt.target, prompt.heard, prompt.transcribes = "text", (0, 1), True
    wanted = [3, 7, 7, 2]
    own = beam.beam_search(model, [prompt], width)[0]
    assert DECODE_VOCAB.to_text(own.frames[0]).tolist() != wanted
    monkeypatch.setattr(beam, "utterance_posteriors", lambda *args: spelled(wanted))
    heard = beam.beam_search(model, [prompt], width, JointCTC(0.9, candidates=DECODE_VOCAB.text_size))[0]
    assert DECODE_VOCAB.to_text(heard.frames[0]).tolist() == wanted and heard.stopped
    assert np.array_equal(heard.frames[1:], np.full_like(heard.frames[1:], 0))  # the other streams: pad


def test_joint_decoding_refuses_prompts_that_do_not_transcribe():

    prompt = random_prompts(4, 1)[0]
    prompt.target = "text"
    with pytest.raises(OpusLMError, match="transcripts of heard audio"):
        beam.beam_search(tiny_model(), [prompt], 1, JointCTC(0.3))


@pytest.mark.parametrize("layer", ["adapter", "output"])
def test_the_posteriors_of_a_batch_are_each_prompts_own_and_trainings(tmp_path, layer):
    """Left-padded prompts get the posteriors each gets alone, and they are training's: the adapter's CTC
    rows over the prompt's features, or the decoder's states at the audio's steps and the trailer."""


    model = grown(tmp_path, 5)
    with torch.no_grad():
        torch.nn.init.normal_(model.heard_adapter[2].weight)
    rng = np.random.default_rng(0)
    prompts = []
    for length, heard in ((9, (2, 6)), (14, (3, 10))):
        frames = rng.integers(MODEL_VOCAB.text_offset, MODEL_VOCAB.size, (MODEL_VOCAB.num_streams, length))
        features = rng.standard_normal((heard[1] - heard[0], 5)).astype(np.float32)
        prompts.append(Prompt(frames, "text", 1, 5, heard, features, transcribes=True))

    def posteriors(chosen):
        with torch.no_grad():
            out, _, _, known = _prefill(model, [_Sequence(p, MODEL_VOCAB.num_streams, MODEL_VOCAB.modality_range("semantic")) for p in chosen], "cpu")
            return utterance_posteriors(model, chosen, out, known, layer)

    batched, lengths = posteriors(prompts)
    weight, bias = blank_and_text_rows(model)
    for b, prompt in enumerate(prompts):
        alone, length = posteriors([prompt])
        assert lengths[b] == length[0] and torch.allclose(batched[b, :length[0]], alone[0], atol=1e-5)
        with torch.no_grad():
            if layer == "adapter":
                values = torch.from_numpy(prompt.features)[None]
                rows = model.heard_adapter_output(HeardFeatures(values, torch.ones(values.shape[:2], dtype=torch.bool)),
                                                  torch.float32)[0]
            else:  # the undelayed prompt's delayed columns, run whole; the span as `ctc_span` gives it
                columns = delay(torch.from_numpy(prompt.frames), model.delays, PAD_ID)[None, :, :prompt.frames.shape[1]
                                                                                        + model.delays[0]]
                known = [columns.shape[-1]]
                hidden = model.hidden_states(columns, None, None, prompt_features([prompt], known, known[0], model.delays[0]))
                start, end = prompt.heard[0], min(prompt.heard[1] + max(model.delays), known[0])
                rows = hidden[0, start:end]
            expected = torch.nn.functional.linear(rows, weight, bias).float().log_softmax(-1)
        assert torch.allclose(alone[0], expected, atol=1e-5)


def test_the_adapter_posteriors_need_the_continuous_path(tmp_path):

    prompt = Prompt(torch.zeros(4, 3, dtype=torch.long).numpy(), "text", 1, 5, (0, 2), transcribes=True)
    with pytest.raises(OpusLMError, match="--ctc-layer output"):
        utterance_posteriors(grown(tmp_path, 0), [prompt], None, [3], "adapter")


def test_sampling_asks_for_joint_decoding_by_its_weight():

    assert Sampling().joint_ctc is None
    assert Sampling(ctc_weight=0.3, ctc_layer="output").joint_ctc == JointCTC(0.3, "output")
    with pytest.raises(OpusLMError, match="--ctc-weight"):
        Sampling(ctc_weight=-0.1)
