"""The joint vocabulary: layout, id mapping both ways, identity and refusal of other layouts."""

import json
import random

import numpy as np
import pytest

from opuslm.errors import OpusLMError
from opuslm.vocab import MODALITIES, PAD_ID, SPECIALS, SPECIALS_SIZE, TASKS, JointVocab

DEMO = JointVocab(semantic_size=256, num_codebooks=8, codebook_size=256, text_size=1024)


def test_the_demo_layout_is_pinned():
    """A change to the specials or the order of ranges changes this hash: it must be a reviewed,
    versioned change, since every checkpoint and corpus records it."""
    assert DEMO.hash == "d00834bc039e04d8"
    assert DEMO.ranges() == {
        "special": (0, 256), "semantic": (256, 512),
        **{f"codebook_{k}": (512 + 256 * k, 768 + 256 * k) for k in range(8)},
        "text": (2560, 3584),
    }


@pytest.mark.parametrize("seed", range(20))
def test_ranges_tile_the_vocabulary_in_order(seed):
    rng = random.Random(seed)
    vocab = JointVocab(rng.randint(1, 6000), rng.randint(1, 32), rng.randint(1, 2048), rng.randint(1, 200_000))
    spans = list(vocab.ranges().values())
    assert spans[0][0] == 0 and spans[-1][1] == vocab.size
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert vocab.ranges()["text"][1] - vocab.ranges()["text"][0] == vocab.text_size
    names = list(vocab.ranges())
    assert names == ["special", "semantic", *(f"codebook_{k}" for k in range(vocab.num_codebooks)), "text"]


def test_specials_are_versioned_and_complete():
    assert len(SPECIALS) == SPECIALS_SIZE == len(set(SPECIALS))
    assert SPECIALS[PAD_ID] == "<pad>" and DEMO.special("<pad>") == 0
    assert SPECIALS[:4] == ("<pad>", "<eos>", "<unk>", "<sos>")
    for task in TASKS:
        assert DEMO.describe(DEMO.task(task)) == f"<task:{task}>"
    with pytest.raises(OpusLMError, match="unknown task 'dance'"):
        DEMO.task("dance")


def test_local_ids_map_into_their_range_and_back():
    vocab = JointVocab(semantic_size=5, num_codebooks=3, codebook_size=4, text_size=7)
    assert vocab.semantic([0, 4]).tolist() == [256, 260]
    codes = np.array([[0, 3], [1, 2], [3, 0]])
    joint = vocab.codes(codes)
    assert joint.tolist() == [[261, 264], [266, 267], [272, 269]]
    assert [vocab.describe(i) for i in joint.ravel()] == ["c0:0", "c0:3", "c1:1", "c1:2", "c2:3", "c2:0"]
    assert vocab.text([0, 6]).tolist() == [273, 279] and vocab.size == 280
    assert vocab.describe(279) == "t6"
    ids = np.array([0, 255, 256, 260, 261, 272, 273, 279])
    assert [MODALITIES[m] for m in vocab.modality(ids)] == [
        "special", "special", "semantic", "semantic", "codec", "codec", "text", "text"]


@pytest.mark.parametrize("seed", range(10))
def test_joint_to_local_inverts_local_to_joint(seed):
    rng = np.random.default_rng(seed)
    vocab = JointVocab(int(rng.integers(1, 300)), int(rng.integers(1, 9)), int(rng.integers(1, 300)), int(rng.integers(1, 5000)))
    text = rng.integers(0, vocab.text_size, 50)
    codes = rng.integers(0, vocab.codebook_size, (vocab.num_codebooks, 20))
    assert np.array_equal(vocab.to_text(vocab.text(text)), text)
    assert np.array_equal(vocab.to_codes(vocab.codes(codes)), codes)
    # every modality's range is where the forward maps land, and the ranges tile the vocabulary
    assert vocab.modality_range("semantic") == (vocab.semantic([0])[0], vocab.semantic([vocab.semantic_size - 1])[0] + 1)
    assert vocab.modality_range("text") == vocab.ranges()["text"]
    assert vocab.modality_range("codec") == (vocab.ranges()["codebook_0"][0], vocab.ranges()["text"][0])
    bounds = [vocab.modality_range(m) for m in MODALITIES]
    assert bounds[0][0] == 0 and bounds[-1][1] == vocab.size and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("call, message", [
    (lambda v: v.to_text([272]), r"joint id 272 is not a text id \(those are \[273, 280\)\)"),
    (lambda v: v.to_codes([[261], [261], [269]]), r"joint id 261 is not a codebook 1 id \(those are \[265, 269\)\)"),
    (lambda v: v.to_codes([[261, 262]]), r"codebook frames must be \[3 codebooks"),
    (lambda v: v.modality_range("audio"), "unknown modality 'audio'"),
])
def test_joint_ids_outside_the_asked_range_are_refused(call, message):
    with pytest.raises(OpusLMError, match=message):
        call(JointVocab(semantic_size=5, num_codebooks=3, codebook_size=4, text_size=7))


