"""Task templates: golden examples, invariants over random examples, and their interplay with the delay."""

import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from opuslm.frames_view import decoded_form
from opuslm.interleave import delay
from opuslm.tasks import BUILTIN_TASKS
from opuslm.templates import SpeakerPrompts, TemplateBuilder, TemplateError, label_tags
from opuslm.tokenize.shards import TokenizedUtterance
from opuslm.vocab import PAD_ID, TASKS, JointVocab

GOLDEN = Path(__file__).parent / "golden" / "templates.json"
DELAYS = [0, 1, 2]
LABELS = {"event": "laugh", "emotion": "happy", "style": "fast", "age": "adult", "gender": "female"}


@pytest.fixture(scope="module")
def builder(char_tokenizer):
    vocab = JointVocab(semantic_size=4, num_codebooks=2, codebook_size=4, text_size=len(char_tokenizer))
    return TemplateBuilder(vocab, char_tokenizer, max_delay=max(DELAYS), prompt_frames=2)


def utterance(tokenizer, text, semantic, codes, **meta) -> TokenizedUtterance:
    ids = np.array(tokenizer(text, add_special_tokens=False)["input_ids"])
    return TokenizedUtterance(ids, np.array(semantic), np.array(codes), {"id": "u1", "text": text, "speaker": "a", **meta})


def golden_example(tokenizer):
    return utterance(tokenizer, "hi yo", [1, 2, 3], [[0, 1, 2], [3, 0, 1]], labels=LABELS,
                     words=[["hi", 0.0, 0.31], ["yo", 0.31, 0.7]], answer="ok")


def build_golden(builder, task):
    tokenizer = builder.tokenizer
    example = golden_example(tokenizer)
    prompt = utterance(tokenizer, "other", [0, 1, 2, 3], [[1, 1, 1, 1], [2, 2, 2, 2]])
    source = example.meta["text"] if task == "text_lm" else example
    return builder.build(task, source, random.Random(0), speaker_prompt=prompt)


def golden_json(examples: dict) -> str:
    """JSON with one line per stream, so a review diff shows which frames changed."""
    blocks = []
    for task, example in examples.items():
        rows = ",\n    ".join(json.dumps(row) for row in example["tokens"])
        blocks.append(f'  {json.dumps(task)}: {{\n   "decoded": {json.dumps(example["decoded"])},\n'
                      f'   "target_start": {example["target_start"]},\n   "tokens": [\n    {rows}]}}')
    return "{\n" + ",\n".join(blocks) + "\n}\n"


def test_golden_examples_of_every_task(builder):
    """One example per task, ids and decoded form, pinned in tests/golden/templates.json so a layout
    change shows in review. Regenerate on purpose with OPUSLM_UPDATE_GOLDEN=1."""
    got = {}
    for task in TASKS:
        frames = build_golden(builder, task)
        got[task] = {"decoded": decoded_form(frames.tokens, builder.vocab, builder.tokenizer),
                     "target_start": frames.target_start, "tokens": frames.tokens.tolist()}
    if os.environ.get("OPUSLM_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(golden_json(got))
    assert got == json.loads(GOLDEN.read_text())


def test_golden_forms_read_as_documented(builder):
    forms = {task: decoded_form(build_golden(builder, task).tokens, builder.vocab, builder.tokenizer)
             for task in ("asr", "tts", "audio_lm", "text_lm", "ser", "sap_label", "srwt", "sttc", "tags")}
    assert forms["asr"] == '<sos> <task:asr> <audio_start> [audio x3] <pad>x2 <text_start> "hi yo" <eos> <pad>x2'
    assert forms["tts"] == ('<sos> <task:tts> <text_start> "hi yo" <pad>x2 <spk_start> [audio x2] <pad>x2 '
                            '<audio_start> [audio x3] <eos> <pad>x2')
    assert forms["audio_lm"] == "<sos> <task:audio_lm> <audio_start> [audio x3] <eos> <pad>x2"
    assert forms["text_lm"] == '"hi yo<|eos|>"'
    assert forms["ser"].endswith('<text_start> "hi yo<happy>" <eos> <pad>x2')
    assert forms["sap_label"].endswith('<text_start> "<adult>" <eos> <pad>x2')
    assert forms["srwt"].endswith('<text_start> "<0.00>hi<0.31><0.31>yo<0.70>" <eos> <pad>x2')
    assert forms["sttc"].endswith('<text_start> "hi yo<answer>ok" <eos> <pad>x2')
    assert forms["tags"].endswith('"hi yo<laugh><happy><fast><adult><female>" <eos> <pad>x2')
    instruction = forms["ser"].split('"')[1]
    assert instruction in BUILTIN_TASKS["ser"].instructions


def random_example(tokenizer, vocab, rng: random.Random) -> TokenizedUtterance:
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 5))]
    frames = rng.randint(1, 25)
    times = sorted(round(rng.uniform(0, frames / 25), 2) for _ in range(2 * len(words)))
    semantic = [rng.randrange(vocab.semantic_size) for _ in range(frames)]
    codes = [[rng.randrange(vocab.codebook_size) for _ in range(frames)] for _ in range(vocab.num_codebooks)]
    return utterance(tokenizer, " ".join(words), semantic, codes, labels=dict(LABELS),
                     words=[[w, times[2 * i], times[2 * i + 1]] for i, w in enumerate(words)], answer="yes")


