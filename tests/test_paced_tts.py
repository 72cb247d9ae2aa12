"""Word-paced TTS: its template (each word's ids before its audio), the pacing constraint, and decoding
under it (an oracle reproduced exactly; a random model made to speak every word in order)."""

import random

import numpy as np
import pytest
import torch

from opuslm.frames_view import decoded_form
from opuslm.infer.decode import Prompt, generate
from opuslm.infer.paced_words import PacedWords
from opuslm.infer.sampling import Sampling
from opuslm.interleave import delay
from opuslm.templates import TemplateBuilder, TemplateError, word_frames, word_ids
from opuslm.tokenize.shards import TokenizedUtterance
from opuslm.tokenize.text import text_ids
from opuslm.vocab import PAD_ID, JointVocab

WORDS = ["zoe", "wanted", "a", "pear", "before", "dinner", "sixteen", "is", "an", "owl"]


def vocab_for(tokenizer, delays=(0, 1, 2)) -> JointVocab:
    return JointVocab(semantic_size=8, num_codebooks=len(delays) - 1, codebook_size=4, text_size=len(tokenizer))


def spoken(tokenizer, words: list[str], starts: list[float], frames: int, rng: random.Random, **meta) -> TokenizedUtterance:
    """An utterance of `words` starting at `starts` seconds, with random ids, `frames` frames."""
    text = " ".join(words)
    times = [[w, s, e] for w, s, e in zip(words, starts, starts[1:] + [frames / 5])]
    return TokenizedUtterance(text_ids(tokenizer, text), np.array([rng.randrange(8) for _ in range(frames)]),
                              np.array([[rng.randrange(4) for _ in range(frames)] for _ in range(2)]),
                              {"id": "u", "text": text, "speaker": "a", "words": times, **meta})


def builder_for(tokenizer, delays=(0, 1, 2)) -> TemplateBuilder:
    return TemplateBuilder(vocab_for(tokenizer, delays), tokenizer, max_delay=max(delays), prompt_frames=2, frame_rate=5)


def test_the_layout_reads_as_documented(char_tokenizer):
    """At 5 frames a second, "hi" spans frames [0, 2) and "yo" [2, 3): each word's ids before its frames;
    the prompt is plain TTS's, cell for cell."""
    builder = builder_for(char_tokenizer)
    example = spoken(char_tokenizer, ["hi", "yo"], [0.0, 0.31], 3, random.Random(0))
    paced = builder.build("tts_paced", example, random.Random(0))
    plain = builder.build("tts", example, random.Random(0))
    assert decoded_form(paced.tokens, builder.vocab, char_tokenizer) == (
        '<sos> <task:tts> <text_start> "hi yo" <pad>x2 <audio_start> "hi" [audio x2] " yo" [audio x1] <eos> <pad>x2')
    start = plain.target_start
    assert paced.target_start == start and np.array_equal(paced.tokens[:, :start], plain.tokens[:, :start])
    assert np.array_equal(builder.build("tts_paced", example, random.Random(0), prompt_only=True).tokens,
                          builder.build("tts", example, random.Random(0), prompt_only=True).tokens)


@pytest.mark.parametrize("seed", range(20))
def test_the_audio_is_plain_tts_audio_and_each_word_comes_where_it_starts(char_tokenizer, seed):
    """Invariants over random sentences and times: the target without its text frames is plain TTS's
    target; the text frames hold the transcript's ids, in order; word k's first id sits just before
    the frame its start time rounds to; the text frames carry no codes and every cell of the target is
    in the loss."""
    rng = random.Random(seed)
    builder = builder_for(char_tokenizer)
    words = rng.sample(WORDS, rng.randint(1, 6))
    frames = rng.randint(len(words), 30)
    starts = sorted(rng.uniform(0, frames / 5) for _ in words[1:])
    example = spoken(char_tokenizer, words, [0.0] + starts, frames, rng)
    paced = builder.build("tts_paced", example, rng)
    plain = builder.build("tts", example, random.Random(0))
    semantic, eos = builder.vocab.modality_range("semantic"), builder.vocab.special("<eos>")
    target = paced.tokens[:, paced.target_start:int(np.flatnonzero(paced.tokens[0] == eos)[-1]) + 1]
    is_audio = (target[0] >= semantic[0]) & (target[0] < semantic[1])
    assert np.array_equal(target[:, is_audio], plain.tokens[:, plain.target_start:][:, :frames])
    text_cells = target[0, ~is_audio]
    assert text_cells[-1] == eos and np.array_equal(builder.vocab.to_text(text_cells[:-1]), example.text_ids)
    assert (target[1:, ~is_audio] == PAD_ID).all()
    assert np.array_equal(paced.target[:, paced.target_start:paced.target_start + target.shape[1]], target != PAD_ID)
    firsts = [len(ids) for ids in word_ids(char_tokenizer, example.meta["text"])]
    text_runs = np.flatnonzero(~is_audio[:-1])  # the text frames, <eos> left out
    audio_before = np.cumsum(is_audio)[text_runs]
    word_starts = [s for s, _ in word_frames(example.meta, 5, frames)]
    assert audio_before[np.cumsum([0] + firsts[:-1])].tolist() == word_starts


