"""Factual questions asked aloud: does what the LLM knows in text reach it through speech?

The questions of `opuslm.eval.text.factual_questions` are spoken by eSpeak voices that no corpus
utterance of the embedded default uses in training (the roster's test voices, neutral and normal), and
each of the four options is scored as the model would write it: the `sttc_answer` template's frames
with that option as the answer (the instruction first, as OSUM tasks are asked), through the delay
interleave and the model, summing the log-probabilities of the option's text tokens in stream 0 over
the text range. A model with the continuous input path hears the question's features too, placed as
training and decoding place them (`batch_stream.heard_steps`). The option with the highest sum is the
model's answer: the same log-likelihood rule as the text questions (`TextScorer.multiple_choice`), so
text-QA minus spoken-QA accuracy is the modality gap and nothing else.
"""

from __future__ import annotations

import numpy as np
import torch

from opuslm.batch_stream import HeardFeatures, heard_steps
from opuslm.interleave import delay
from opuslm.vocab import PAD_ID

SPOKEN_QA_TASK = "sttc_answer"
VOICE_SEED = 0  # the embedded corpus's roster seed: its test voices are unheard in training


def spoken_questions(questions: list[str]) -> list[tuple[np.ndarray, int, str]]:
    """Each question spoken by the next of the roster's test voices: (int16 audio, sample rate, speaker)."""
    from opuslm.data.synth import espeak, speakers

    voices = [s for s in speakers.roster(VOICE_SEED) if s.split == "test"]
    out = []
    for index, question in enumerate(questions):
        voice = voices[index % len(voices)]
        synthesis = espeak.synthesize(question, voice.voice_for("neutral", "normal"))
        out.append((synthesis.samples, synthesis.sample_rate, voice.id))
    return out


@torch.no_grad()
def answer_logprobs(lm, audio: tuple[np.ndarray, int], options: list[str], instruction: str) -> list[float]:
    """log p(option's text tokens | the spoken question) for each option, in one batch. The delayed
    columns the options share (the instruction and the question) run once; the options' own columns run
    on that KV cache, a row each."""
    from dataclasses import replace

    from opuslm.model.multistream import returned_cache

    model, vocab = lm.model, lm.vocab
    heard = lm.tokenize_audio((np.asarray(audio[0], np.float32) / 32768.0, audio[1]))
    built = [lm.builder.build(SPOKEN_QA_TASK, replace(heard, meta={**heard.meta, "answer": option}), instruct=True,
                              instruction=instruction) for option in options]
    steps = max(f.tokens.shape[1] for f in built)
    frames = torch.full((len(built), vocab.num_streams, steps), PAD_ID, dtype=torch.long)
    for row, f in enumerate(built):  # right-padded: a causal model's earlier logits do not see the pad
        frames[row, :, :f.tokens.shape[1]] = torch.from_numpy(f.tokens)
    device = next(model.parameters()).device
    delayed = delay(frames, model.delays, PAD_ID).to(device)
    hears = heard.features is not None and lm.tasks.hears_features(SPOKEN_QA_TASK)  # as training and decoding hear it
    if hears:  # the options share the question, so its features sit in the same steps of every row
        values, present = heard_steps(built[0].tokens, built[0].heard, heard.features, model.delays[0], delayed.shape[-1])
        values, present = torch.from_numpy(values.astype(np.float32)).to(device), torch.from_numpy(present).to(device)

    def heard_in(columns: slice, rows: int) -> HeardFeatures | None:
        return HeardFeatures(values[columns].expand(rows, -1, -1), present[columns].expand(rows, -1)) if hears else None

    text = slice(*vocab.modality_range("text"))
    cells = [[t for t in np.flatnonzero(f.target[0]) if text.start <= f.tokens[0, t] < text.stop]  # not the <eos>
             for f in built]
    differs = (delayed != delayed[:1]).any(1).any(0).nonzero()
    first_own = int(differs[0]) if len(differs) else delayed.shape[-1] - 1
    first_scored = min((row[0] for row in cells if row), default=first_own)  # its logits come from the column before
    shared = max(min(first_own, first_scored), 1)
    prefix = model(delayed[:1, :, :shared], use_cache=True, heard=heard_in(slice(None, shared), 1))
    cache = returned_cache(prefix)
    cache.batch_repeat_interleave(len(built))
    positions = torch.arange(shared, delayed.shape[-1], device=device).expand(len(built), -1)
    rest = model(delayed[..., shared:], position_ids=positions, past_key_values=cache,
                 heard=heard_in(slice(shared, None), len(built)))
    hidden = torch.cat([prefix.last_hidden_state[:, -1:].expand(len(built), -1, -1), rest.last_hidden_state], 1)
    logprobs = model.stream_logits(hidden, 0)[..., text].float().log_softmax(-1)  # column c predicts shared + c
    return [sum(float(logprobs[row, t - shared, int(f.tokens[0, t]) - text.start]) for t in cells[row])
            for row, f in enumerate(built)]


def spoken_multiple_choice(lm, items: list[tuple[str, list[str], int]], instruction: str,
                           progress: bool = False) -> tuple[float, list[dict]]:
    """Accuracy over `items` (question, options, right index) asked aloud, and per item the scores."""
    from opuslm.progress import progress_bar

    spoken = spoken_questions([question for question, _, _ in items])
    correct, rows = 0, []
    for (question, options, answer), (samples, rate, speaker) in progress_bar(
            list(zip(items, spoken)), desc="spoken questions", disable=not progress, leave=False):
        scores = answer_logprobs(lm, (samples, rate), options, instruction)
        chosen = max(range(len(options)), key=scores.__getitem__)
        correct += chosen == answer
        rows.append({"question": question, "speaker": speaker, "options": options, "answer": answer,
                     "chosen": chosen, "scores": scores})
    return correct / max(len(items), 1), rows