def expected_real_cells(task, example, frames, builder) -> int:
    """Non-pad cells a template must hold, counted from its inputs: the added specials, the text,
    every stream of every audio frame."""
    n, audio = builder.vocab.num_streams, len(example.semantic)
    text = len(example.text_ids)
    if task == "text_lm":
        return len(builder.tokenizer(example.meta["text"])["input_ids"]) + 1
    if task == "asr":
        return 3 + n * audio + 1 + text + 1
    if task == "tts":
        prompt = [s for s in frames.segments if s.kind == "prompt_audio"]
        return 3 + text + (1 + n * (prompt[0].end - prompt[0].start - 1) if prompt else 0) + 1 + n * audio + 1
    if task == "audio_lm":
        return 3 + n * audio + 1
    instruction = frames.segments[0].end - frames.segments[0].start - 3
    target = frames.segments[-1].end - frames.segments[-1].start - 2
    return 3 + instruction + 1 + n * audio + 1 + target + 1


@pytest.mark.parametrize("task", TASKS)
def test_every_input_token_lands_in_the_frames_and_nothing_else(builder, task):
    vocab = builder.vocab
    for seed in range(25):
        rng = random.Random(seed)
        example = random_example(builder.tokenizer, vocab, rng)
        prompt = random_example(builder.tokenizer, vocab, rng) if seed % 2 else None
        source = example.meta["text"] if task == "text_lm" else example
        frames = builder.build(task, source, rng, speaker_prompt=prompt)
        assert frames.tokens.shape[0] == vocab.num_streams
        assert (frames.tokens != PAD_ID).sum() == expected_real_cells(task, example, frames, builder)
        if task != "text_lm":  # the example's audio, frame by frame, in its own segment
            audio = [s for s in frames.segments if s.kind == "audio"][0]
            columns = frames.tokens[:, audio.start: audio.end]
            columns = columns[:, vocab.modality(columns[0]) == 1]  # stream 0 semantic: an audio frame
            assert np.array_equal(columns[0], vocab.semantic(example.semantic))
            assert np.array_equal(columns[1:], vocab.codes(example.codes))
        for segment in frames.segments:  # every segment ends in max(delay) all-pad frames
            assert (frames.tokens[:, segment.end: segment.end + max(DELAYS)] == PAD_ID).all()


def segment_of_frames(frames) -> np.ndarray:
    owner = np.full(frames.num_frames, -1)
    for i, segment in enumerate(frames.segments):
        owner[segment.start: segment.end] = i
    return owner


def cells_on_foreign_frames(frames, delays) -> int:
    """Real cells that the delay moves onto a frame where another segment has begun."""
    owner = segment_of_frames(frames)
    starts = [s.start for s in frames.segments] + [10**9]
    moved = delay(torch.from_numpy(frames.tokens), delays, PAD_ID).numpy()
    count = 0
    for n, d in enumerate(delays):
        for s in np.nonzero(moved[n] != PAD_ID)[0]:
            segment = owner[s - d]
            count += not (starts[segment] <= s < starts[segment + 1])
    return count


