import random

from opuslm.data.synth import lexicon, sentences


def test_numbers_are_spelled_out():
    cases = {0: "zero", 13: "thirteen", 40: "forty", 99: "ninety nine", 105: "one hundred five",
             1205: "one thousand two hundred five", 99999: "ninety nine thousand nine hundred ninety nine"}
    assert {n: lexicon.number_words(n) for n in cases} == cases


def test_inflections():
    assert [lexicon.plural(w) for w in ("box", "city", "key", "knife", "child", "bus")] == \
        ["boxes", "cities", "keys", "knives", "children", "buses"]
    assert [lexicon.past(w) for w in ("stop", "carry", "bake", "catch", "play")] == \
        ["stopped", "carried", "baked", "caught", "played"]
    assert [lexicon.third_person(w) for w in ("watch", "carry", "go", "play")] == ["watches", "carries", "goes", "plays"]


def test_generator_uses_its_whole_vocabulary_of_common_words_and_mostly_draws_new_sentences():
    rng = random.Random(0)
    seen, texts = set(), set()
    for _ in range(20000):
        sentence = sentences.random_sentence(rng)
        assert sentence.text == sentence.text.lower() and "  " not in sentence.text and "{" not in sentence.text
        seen |= set(sentence.text.split())
        texts.add(sentence.text)
    questions = {w for phrasings, answer in sentences.FACTS for text in (*phrasings, answer) for w in text.split()}
    assert seen <= sentences.vocabulary()
    assert sentences.vocabulary() - seen <= questions | set(lexicon.UNITS) | set(lexicon.TENS) | {"hundred", "plus", "minus", "times"}
    assert 400 <= len(seen) <= 600
    assert len(texts) > 0.8 * 20000


def test_every_template_slot_is_filled_and_every_template_is_used():
    rng = random.Random(3)
    for template in sentences.STATEMENTS + sentences.QUESTIONS:
        words = sentences.fill(template, rng).split()
        fixed = [w for w in template.split() if not w.startswith("{")]
        assert all(w in words for w in fixed)
    drawn = {sentences.random_sentence(rng).is_question for _ in range(400)}
    assert drawn == {True, False}


def test_spoken_questions_have_exact_answers():
    rng = random.Random(1)
    numbers = {lexicon.number_words(n): n for n in range(200)}
    operations = {"plus": int.__add__, "minus": int.__sub__, "times": int.__mul__}
    arithmetic = 0
    for _ in range(500):
        q = sentences.random_question_with_answer(rng)
        assert q.is_question and q.spoken_text.endswith("?") and q.answer
        words = q.text.split()
        op_at = next((i for i, w in enumerate(words) if w in operations), None)
        if op_at is None:
            assert any(q.text in phrasings and q.answer == answer for phrasings, answer in sentences.FACTS)
            continue
        assert words[:2] == ["what", "is"]
        a, b = numbers[" ".join(words[2:op_at])], numbers[" ".join(words[op_at + 1:])]
        assert q.answer == lexicon.number_words(operations[words[op_at]](a, b))
        arithmetic += 1
    assert 150 < arithmetic < 350



def _question_lines() -> dict[str, str]:
    """Every `question answer` line the text corpus can write -> its question (the transcript)."""
    words = lexicon.number_words
    lines = {f"{q} {answer}": q for phrasings, answer in sentences.FACTS for q in phrasings}
    for a in range(21):
        for b in range(21):
            for op, value in (("plus", a + b), ("minus", a - b), ("times", a * b)):
                if value >= 0:
                    lines[f"what is {words(a)} {op} {words(b)} {words(value)}"] = f"what is {words(a)} {op} {words(b)}"
    return lines


def test_text_corpus_counts_add_up_and_never_holds_a_test_transcript(tmp_path):
    import json

    import pytest

    from opuslm.data.synth.corpus import text_split
    from opuslm.data.synth.text import synthesize_text
    from opuslm.errors import OpusLMError

    summary = synthesize_text(tmp_path, 3000, seed=1, progress=False)
    files = {split: (tmp_path / f"{split}.txt").read_text().splitlines() for split in ("train", "dev")}
    assert {split: len(lines) for split, lines in files.items()} == summary["lines"]
    assert sum(summary["lines"].values()) + summary["left_out_test_lines"] == 3000
    assert summary["left_out_test_lines"] > 0 and summary["lines"]["dev"] > 0
    questions = _question_lines()
    for split, lines in files.items():
        for line in lines:
            assert text_split(questions.get(line, line)) == split, line
    asked = sum(line in questions for line in files["train"])
    assert 0.1 < asked / len(files["train"]) < 0.2  # question_share 0.15
    assert synthesize_text(tmp_path, 3000, seed=1, progress=False) == summary  # same config: left as it is
    assert json.loads((tmp_path / "text.json").read_text()) == summary
    with pytest.raises(OpusLMError, match="another text corpus"):
        synthesize_text(tmp_path, 3000, seed=2, progress=False)
