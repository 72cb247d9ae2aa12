"""Understanding tasks as data: the built-ins from tasks.yaml, a user's declared tasks, their frames,
their refusal of bad declarations, and their scoring in eval."""

import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from opuslm.errors import OpusLMError
from opuslm.frames_view import decoded_form
from opuslm.tasks import BUILTIN_TASKS, TaskTable, read_tasks
from opuslm.templates import TemplateBuilder
from opuslm.tokenize.shards import TokenizedUtterance
from opuslm.vocab import TASKS, JointVocab

SENTENCE_TYPE = {"sentence_type": {"labels": ["sentence_type"], "target": "labels", "score": "first_tag",
                                   "instructions": ["What kind of sentence is this?"]}}


def write_tasks(folder: Path, tasks: dict) -> Path:
    path = folder / "tasks.yaml"
    path.write_text(yaml.safe_dump(tasks))
    return path


def test_every_builtin_understanding_task_has_its_own_task_id_and_a_declared_one_has_none(tmp_path):
    assert set(BUILTIN_TASKS) <= set(TASKS)
    assert all(spec.builtin and spec.marker == (f"<task:{name}>", "<text_start>") for name, spec in BUILTIN_TASKS.items())
    declared = read_tasks(write_tasks(tmp_path, SENTENCE_TYPE))["sentence_type"]
    assert not declared.builtin and declared.marker == ("<text_start>",)


def test_a_declared_task_builds_instruction_audio_and_its_labels(char_tokenizer, tmp_path):
    table = TaskTable(read_tasks(write_tasks(tmp_path, SENTENCE_TYPE)))
    vocab = JointVocab(semantic_size=4, num_codebooks=2, codebook_size=4, text_size=len(char_tokenizer))
    builder = TemplateBuilder(vocab, char_tokenizer, max_delay=2, prompt_frames=2, tasks=table)
    ids = np.array(char_tokenizer("is it", add_special_tokens=False)["input_ids"])
    example = TokenizedUtterance(ids, np.array([1, 2, 3]), np.array([[0, 1, 2], [3, 0, 1]]),
                                 {"id": "u1", "text": "is it", "labels": {"sentence_type": "Question"}})
    frames = builder.build("sentence_type", example, random.Random(0))
    assert decoded_form(frames.tokens, vocab, char_tokenizer) == (
        '<sos> <text_start> "What kind of sentence is this?" <pad>x2 <audio_start> [audio x3] <pad>x2 '
        '<text_start> "<question>" <eos> <pad>x2')
    assert frames.heard is not None and np.array_equal(frames.transcript, ids)
    with pytest.raises(OpusLMError, match="unknown understanding task 'sentence_type'.*declare your own"):
        TemplateBuilder(vocab, char_tokenizer, max_delay=2).build("sentence_type", example)


@pytest.mark.parametrize("tasks, message", [
    ({"ser": SENTENCE_TYPE["sentence_type"]}, "ser are built in"),
    ({"x": {**SENTENCE_TYPE["sentence_type"], "scores": "wer"}}, r"task x: scores: Extra inputs"),
    ({"x": {**SENTENCE_TYPE["sentence_type"], "target": "label"}}, r"task x: target: Input should be"),
    ({"x": {**SENTENCE_TYPE["sentence_type"], "labels": []}}, "task x writes labels but names no label keys"),
    ({"x": {**SENTENCE_TYPE["sentence_type"], "instructions": []}}, "task x: instructions: List should have at least 1"),
    ({"x": "labels"}, "task x must be a mapping"),
    ({"x": {**SENTENCE_TYPE["sentence_type"], "score": "timestamps"}}, "task x scores timestamps, which only the built-in"),
])
def test_a_bad_declaration_is_refused_naming_the_file_and_the_task(tmp_path, tasks, message):
    path = write_tasks(tmp_path, tasks)
    with pytest.raises(OpusLMError, match=message) as error:
        read_tasks(path)
    assert str(path) in str(error.value)


def test_a_model_folder_keeps_its_declared_tasks_and_two_different_declarations_clash(tmp_path):
    table = TaskTable(read_tasks(write_tasks(tmp_path, SENTENCE_TYPE)))
    table.save(tmp_path)
    again = TaskTable.of_model(tmp_path)
    assert again.declared == table.declared and "sentence_type" in again and "ser" in again
    assert not (tmp_path / "empty").exists() and TaskTable.of_model(tmp_path / "empty").declared == {}
    other = {"sentence_type": {**SENTENCE_TYPE["sentence_type"], "score": "exact"}}
    (tmp_path / "b").mkdir()
    with pytest.raises(OpusLMError, match="sentence_type is declared twice, differently"):
        table.merged(TaskTable(read_tasks(write_tasks(tmp_path / "b", other))))
    assert table.merged(again).declared == table.declared


def test_eval_scores_a_declared_task_by_its_first_tag_beside_the_majority_and_unseen_labels(small_corpus, tmp_path):
    """A scripted model answers `<male>` for every clip of a task reading the gender label: its accuracy is
    the male share, which is also the majority share when males are the majority; a label the train split
    never has ("robot") is listed as unseen."""
    from opuslm.data.manifest import read_manifest, write_manifest
    from opuslm.eval.runner import Evaluation

    utterances = read_manifest(small_corpus)
    test = [u for u in utterances if u.split == "test"]
    test[0].labels = {**test[0].labels, "gender": "robot"}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for u in utterances:
        u.audio = str(u.audio_path(small_corpus))
    write_manifest(corpus / "manifest.jsonl", utterances)
    table = TaskTable(read_tasks(write_tasks(tmp_path, {"voice": {
        "labels": ["gender"], "target": "labels", "score": "first_tag", "instructions": ["Whose voice?"]}})))

    class ScriptedLM:
        tasks = table

        def understand(self, task, audios):
            assert task == "voice"
            return ["<male>"] * len(audios)

    evaluation = Evaluation(tmp_path, corpus, tmp_path / "eval", lm=ScriptedLM(), batch_size=4, progress=False)
    evaluation.declared(table.declared["voice"], "test")
    genders = [u.labels["gender"] for u in test]
    assert evaluation.results["voice_accuracy"] == pytest.approx(genders.count("male") / len(test))
    report = evaluation.results["declared"]["voice"]
    shares = [genders.count(g) / len(test) for g in set(genders)]
    assert report == {"score": "first_tag", "utterances": len(test), "majority": pytest.approx(max(shares)),
                      "unseen_labels": ["robot"], "seen_in": "the corpus's train split",
                      "value": evaluation.results["voice_accuracy"]}
    (tmp_path / "trained_labels.json").write_text('{"voice": ["female", "robot"]}')  # the model folder's record wins
    evaluation = Evaluation(tmp_path, corpus, tmp_path / "eval", lm=ScriptedLM(), batch_size=4, progress=False)
    evaluation.declared(table.declared["voice"], "test")
    assert all(h["problems"] == ["unknown label <male>"] for h in evaluation.hyps)  # not among those it was taught
    assert evaluation.results["declared"]["voice"]["unseen_labels"] == ["male"]
    labels, counts = evaluation.results["confusion"]["voice"]
    assert counts[labels.index("robot")][labels.index("male")] == 1