@pytest.mark.parametrize("task", ["asr", "tts", "audio_lm", "ser", "srwt"])
def test_the_delay_never_moves_a_token_onto_another_segment(builder, task):
    for seed in range(10):
        rng = random.Random(seed)
        example, prompt = random_example(builder.tokenizer, builder.vocab, rng), random_example(builder.tokenizer, builder.vocab, rng)
        frames = builder.build(task, example, rng, speaker_prompt=prompt)
        assert cells_on_foreign_frames(frames, DELAYS) == 0
    # the check can fail: without the pad trailer, audio spills into the next segment
    short = TemplateBuilder(builder.vocab, builder.tokenizer, max_delay=0, prompt_frames=2)
    spilled = cells_on_foreign_frames(short.build(task, example, rng, speaker_prompt=prompt), DELAYS)
    assert spilled > 0 if task != "audio_lm" else spilled == 0  # audio_lm is a single segment


@pytest.mark.parametrize("which", ["char", "bpe"])
def test_a_text_lm_example_is_the_llms_own_tokenization(which, char_tokenizer, tiny_tokenizers):
    from opuslm.tokenize.text import load_text_tokenizer

    tokenizer = char_tokenizer if which == "char" else load_text_tokenizer(tiny_tokenizers.text)
    vocab = JointVocab(semantic_size=4, num_codebooks=3, codebook_size=4, text_size=len(tokenizer))
    text = "the quick brown fox jumps over twelve lazy dogs"
    frames = TemplateBuilder(vocab, tokenizer, max_delay=3).build("text_lm", text)
    expected = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    assert (frames.tokens[0] - vocab.text_offset).tolist() == expected
    assert (frames.tokens[1:] == PAD_ID).all()
    assert frames.loss_mask("target").tolist() == frames.loss_mask("whole").tolist()
    assert frames.target_start == 0 and frames.loss_mask()[0].all()


def test_loss_regions(builder):
    frames = build_golden(builder, "asr")
    whole, target = frames.loss_mask("whole"), frames.loss_mask("target")
    assert whole.sum() == (frames.tokens != PAD_ID).sum()
    text_and_eos = frames.tokens[0, target[0]]
    assert decoded_form(np.pad(text_and_eos[None], ((0, 2), (0, 0))), builder.vocab, builder.tokenizer) == '"hi yo" <eos>'
    assert not target[1:].any() and frames.target_start == np.nonzero(target[0])[0][0]
    tts = build_golden(builder, "tts").loss_mask("target")
    assert tts[1:].sum() == 2 * 3  # every codebook of the 3 target audio frames, not the prompt's
    with pytest.raises(Exception, match="loss_region"):
        frames.loss_mask("prompt")


@pytest.mark.parametrize("task, meta, message", [
    ("ser", {"labels": {}}, "has no 'emotion' label"),
    ("ved", {"labels": {"event": "a<b"}}, "unusable 'event' label"),
    ("srwt", {"words": []}, "has no word timestamps"),
    ("sttc", {"answer": None}, "not a question with an answer"),
    ("sgc", {"text": " "}, "has no transcript \\(label-only\\)"),  # VocalSound, ESC-50: labels, no words
    ("sttc", {"text": ""}, "has no transcript"),
])
def test_examples_a_task_cannot_use_say_why(builder, task, meta, message):
    example = golden_example(builder.tokenizer)
    example.meta.update(meta)
    with pytest.raises(TemplateError, match=message):
        builder.build(task, example, random.Random(0))


def test_the_tasks_that_read_the_words_skip_a_label_only_utterance():
    """The loader asks the task's target writer (or `transcript` for TTS and text LM) whether an
    utterance is usable; a label-only one is skipped and counted, never trained as empty words."""
    from opuslm.templates import TARGET_WRITERS, transcript

    meta = {"id": "vocalsound-f0003_0_cough", "text": "", "labels": {"event": "cough"}}
    for task in ("asr", "sgc", "sttc"):
        spec = BUILTIN_TASKS[task]
        with pytest.raises(TemplateError, match="has no transcript"):
            TARGET_WRITERS[spec.target](meta, spec)
    with pytest.raises(TemplateError, match="vocalsound-f0003_0_cough has no transcript"):
        transcript(meta)
    spec = BUILTIN_TASKS["ved_label"]
    assert TARGET_WRITERS[spec.target](meta, spec) == "<cough>"


def test_several_labels_follow_the_task_key_order():
    meta = {"labels": {"gender": "Female", "age": "adult", "event": ["laugh", "cough"]}}
    assert label_tags(meta, ("age", "gender")) == "<adult><female>"
    assert label_tags(meta, ("event",)) == "<laugh><cough>"


