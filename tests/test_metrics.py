"""Metric code against hand-computed cases."""

import re

import pytest

from opuslm.eval import metrics
from opuslm.eval.text import english_sentences, factual_questions, multiple_choice_set


def test_wer_counts_substitutions_insertions_and_deletions():
    # red=red, green->yellow (S), blue=blue, black=black, + white (I): 2 errors / 4 words
    assert metrics.corpus_wer(["red green blue black"], ["red yellow blue black white"]) == 0.5
    assert metrics.corpus_wer(["red green blue"], ["red"]) == pytest.approx(2 / 3)  # two deletions
    assert metrics.corpus_wer(["red green"], [""]) == 1.0


def test_wer_normalises_case_and_punctuation_like_whisper():
    assert metrics.corpus_wer(["Hello, World!"], ["hello world"]) == 0.0
    assert metrics.corpus_wer(["it is nine"], ["It's nine."]) == 0.0  # the normaliser expands contractions


def test_corpus_wer_and_the_mean_of_utterance_wers_differ_as_defined():
    refs, hyps = ["red green", "blue black white yellow"], ["red", "blue black white yellow"]
    assert metrics.corpus_wer(refs, hyps) == pytest.approx(1 / 6)
    assert metrics.mean_utterance_wer(refs, hyps) == pytest.approx(0.25)


def test_first_tag_is_case_insensitive_and_only_the_first_counts():
    assert metrics.first_tag("what is nine<Happy><adult>") == "happy"
    assert metrics.first_tag("no tag at all") is None


def test_a_tag_in_a_hypothesis_separates_words_instead_of_gluing_them():
    # Whisper's normaliser alone deletes "<0.44>" and scores "sheepdoes": one substitution for two words
    assert metrics.normalise("about sheep<0.44>does<male>") == "about sheep does"
    assert metrics.word_errors("about sheep does", "about sheep<0.44>does") == (0, 3)
    assert metrics.word_errors("about sheep", "about sheep<0.44>does") == (1, 2)


def test_aas_averages_start_and_end_shifts_of_matched_words():
    ref = "<0.00>hi<0.30><0.30>yo<0.70>"
    assert metrics.boundary_shifts(ref, "<0.02>hi<0.30><0.40>yo<0.80>") == pytest.approx([0.02, 0.0, 0.10, 0.10])
    assert metrics.boundary_shifts(ref, "<0.00>hi<0.25><0.30>no<0.70>") == pytest.approx([0.0, 0.05])  # "no" unmatched
    assert metrics.boundary_shifts(ref, "hi yo") == []
    assert metrics.timed_words("<1.5>twenty four<2.25>") == [("twenty four", 1.5, 2.25)]
    # a segment of several words is one unit that equals no reference word; case does not matter
    ref3 = "<0.00>a<0.10><0.10>b<0.20><0.20>c<0.30>"
    assert metrics.boundary_shifts(ref3, "<0.00>A<0.10><0.10>b c<0.30>") == pytest.approx([0.0, 0.0])
    assert metrics.boundary_shifts(ref3, "<0.05>a b<0.15><0.10>b<0.20><0.20>C<0.35>") == pytest.approx([0.0, 0.0, 0.0, 0.05])


def test_sttc_answer_and_confusion_matrix():
    assert metrics.answer_of("what is two plus two<answer>Four") == metrics.normalise("four")
    assert metrics.answer_of("no marker") == ""
    labels, counts = metrics.confusion(["happy", "sad", "sad"], ["happy", "happy", None])
    assert labels == ["happy", "sad", "(none)"]
    assert counts == [[1, 0, 0], [1, 0, 1], [0, 0, 0]]


def test_multiple_choice_set_is_fixed_and_well_formed():
    items = multiple_choice_set()
    assert items == multiple_choice_set() and len(items) == 80
    for question, options, answer in items:
        assert len(options) == 4 == len(set(options)) and 0 <= answer < 4
    assert any(q.startswith("what is") and "plus" in q for q, _, _ in items)