def test_word_ids_group_a_bpe_s_ids_by_word(tmp_path):
    """The demo's kind of BPE (byte-level, a word's leading space in its first token): the groups are the
    text's ids, and each decodes to its word."""
    from opuslm.tokenize.text import load_text_tokenizer, train_text_tokenizer

    rng = random.Random(1)
    lines = [" ".join(rng.choices(WORDS, k=6)) for _ in range(200)]
    tokenizer = load_text_tokenizer(train_text_tokenizer(lines, tmp_path / "bpe", vocab_size=300))
    for _ in range(20):
        text = " ".join(rng.choices(WORDS, k=rng.randint(1, 8)))
        groups = word_ids(tokenizer, text)
        assert np.array_equal(np.concatenate(groups), text_ids(tokenizer, text))
        assert [tokenizer.decode(g.tolist()).strip() for g in groups] == text.split()


def test_word_times_must_be_the_transcript_s(char_tokenizer):
    builder = builder_for(char_tokenizer)
    example = spoken(char_tokenizer, ["hi", "yo"], [0.0, 0.3], 3, random.Random(0))
    example.meta["words"] = [["hi", 0.0, 0.3], ["you", 0.3, 0.6]]
    with pytest.raises(TemplateError, match="other words than its transcript"):
        builder.build("tts_paced", example, random.Random(0))
    example.meta.pop("words")
    with pytest.raises(TemplateError, match="no word timestamps"):
        builder.build("tts_paced", example, random.Random(0))


def walk(pacing: PacedWords, rng: random.Random, vocab: JointVocab, audio_id: int, limit: int = 200) -> list[int]:
    """Stream 0 as a model that chooses at random among what the pacing allows would write it."""
    written = []
    while len(written) < limit:
        ids, audio, may_stop = pacing.allowed(written)
        choices = list(ids) + [audio_id] * (3 if audio else 0) + (["stop"] if may_stop else [])
        choice = rng.choice(choices)
        if choice == "stop":
            return written
        written.append(choice)
    raise AssertionError("the walk did not stop")


@pytest.mark.parametrize("seed", range(30))
def test_any_paced_output_speaks_every_word_once_in_order(char_tokenizer, seed):
    """Whatever the model chooses within the pacing: the text written is the text's ids in order, each
    word's ids together, at least one audio frame after each word, and it stops only after the last."""
    rng = random.Random(seed)
    vocab = vocab_for(char_tokenizer)
    text = " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))
    groups = word_ids(char_tokenizer, text)
    written = walk(PacedWords(groups, vocab), rng, vocab, audio_id=vocab.semantic_offset)
    is_text = [i >= vocab.text_offset for i in written]
    assert vocab.to_text([i for i in written if i >= vocab.text_offset]).tolist() == text_ids(char_tokenizer, text).tolist()
    runs, t = [], 0
    while t < len(written):
        run = t
        while run < len(written) and is_text[run] == is_text[t]:
            run += 1
        runs.append((is_text[t], run - t))
        t = run
    assert [kind for kind, _ in runs] == [True, False] * len(groups)
    assert [n for kind, n in runs if kind] == [len(g) for g in groups]


def test_an_empty_text_is_refused(char_tokenizer):
    from opuslm.errors import OpusLMError

    with pytest.raises(OpusLMError, match="at least one word"):
        PacedWords(word_ids(char_tokenizer, "   "), vocab_for(char_tokenizer))


