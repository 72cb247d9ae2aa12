"""Speaker similarity: the cosine between two clips' speaker embeddings.

The encoder is Resemblyzer's GE2E d-vector (Apache-2.0; its weights ship inside the wheel, so nothing
downloads), on 16 kHz audio as it was trained, without its VAD trimming (the clips here are single
utterances). eSpeak's voices are formant synthesisers that differ little, so its numbers are read
against two references on the same clips: another utterance of the same speaker, and an utterance of
a different speaker.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000


class SpeakerEncoder:
    def __init__(self, weights: str | None = None):
        import warnings

        with warnings.catch_warnings():  # webrtcvad's `import pkg_resources` warns on every import
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=weights)
        self.info = {"kind": "resemblyzer-ge2e", "weights": weights or "the wheel's pretrained.pt"}

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """A unit-length embedding of a 16 kHz clip (clips under 0.2 s are padded with silence)."""
        wav = np.asarray(wav, np.float32)
        if len(wav) < SAMPLE_RATE // 5:
            wav = np.pad(wav, (0, SAMPLE_RATE // 5 - len(wav)))
        return self.encoder.embed_utterance(wav)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        x, y = self.embed(a), self.embed(b)
        return float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-12))