def test_factual_questions_hold_each_facts_own_answer_and_right_sums():
    from pathlib import Path

    items = factual_questions()
    assert items == factual_questions() and len(items) == 207 + 100
    rows = [line.split("\t") for line in (Path(metrics.__file__).parent / "data" / "facts.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    answers = {question: answer for _, question, answer in rows}
    for question, options, answer in items:
        assert len(options) == 4 == len(set(options)) and 0 <= answer < 4
        arithmetic = re.fullmatch(r"What is (\d+) (plus|minus|times) (\d+)\?", question)
        if arithmetic:
            a, op, b = int(arithmetic[1]), arithmetic[2], int(arithmetic[3])
            assert int(options[answer]) == {"plus": a + b, "minus": a - b, "times": a * b}[op] >= 0
        else:
            assert options[answer] == answers[question]


def test_general_english_is_held_out_from_the_demo_grammar():
    from opuslm.data.synth.sentences import vocabulary

    grammar = vocabulary()
    sentences = english_sentences()
    assert len(sentences) == len(set(sentences)) == 194
    for sentence in sentences:
        words = set(re.sub(r"[^a-z' ]", " ", sentence.lower()).split())
        assert words - grammar, sentence  # every sentence has words the grammar never writes


def test_text_ability_targets_read_against_the_base_llm():
    from opuslm.eval.report import table, targets_met

    kept = {"english_perplexity": 10.9, "english_perplexity_base_llm": 10.0, "facts_accuracy": 0.56,
            "facts_accuracy_base_llm": 0.60}
    assert targets_met(kept) == {"english_perplexity": True, "facts_accuracy": True}
    lost = {**kept, "english_perplexity": 11.1, "facts_accuracy": 0.54}
    assert targets_met(lost) == {"english_perplexity": False, "facts_accuracy": False}
    assert "| factual questions in text (4 options) | 0.540 | >= base LLM - 0.05 | NO |" in table(lost)


@pytest.mark.parametrize("accuracy, questions, informative", [(0.29, 307, False), (0.29, 2000, True), (0.35, 307, True),
                                                              (0.2508, 307, False)])
def test_a_factual_accuracy_counts_only_above_guessing(accuracy, questions, informative):
    from opuslm.eval.report import above_chance

    assert above_chance(accuracy, questions) is informative  # guessing 0.25 plus 2 standard errors: 0.299 at 307 questions, 0.269 at 2000


def test_a_target_whose_reference_is_at_chance_is_missed_and_says_why():
    """The demo's text LLM answers factual questions at chance (0.251 of 307): the spoken share of it and
    the points kept from it hold by the numbers, and compare noise."""
    from opuslm.eval.report import table, targets_met

    noise = {"facts_questions": 307, "facts_accuracy": 0.2508, "facts_accuracy_base_llm": 0.2638,
             "spoken_facts_accuracy": 0.228}
    assert targets_met(noise) == {"facts_accuracy": False, "spoken_facts_accuracy": False}
    printed = table(noise)
    assert "| the factual questions asked aloud (4 options) | 0.228 | >= 0.5x text | NO |" in printed
    assert "spoken_facts_accuracy is not met: its reference facts_accuracy = 0.251 is within two standard errors" in printed
    assert "facts_accuracy is not met: its reference facts_accuracy_base_llm = 0.264" in printed
    known = {**noise, "facts_accuracy": 0.62, "facts_accuracy_base_llm": 0.64, "spoken_facts_accuracy": 0.33}
    assert targets_met(known) == {"facts_accuracy": True, "spoken_facts_accuracy": True}
    assert "is not met" not in table(known)


def test_the_report_names_the_judge_in_one_line_without_its_lexicon():
    from opuslm.eval.report import describe_judge

    info = {"kind": "ctc", "config": {"hidden": 256}, "steps": 1000, "train_utterances": 2191,
            "dev_wer": 0.47344, "lexicon": ["a", "apple", "zebra"]}
    assert describe_judge(info) == "CTC judge (1000 steps on 2191 real utterances, dev WER 0.473, lexicon of 3 words)"
    assert describe_judge({"kind": "hf", "path": "/models/whisper", "labels": ["x"]}) == "kind hf, path /models/whisper"
    assert describe_judge(None) == "none (no TTS scored)"


def test_classification_scores_both_prompts_against_the_labels(small_corpus, tmp_path):
    from opuslm.data.manifest import read_manifest
    from opuslm.eval.runner import Evaluation

    test = [u for u in read_manifest(small_corpus, split="test") if "gender" in u.labels]

    class ScriptedModel:  # tag-only answers are right; after the transcript every answer says <male>
        seen = 0

        def understand(self, task, audios):
            if task == "sgc":
                return ["some words<male><female>"] * len(audios)
            batch = test[self.seen:self.seen + len(audios)]
            self.seen += len(audios)
            return [f"<{u.labels['gender'].upper()}>" for u in batch]

    model = ScriptedModel()
    evaluation = Evaluation(tmp_path, small_corpus, tmp_path, lm=model, batch_size=3, progress=False)
    evaluation.classification("sgc", "test")
    males = sum(u.labels["gender"] == "male" for u in test)
    assert evaluation.results["sgc_label_accuracy"] == 1.0
    assert evaluation.results["sgc_accuracy"] == pytest.approx(males / len(test))
    assert 0 < males < len(test)
    labels, counts = evaluation.results["confusion"]["sgc"]
    assert sum(map(sum, counts)) == len(test) and counts[labels.index("female")][labels.index("male")] == len(test) - males
    rows = [h for h in evaluation.hyps if h["task"] == "sgc_label"]
    assert [h["reference"] for h in rows] == [f"<{u.labels['gender']}>" for u in test]
    # a second tag after the transcript is malformed even where the first is right; the tag-only answers are not
    from opuslm.eval.runner import malformed_outputs

    assert malformed_outputs(evaluation.hyps) == {
        "sgc": {"malformed": len(test), "outputs": len(test), "share": 1.0,
                "problems": {"2 labels where the task writes 1": len(test)}},
        "sgc_label": {"malformed": 0, "outputs": len(test), "share": 0.0, "problems": {}}}


def test_tts_scores_the_normal_style_apart_and_the_report_lists_samples_to_listen_to(small_corpus, tmp_path):
    from types import SimpleNamespace

    import numpy as np

    from opuslm.data.manifest import read_manifest
    from opuslm.eval.metrics import corpus_wer
    from opuslm.eval.report import write_report
    from opuslm.eval.runner import Evaluation

    class Codec:  # resynthesis returns the audio unchanged
        sample_rate = 16000

        def encode(self, wav, rate):
            return wav

        def decode(self, codes):
            return codes

    class ScriptedLM:  # "speaks" the prompt back, or a short silence
        tokenizers = SimpleNamespace(acoustic=Codec())

        def synthesize(self, texts, prompts):
            return [p[0] if p is not None else np.zeros(800, np.float32) for p in prompts]

        def continue_audio(self, prompts, max_seconds):
            return [p[0] for p in prompts]

        vocab = SimpleNamespace(num_streams=3, num_codebooks=2)

        paced_tts = False

        def speak_teacher_forced(self, recordings, prompts, word_times=None):  # every id right: the recording itself
            return [(audio, np.ones((3, len(audio) // 640), bool)) for _, (audio, _) in recordings]

    class Judge:  # hears the first word of the reference in every clip
        info = {"kind": "scripted"}

        def transcribe(self, wavs):
            return ["the" for _ in wavs]

    test = read_manifest(small_corpus, split="test")
    evaluation = Evaluation(tmp_path, small_corpus, tmp_path, judge=Judge(), lm=ScriptedLM(), progress=False)
    evaluation.tts("test")
    normal = [u.text for u in test if u.labels["style"] == "normal"]
    assert normal and evaluation.results["tts_judge_original_wer_normal"] == pytest.approx(corpus_wer(normal, ["the"] * len(normal)))
    # the scripted model speaks its prompt back and the codec is the identity: both similarities are 1,
    # above the two references (the same speaker's other utterance, a different speaker)
    results = evaluation.results
    refs = [u.text for u in test]
    assert results["tts_teacher_forced_wer"] == pytest.approx(corpus_wer(refs, ["the"] * len(refs)))
    assert results["tts_teacher_forced_accuracy"] == {"semantic": 1.0, "codebook_0": 1.0, "codebook_1": 1.0}
    assert results["tts_speaker_sim"] == pytest.approx(1.0, abs=1e-5)
    assert results["resynthesis_speaker_sim"] == pytest.approx(1.0, abs=1e-5)
    assert results["tts_speaker_sim_different_speaker"] < results["tts_speaker_sim_same_speaker"] < 1.0
    # continuation: echoing the prompt is its own voice; the references are second halves of originals
    from opuslm.eval.speaker import SpeakerEncoder

    evaluation.continuation("test")
    assert results["continuation_speaker_sim"] == pytest.approx(1.0, abs=1e-5)
    encoder = SpeakerEncoder()
    halves = [u.load_audio(small_corpus, target_rate=16000)[0] for u in test]
    halves = [(w[:len(w) // 2], w[len(w) // 2:]) for w in halves]
    same = [float(encoder.embed(b) @ encoder.embed(a)) for a, b in halves]
    assert results["continuation_speaker_sim_same_speaker"] == pytest.approx(np.mean(same), abs=1e-5)
    assert results["continuation_speaker_sim_different_speaker"] < results["continuation_speaker_sim_same_speaker"]
    samples = evaluation.samples["tts"]
    assert [s["id"] for s in samples] == [u.id for u in test[:Evaluation.SAMPLES]]
    for s in samples:
        assert (tmp_path / s["generated"]).is_file() and (tmp_path / s["original"]).is_file()
        assert s["judge_generated"] == s["judge_original"] == "the"
    results = {"metrics": evaluation.results, "model": "m", "corpus": "c", "corpus_manifest_hash": "h",
               "model_vocab": "v", "judge": Judge.info, "seconds": 1, "samples": evaluation.samples}
    write_report(tmp_path, results)
    report = (tmp_path / "report.md").read_text()
    assert "## TTS samples" in report and f"[generated]({samples[0]['generated']})" in report
    page = (tmp_path / "report.html").read_text()
    assert all(f'src="{s[key]}"' in page for s in samples for key in ("original", "resynthesis", "generated"))
    assert f"| {test[0].text} |" in report


def test_length_outcomes_count_runaway_and_silent_generations():
    out = metrics.length_outcomes([3.0, 6.0, 0.1, 2.0], [3.0, 3.0, 3.0, 2.0], [0.1, 0.1, 0.1, 0.0])
    assert out["tts_runaway_share"] == 0.25  # the 6 s one: twice its reference
    assert out["tts_silent_share"] == 0.5  # the 0.1 s one, and the one with no energy
    assert out["tts_length_ratio"] == pytest.approx((1 + 2 + 0.1 / 3 + 1) / 4)
    assert metrics.length_outcomes([], [], [])["tts_runaway_share"] is None


def test_the_report_plots_wer_and_accuracies_with_targets_and_says_when_nothing_was_judged(tmp_path):
    from opuslm.eval.report import write_report

    results = {"metrics": {"asr_wer_test": 0.2, "asr_wer_dev": 0.1, "sgc_accuracy": 0.9}, "model": "m", "corpus": "c",
               "corpus_manifest_hash": "h", "model_vocab": "v", "judge": None, "seconds": 1.0,
               "confusion": {"sgc": {"labels": ["female", "male"], "counts": [[5, 1], [0, 4]]}}}
    write_report(tmp_path, results)
    report = (tmp_path / "report.md").read_text()
    assert "judge: none (no TTS scored)" in report
    assert "![wer_metrics.png](wer_metrics.png)" in report and "![task_metrics.png](task_metrics.png)" in report
    assert (tmp_path / "wer_metrics.png").stat().st_size > 1000 and (tmp_path / "task_metrics.png").stat().st_size > 1000


def test_results_and_report_say_how_asr_was_decoded(tmp_path):
    from types import SimpleNamespace

    from opuslm.eval.report import write_report
    from opuslm.eval.runner import asr_decoding
    from opuslm.infer.sampling import Sampling

    assert asr_decoding(Sampling()) == {"beam": 1, "ctc_weight": 0.0, "ctc_layer": None}
    joint = asr_decoding(Sampling(beam=4, ctc_weight=0.3))
    assert joint == {"beam": 4, "ctc_weight": 0.3, "ctc_layer": "adapter"}
    assert asr_decoding(SimpleNamespace()) == {"beam": 1, "ctc_weight": 0.0, "ctc_layer": None}  # a scripted LM
    results = {"metrics": {"asr_wer_test": 0.2}, "model": "m", "corpus": "c", "corpus_manifest_hash": "h",
               "model_vocab": "v", "judge": None, "seconds": 1.0, "asr_decoding": joint}
    write_report(tmp_path, results)
    assert ("ASR decoded a beam of 4, jointly with the CTC posteriors of the adapter at weight 0.3 "
            "(`--ctc-weight 0.3 --ctc-layer adapter`).") in (tmp_path / "report.md").read_text()


def test_each_factual_question_has_its_category_and_the_gap_is_counted_per_category():
    from opuslm.eval.report import facts_table
    from opuslm.eval.runner import facts_by_category
    from opuslm.eval.text import fact_category

    categories = [fact_category(question) for question, _, _ in factual_questions()]
    assert categories[0] == "capital" and categories.count("capital") == 50
    assert {c for c in categories[207:]} == {"sums (plus)", "sums (minus)", "sums (times)"}
    row = lambda task, key, category, score: {"id": key, "task": task, "category": category, "score": score}  # noqa: E731
    hyps = [row("text_qa", "fact-000", "capital", 1.0), row("spoken_qa", "fact-000", "capital", 1.0),
            row("text_qa", "fact-001", "capital", 1.0), row("spoken_qa", "fact-001", "capital", 0.0),
            row("text_qa", "fact-002", "capital", 0.0), row("spoken_qa", "fact-002", "capital", 1.0),
            row("text_qa", "fact-003", "animal", 0.0),  # asked in text only (an eval --limit): not counted
            {"id": "x", "task": "asr", "score": 0.0}]
    assert facts_by_category(hyps) == {"capital": {"questions": 3, "text": 2 / 3, "aloud": 2 / 3, "both": 1 / 3}}
    assert facts_by_category(hyps[:1]) == {} and facts_table({}) == []
    assert "| capital | 3 | 0.67 | 0.67 | 0.33 |" in facts_table(facts_by_category(hyps))
