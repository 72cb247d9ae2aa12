"""A task's output read by its format: what it says, what is wrong with it, and the guard's prefix."""

import pytest

from opuslm.infer.outputs import emitted_words, read_output

GENDERS = {"male", "female"}


@pytest.mark.parametrize("target, text, options, transcript, labels, answer, problems, guarded", [
    # ASR: the transcript and nothing else; a tag is a separator, not glue
    ("transcript", "put the key by the window", {}, "put the key by the window", [], None, [], "put the key by the window"),
    ("transcript", "put the key by the window<male>", {}, "put the key by the window", [], None,
     ["stray tag <male>"], "put the key by the window"),
    ("transcript", "about sheep<0.44>does<0.44>", {}, "about sheep does", [], None,
     ["stray tag <0.44>", "stray tag <0.44>"], "about sheep"),
    ("transcript", "", {}, "", [], None, ["no words"], ""),
    # ASR + X: the transcript, then exactly the task's tags, from those it was taught
    ("transcript+labels", "henry reads<male>", dict(label_count=1, known_labels=GENDERS), "henry reads", ["male"],
     None, [], "henry reads<male>"),
    ("transcript+labels", "henry reads<male><laugh>", dict(label_count=1, known_labels=GENDERS), "henry reads",
     ["male", "laugh"], None, ["2 labels where the task writes 1", "unknown label <laugh>"], "henry reads<male>"),
    ("transcript+labels", "henry<0.4>reads<male>", dict(label_count=1, known_labels=GENDERS), "henry",
     ["0.4", "male"], None, ["2 labels where the task writes 1", "unknown label <0.4>", "words among the labels"],
     "henry"),
    ("transcript+labels", "<male>", dict(label_count=1), "", ["male"], None, ["no transcript before the labels"], "<male>"),
    # label only: exactly the tags
    ("labels", "<Female>", dict(label_count=1, known_labels=GENDERS), None, ["female"], None, [], "<Female>"),
    ("labels", "<laugh><cough>", dict(label_count=1), None, ["laugh", "cough"], None,
     ["2 labels where the task writes 1"], "<laugh>"),
    ("labels", "she<female>", dict(label_count=1), None, ["female"], None, ["words among the labels"], ""),
    # STTC: one answer after one <answer>
    ("transcript+answer", "what is two plus two<answer>four", {}, "what is two plus two", [], "four", [],
     "what is two plus two<answer>four"),
    ("transcript+answer", "the window", {}, "the window", [], None, ["no <answer>"], "the window"),
    ("transcript+answer", "q<answer>four<answer>five", {}, "q", [], "four", ["2 <answer> tags"], "q<answer>four"),
    ("transcript+answer", "q<answer>", {}, "q", [], "", ["no answer after <answer>"], "q<answer>"),
    ("transcript+answer", "the window<anket<answer>two", {}, "the window anket", [], "two",
     ["a broken tag ('<' alone)"], "the window"),
])
def test_outputs_read_as_their_task_writes_them(target, text, options, transcript, labels, answer, problems, guarded):
    read = read_output(target, text, **options)
    assert (read.transcript, read.labels, read.answer, read.problems) == (transcript, labels, answer, problems)
    assert read.malformed == bool(problems)
    assert read.well_formed == guarded
    assert text.startswith(guarded)  # the guard only ever ends an output early
    # what it keeps has nothing the format forbids; it may lack what the model never wrote (a label, an answer)
    again = read_output(target, guarded, **options)
    assert again.well_formed == guarded
    extra = ("stray", "unknown", "words among", "a broken", "timestamps", "2 ")
    assert not [p for p in again.problems if p.startswith(extra)]


def test_timestamps_must_be_ordered_and_inside_the_clip():
    good = read_output("timestamps", "<0.00>the<0.20><0.20>cat<0.60>", clip_seconds=1.0)
    assert good.timestamps == [("the", 0.0, 0.2), ("cat", 0.2, 0.6)] and not good.malformed
    assert good.transcript == "the cat" and good.well_formed == good.text
    backwards = read_output("timestamps", "<0.60>the<0.00><0.10>cat<0.30>", clip_seconds=1.0)
    assert backwards.problems == ["timestamps go backwards"] and backwards.well_formed == ""
    late = read_output("timestamps", "<0.00>the<0.20><0.20>cat<1.60>", clip_seconds=1.0)
    assert late.problems == ["timestamps pass the clip's end"] and late.well_formed == "<0.00>the<0.20>"
    assert not read_output("timestamps", "<0.00>the<1.05>", clip_seconds=1.0).malformed  # within the slack
    ragged = read_output("timestamps", "<0.00>the<0.20>cat<0.60>", clip_seconds=1.0)
    assert ragged.problems == ["not a timed word at 'cat<0.60>'"] and ragged.well_formed == "<0.00>the<0.20>"
    assert read_output("timestamps", "").problems == ["no timed words"]


def test_fields_hold_what_generate_json_prints():
    read = read_output("timestamps", "<0.00>hi<0.30>", clip_seconds=1.0)
    assert read.fields() == {"text": "<0.00>hi<0.30>", "transcript": "hi", "labels": [],
                             "timestamps": [{"word": "hi", "start": 0.0, "end": 0.3}], "answer": None,
                             "malformed": False, "problems": []}


def test_emitted_words_read_every_tag_and_bracket_as_a_separator():
    assert emitted_words("a<b>c <d> e<") == "a c e"