@pytest.mark.parametrize("delays", [[0, 1, 2], [0, 2, 3]])
def test_an_oracle_speaking_paced_is_reproduced_exactly(char_tokenizer, delays):
    """The decoder, pacing on, reproduces a paced target to its last cell: the words forced where the
    oracle writes them, the codebooks pad on the text frames (the delayed cells there are the previous
    word's last frames)."""
    from test_decode import OracleModel

    builder = builder_for(char_tokenizer, delays)
    rng = random.Random(sum(delays))
    examples = [spoken(char_tokenizer, ["zoe", "wanted", "a", "pear"], [0.0, 0.5, 1.3, 1.5], 12, rng),
                spoken(char_tokenizer, ["an", "owl"], [0.0, 0.8], 7, rng)]
    built = [builder.build("tts_paced", ex, rng) for ex in examples]
    eos = builder.vocab.special("<eos>")
    prompts = [Prompt(f.tokens[:, :f.target_start], "audio", eos, 60,
                      constraint=PacedWords(word_ids(char_tokenizer, ex.meta["text"]), builder.vocab))
               for f, ex in zip(built, examples)]
    oracle = OracleModel([delay(torch.from_numpy(f.tokens), delays, PAD_ID) for f in built], delays, builder.vocab)
    for result, frames in zip(generate(oracle, prompts, Sampling(greedy_audio=True)), built):
        end = int(np.flatnonzero(frames.tokens[0] == eos)[-1])
        assert result.stopped and np.array_equal(result.frames, frames.tokens[:, frames.target_start:end])


