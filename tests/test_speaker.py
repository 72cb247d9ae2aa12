"""Speaker similarity through Resemblyzer's own API, on clips of the embedded corpus."""

import numpy as np
import pytest

from opuslm.data.manifest import read_manifest
from opuslm.eval.speaker import SpeakerEncoder


@pytest.fixture(scope="module")
def encoder():
    return SpeakerEncoder()


def test_a_clip_is_itself_and_the_embedding_is_resemblyzers_own(encoder, small_corpus):
    from resemblyzer import VoiceEncoder

    wav = read_manifest(small_corpus, split="train")[0].load_audio(small_corpus, target_rate=16000)[0]
    assert encoder.similarity(wav, wav) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(encoder.embed(wav), VoiceEncoder("cpu", verbose=False).embed_utterance(wav))


def test_the_same_speaker_is_closer_than_another_on_average(encoder, small_corpus):
    utterances = read_manifest(small_corpus, split="train")
    by_speaker = {}
    for u in utterances:
        by_speaker.setdefault(u.speaker, []).append(u)
    speakers = [s for s, us in by_speaker.items() if len(us) >= 2][:4]
    audio = {s: [u.load_audio(small_corpus, target_rate=16000)[0] for u in by_speaker[s][:2]] for s in speakers}
    same = [encoder.similarity(*audio[s]) for s in speakers]
    other = [encoder.similarity(audio[a][0], audio[b][0]) for a in speakers for b in speakers if a < b]
    assert np.mean(same) > np.mean(other)