def test_instructions_are_drawn_by_seed_and_can_be_given(builder):
    example = golden_example(builder.tokenizer)

    def instruction(**kwargs):
        return decoded_form(builder.build("ser", example, **kwargs).tokens, builder.vocab, builder.tokenizer).split('"')[1]

    assert instruction(rng=random.Random(5)) == instruction(rng=random.Random(5))
    assert {instruction(rng=random.Random(s)) for s in range(30)} == set(BUILTIN_TASKS["ser"].instructions)
    assert instruction(rng=random.Random(0), instruction="How does she feel?") == "How does she feel?"
    asr = decoded_form(builder.build("asr", example, instruct=True).tokens, builder.vocab, builder.tokenizer)
    assert asr.split('"')[1] in BUILTIN_TASKS["asr"].instructions


def test_speaker_prompts_come_from_another_utterance_of_the_same_speaker(builder):
    prompts = SpeakerPrompts(["a", "b", "a", "c", "a"])
    rng = random.Random(0)
    chosen = {prompts.choose(0, rng) for _ in range(50)}
    assert chosen == {2, 4}
    assert prompts.choose(1, rng) is None and prompts.choose(3, rng) is None
    # the crop is a contiguous run of the prompt's frames
    example = golden_example(builder.tokenizer)
    prompt = utterance(builder.tokenizer, "x", [0, 1, 2, 3], [[0, 1, 2, 3], [3, 2, 1, 0]])
    for seed in range(10):
        frames = builder.build("tts", example, random.Random(seed), speaker_prompt=prompt)
        segment = [s for s in frames.segments if s.kind == "prompt_audio"][0]
        cropped = frames.tokens[0, segment.start + 1: segment.end] - builder.vocab.semantic_offset
        assert len(cropped) == 2 and cropped[1] == cropped[0] + 1


def test_a_tokenizer_of_another_size_is_refused(char_tokenizer):
    with pytest.raises(Exception, match="text range has 10"):
        TemplateBuilder(JointVocab(4, 2, 4, 10), char_tokenizer, max_delay=2)


def test_vocab_and_templates_show_commands(tiny_shards, tmp_path, capsys):
    from opuslm.cli.main import main

    assert main(["vocab", "show", "--tokens", str(tiny_shards), "--save", str(tmp_path / "vocab.json")]) == 0
    shown = capsys.readouterr().out
    vocab = JointVocab.from_tokens(tiny_shards)
    assert f"joint vocabulary {vocab.hash}" in shown and "codebook_3" in shown
    assert JointVocab.load(tmp_path / "vocab.json") == vocab

    assert main(["templates", "show", "asr", "--tokens", str(tiny_shards), "--index", "3", "--delayed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("<sos> <task:asr> <audio_start> [audio x") and lines[1].endswith("<eos> <pad>x4")
    assert lines[2].split() == ["frame", "stream0", "stream1", "stream2", "stream3", "stream4"]
    rows = {int(line.split()[0]): line.split()[1:] for line in lines[3:] if line.split()[0].isdigit()}
    assert rows[3][0].startswith("s") and rows[3][1:] == [".", ".", ".", "."]  # first audio frame, delayed
    assert rows[4][1].startswith("c0:") and rows[4][2:] == [".", ".", "."]
    assert [cell[:3] for cell in rows[7][1:]] == ["c0:", "c1:", "c2:", "c3:"]

    assert main(["templates", "show", "asr", "--tokens", str(tiny_shards), "--delays", "0,1"]) == 2
    assert "give 5 comma-separated integers" in capsys.readouterr().err

    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("voice:\n  labels: [gender]\n  target: labels\n  instructions: ['Whose voice is it?']\n")
    assert main(["templates", "show", "voice", "--tokens", str(tiny_shards), "--tasks", str(tasks)]) == 0
    decoded = capsys.readouterr().out.splitlines()[1]
    assert re.fullmatch(r'<sos> <text_start> "Whose voice is it\?" <pad>x4 <audio_start> \[audio x\d+\] <pad>x4 '
                        r'<text_start> "<(male|female)>" <eos> <pad>x4', decoded)
    assert main(["templates", "show", "voice", "--tokens", str(tiny_shards)]) == 2
    assert "unknown understanding task 'voice'" in capsys.readouterr().err
