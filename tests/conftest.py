from pathlib import Path

import pytest

from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A 0.1-hour eSpeak corpus (about 130 utterances), made once per test process."""
    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, SynthConfig(hours=0.1, seed=7), workers=1, progress=False)
    return out
