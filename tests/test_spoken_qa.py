"""Spoken factual questions: the batched option scores against a naive reference, the voices held out."""

import numpy as np
import pytest
import torch

from opuslm.cli.main import main


@pytest.fixture(scope="module")
def tiny_lm(tiny_shards, tmp_path_factory):
    from opuslm.infer.speech_lm import SpeechLM

    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["model", "init", "--preset", "tiny", "--tokens", str(tiny_shards), "--out", str(out),
                 "--delays", "0,1,2,3,4"]) == 0
    return SpeechLM.load(out)


@pytest.fixture(scope="module")
def listening_lm(heard_shards, tmp_path_factory):
    """A tiny model with the continuous input path, its adapter's output layer made non-zero (it starts at
    zero), so that what it hears changes the scores."""
    from opuslm.infer.speech_lm import SpeechLM

    out = tmp_path_factory.mktemp("model") / "heard"
    assert main(["model", "init", "--preset", "tiny", "--tokens", str(heard_shards), "--out", str(out),
                 "--delays", "0,1,2,3,4", "--heard-features"]) == 0
    lm = SpeechLM.load(out)
    torch.manual_seed(0)
    torch.nn.init.normal_(lm.model.heard_adapter[-1].weight, std=0.5)
    return lm


def naive_option_logprob(lm, audio, option, instruction, hear: bool = True):
    """One option alone, no batch, no padding: the answer's text ids placed after the prompt frames, the
    question's heard features (where the model has the path and `hear`) where training puts them, and each
    answer id's log-probability over the text range read off the undelayed stream-0 logits."""
    from opuslm.batch_stream import HeardFeatures, heard_steps
    from opuslm.interleave import delay
    from opuslm.tokenize.text import text_ids
    from opuslm.vocab import PAD_ID

    heard = lm.tokenize_audio((np.asarray(audio[0], np.float32) / 32768.0, audio[1]))
    built = lm.builder.build("sttc_answer", heard, instruct=True, instruction=instruction, prompt_only=True)
    prompt = built.tokens
    answer = lm.vocab.text(text_ids(lm.tokenizers.text, option))
    frames = np.full((lm.vocab.num_streams, prompt.shape[1] + len(answer)), PAD_ID, dtype=np.int64)
    frames[:, :prompt.shape[1]] = prompt
    frames[0, prompt.shape[1]:] = answer
    delayed = delay(torch.from_numpy(frames)[None], lm.model.delays, PAD_ID)
    features = {}
    if hear and heard.features is not None:
        values, present = heard_steps(frames, built.heard, heard.features, lm.model.delays[0], delayed.shape[-1])
        features["heard"] = HeardFeatures(torch.from_numpy(values.astype(np.float32))[None], torch.from_numpy(present)[None])
    with torch.no_grad():
        hidden = lm.model(delayed, **features).last_hidden_state
        logits = lm.model.stream_logits(hidden, 0)[0]
    low, high = lm.vocab.modality_range("text")
    total = 0.0
    for step, token in enumerate(answer):
        position = prompt.shape[1] + step - 1  # the frame before the token predicts it
        total += float(logits[position, low:high].float().log_softmax(-1)[int(token) - low])
    return total


def test_option_scores_equal_one_option_at_a_time_token_by_token(tiny_lm):
    from opuslm.eval.spoken_qa import answer_logprobs, spoken_questions

    (samples, rate, _), = spoken_questions(["What is the capital of France?"])
    # different lengths (the batch is right-padded); then all four with the same first tokens, which the
    # options' shared columns hold and which are scored all the same
    for options in (["Paris", "Buenos Aires", "Mexico City", "a"], ["Buenos Aires", "Buenos Dias", "Bueno", "Bu"]):
        scores = answer_logprobs(tiny_lm, (samples, rate), options, "Answer the spoken question.")
        naive = [naive_option_logprob(tiny_lm, (samples, rate), option, "Answer the spoken question.") for option in options]
        assert scores == pytest.approx(naive, rel=1e-4, abs=1e-4)
    assert len(set(np.round(scores, 3))) == 4


def test_a_model_with_the_continuous_path_hears_the_question_through_it(listening_lm):
    from opuslm.eval.spoken_qa import answer_logprobs, spoken_questions

    (samples, rate, _), = spoken_questions(["What is the capital of France?"])
    options = ["Paris", "Buenos Aires", "Mexico City", "a"]
    instruction = "Answer the spoken question."
    scores = answer_logprobs(listening_lm, (samples, rate), options, instruction)
    heard = [naive_option_logprob(listening_lm, (samples, rate), option, instruction) for option in options]
    deaf = [naive_option_logprob(listening_lm, (samples, rate), option, instruction, hear=False) for option in options]
    assert scores == pytest.approx(heard, rel=1e-4, abs=1e-4)
    assert min(abs(a - b) for a, b in zip(heard, deaf)) > 1e-3  # the features reach the answer


def test_questions_are_spoken_by_the_held_out_voices_in_turn():
    from opuslm.data.synth import speakers
    from opuslm.eval.spoken_qa import VOICE_SEED, spoken_questions

    test_voices = [s.id for s in speakers.roster(VOICE_SEED) if s.split == "test"]
    spoken = spoken_questions(["what is two plus two"] * (len(test_voices) + 1))
    assert [speaker for _, _, speaker in spoken] == test_voices + test_voices[:1]
    again = spoken_questions(["what is two plus two"])
    assert np.array_equal(again[0][0], spoken[0][0]) and spoken[0][0].size > spoken[0][1]  # over a second


def test_spoken_multiple_choice_counts_what_the_scores_choose(tiny_lm, monkeypatch):
    from opuslm.eval import spoken_qa

    items = [("What colour is snow?", ["white", "red", "blue", "green"], 0),
             ("What colour is coal?", ["white", "black", "blue", "green"], 1)]
    monkeypatch.setattr(spoken_qa, "answer_logprobs", lambda lm, audio, options, instruction:
                        [-1.0 if option == "white" else -2.0 for option in options])
    accuracy, rows = spoken_qa.spoken_multiple_choice(tiny_lm, items, "Answer the spoken question.")
    assert accuracy == 0.5 and [row["chosen"] for row in rows] == [0, 0]