def test_stream_ranges_are_the_whole_vocabulary_then_one_codebook_each():
    vocab = JointVocab(semantic_size=5, num_codebooks=3, codebook_size=4, text_size=7)
    assert vocab.num_streams == 4
    assert [vocab.stream_range(n) for n in range(4)] == [(0, 280), (261, 265), (265, 269), (269, 273)]


@pytest.mark.parametrize("call, message", [
    (lambda v: v.semantic([5]), "semantic id 5 is outside"),
    (lambda v: v.codes([[0], [4], [0]]), "codec code 4 is outside"),
    (lambda v: v.codes([[0], [1]]), r"codes must be \[3 codebooks"),
    (lambda v: v.text([-1]), "text id -1 is outside"),
    (lambda v: v.describe(280), "outside the joint vocabulary"),
])
def test_out_of_range_ids_are_refused(call, message):
    with pytest.raises(OpusLMError, match=message):
        call(JointVocab(semantic_size=5, num_codebooks=3, codebook_size=4, text_size=7))


def test_the_layout_depends_on_sizes_not_on_config_key_order():
    sizes = {"semantic_size": 256, "num_codebooks": 8, "codebook_size": 256, "text_size": 1024}
    shuffled = dict(reversed(list(sizes.items())))
    assert JointVocab(**shuffled).hash == JointVocab(**sizes).hash == DEMO.hash
    for name in sizes:
        assert JointVocab(**{**sizes, name: sizes[name] + 1}).hash != DEMO.hash


def test_save_load_round_trip_and_a_hand_edit_is_refused(tmp_path):
    path = DEMO.save(tmp_path / "vocab.json")
    assert JointVocab.load(path) == DEMO
    stored = json.loads(path.read_text())
    stored["ranges"]["text"] = [2561, 3585]
    path.write_text(json.dumps(stored))
    with pytest.raises(OpusLMError, match=rf"does not match the layout its sizes give \(.*hash {DEMO.hash}\): these keys differ: ranges;"):
        JointVocab.load(path)
    stored = {**json.loads(DEMO.save(path).read_text()), "hash": "0123456789abcdef"}
    path.write_text(json.dumps(stored))
    with pytest.raises(OpusLMError, match="these keys differ: hash;"):
        JointVocab.load(path)


def test_another_layout_is_refused_naming_both_hashes():
    other = JointVocab(semantic_size=500, num_codebooks=8, codebook_size=256, text_size=1024)
    with pytest.raises(OpusLMError) as error:
        DEMO.require_same(other, "checkpoint ckpt/")
    assert other.hash in str(error.value) and DEMO.hash in str(error.value)
    assert "checkpoint ckpt/" in str(error.value)


def test_the_layout_of_token_shards_comes_from_their_tokenizers(tiny_shards, tiny_tokenizers):
    from opuslm.tokenize.text import load_text_tokenizer

    vocab = JointVocab.from_tokens(tiny_shards)
    assert (vocab.semantic_size, vocab.num_codebooks, vocab.codebook_size) == (16, 4, 32)
    assert vocab.text_size == len(load_text_tokenizer(tiny_tokenizers.text))