def test_a_random_model_paced_speaks_every_word_and_its_audio_decodes_alone(char_tokenizer):
    """A random tiny model, sampled: stream 0's text is the text's ids in order, the codebooks are pad on
    exactly the text frames, and SpeechLM's audio is decoded from the other frames only."""
    from transformers import LlamaConfig

    from opuslm.infer.speech_lm import SpeechLM
    from opuslm.model.config import MultiStreamConfig
    from opuslm.model.multistream import OpusLM

    delays = [0, 1, 2]
    builder = builder_for(char_tokenizer, delays)
    vocab = builder.vocab
    config = LlamaConfig(vocab_size=len(char_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = OpusLM.from_llm(config, vocab, MultiStreamConfig(delays=delays), seed=3).eval()
    text = "zoe wanted a pear"
    example = TokenizedUtterance(text_ids(char_tokenizer, text), np.zeros(0, np.int64), np.zeros((2, 0), np.int64),
                                 {"text": text})
    frames = builder.build("tts_paced", example, random.Random(0), prompt_only=True)
    prompt = Prompt(frames.tokens, "audio", vocab.special("<eos>"), 80,
                    constraint=PacedWords(word_ids(char_tokenizer, text), vocab))
    result = generate(model, [prompt], Sampling(seed=1))[0]
    stream0 = result.frames[0]
    is_text = stream0 >= vocab.text_offset
    assert vocab.to_text(stream0[is_text]).tolist() == text_ids(char_tokenizer, text).tolist()
    assert (result.frames[1:, is_text] == PAD_ID).all() and (result.frames[1:, ~is_text] != PAD_ID).all()

    class Codec:
        def decode(self, codes):
            return codes.astype(np.float32).ravel()

    lm = SpeechLM.__new__(SpeechLM)
    lm.vocab, lm.tokenizers = vocab, type("T", (), {"acoustic": Codec()})()
    assert np.array_equal(lm._audio(result), vocab.to_codes(result.frames[1:, ~is_text]).astype(np.float32).ravel())


def test_a_stage_that_trains_paced_tts_makes_a_model_that_speaks_paced(tmp_path, tiny_shards):
    """The model folder records it (`paced_tts`), a later stage keeps it, and a plain stage never sets it;
    SpeechLM then writes every word of the text between the audio it speaks."""
    import yaml

    from opuslm.infer.speech_lm import SpeechLM
    from opuslm.model.multistream import OpusLM
    from opuslm.train.stages import run_schedule
    from test_training import write_schedule

    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out", steps=(2, 2, 2))
    schedule = yaml.safe_load(path.read_text())
    for stage, task in zip(schedule["stages"], ("tts", "tts_paced", "tts")):
        stage["overrides"]["data"] = {**stage["overrides"]["data"],
                                      "sources": [{"name": "tts", "dataset": "speech_hq", "task": task}]}
    path.write_text(yaml.safe_dump(schedule))
    run_schedule(path, progress=False)
    out = tmp_path / "out"
    assert [OpusLM.from_pretrained(out / stage / "model").config.paced_tts
            for stage in ("pretrain", "anneal", "instruct")] == [False, True, True]

    lm = SpeechLM.load(out / "instruct" / "model")
    spoken = []
    original = lm._run
    lm._run = lambda prompts, progress=False: spoken.extend(original(prompts, progress)) or spoken
    lm.speak(["what is nine plus eight"], max_seconds=6)
    stream0 = spoken[0].frames[0]
    text = lm.vocab.to_text(stream0[stream0 >= lm.vocab.text_offset]).tolist()
    wanted = text_ids(lm.tokenizers.text, "what is nine plus eight").tolist()
    assert text == wanted if spoken[0].stopped else text == wanted[:len(text)]  # cut by max_seconds: a prefix


class Undecided(torch.nn.Module):
    """Stream 0 puts its text mass on a word the text does not hold (logit 5, and 4 on another), and
    less on every semantic id (0) and on <eos> (3); each codebook prefers its first id."""

    def __init__(self, vocab, delays, wrong_ids):
        super().__init__()
        self.vocab, self.delays, self.wrong = vocab, delays, wrong_ids
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, frames, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False):
        from types import SimpleNamespace

        return SimpleNamespace(last_hidden_state=torch.zeros(frames.shape[0], frames.shape[2], 1), past_key_values=None)

    def stream_logits(self, hidden, stream):
        start, end = self.vocab.stream_range(stream)
        logits = torch.zeros(*hidden.shape[:-1], end - start)
        if stream == 0:
            logits[..., self.vocab.special("<eos>")] = 3.0
            logits[..., self.vocab.text_offset:] = -10.0
            logits[..., self.wrong[0]], logits[..., self.wrong[1]] = 5.0, 4.0
        else:
            logits[..., 0] = 1.0
        return logits

    def codebook_logits(self, hidden):
        return torch.stack([self.stream_logits(hidden, n) for n in range(1, self.vocab.num_streams)], -2)


def test_a_word_begins_when_the_model_would_write_any_word_there(char_tokenizer):
    """The model says when a word begins (its mass on every text id), the pacing which: a model whose text
    mass sits on other words still begins each word as soon as it may, and stops after the last (greedy:
    each word's ids, one audio frame, the next word ...)."""
    delays = [0, 1, 2]
    builder = builder_for(char_tokenizer, delays)
    vocab = builder.vocab
    wrong = vocab.text(char_tokenizer.convert_tokens_to_ids(["q", "x"])).tolist()
    text = "zoe ate a pear"
    example = TokenizedUtterance(text_ids(char_tokenizer, text), np.zeros(0, np.int64), np.zeros((2, 0), np.int64),
                                 {"text": text})
    frames = builder.build("tts_paced", example, random.Random(0), prompt_only=True)
    groups = word_ids(char_tokenizer, text)
    prompt = Prompt(frames.tokens, "audio", vocab.special("<eos>"), 60, constraint=PacedWords(groups, vocab))
    result = generate(Undecided(vocab, delays, wrong), [prompt], Sampling(greedy_audio=True))[0]
    audio = vocab.semantic_offset  # the first semantic id: every semantic logit is 0, argmax takes the first
    expected = [i for ids in groups for i in [*vocab.text(ids).tolist(), audio]]
    assert result.stopped and result.frames[0].tolist() == expected


def test_the_eval_leaves_teacher_forcing_unscored_where_a_paced_model_has_no_word_times():
    """A corpus without word times: the note says why, nothing is decoded, and the rest of TTS is scored."""
    from types import SimpleNamespace

    from opuslm.eval.runner import Evaluation

    evaluation = Evaluation.__new__(Evaluation)
    evaluation.results = {}
    evaluation.lm = SimpleNamespace(paced_tts=True,
                                    speak_teacher_forced=lambda *a, **k: pytest.fail("decoded without word times"))
    utts = [SimpleNamespace(text="hi yo", words=[["hi", 0.0, 0.3], ["yo", 0.3, 0.6]]), SimpleNamespace(text="a", words=None)]
    evaluation._tts_teacher_forced(utts, [None, None], [None, None], ["hi yo", "a"])
    assert "word times" in evaluation.results["tts_teacher_forced_note"]
    assert "tts_teacher_forced_wer" not in evaluation.results
