"""The semantic tokenizer: frame features -> nearest k-means centroid id (OpusLM: XEUS layer 18, K=5000).

A trained tokenizer is a folder: `semantic.json` (feature config, K, seed), `centroids.npy`,
`normalization.npy` (per-dimension mean and std of the training frames). Encoding needs only these,
so ids are reproducible without scikit-learn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from opuslm.audio import resample
from opuslm.errors import OpusLMError
from opuslm.json_files import write_json
from opuslm.tokenize.features import build_features


class SemanticTokenizer:
    def __init__(self, features, centroids: np.ndarray, normalization: np.ndarray, seed: int = 0):
        self.features, self.seed = features, seed
        self.centroids = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
        self.normalization = np.asarray(normalization, dtype=np.float32)
        # Distances in float64: float32 matrix products round differently with the arrays' memory
        # alignment, which flipped near-tied ids between two loads of the same tokenizer.
        self._centroids64 = self.centroids.to(torch.float64)
        self._centroid_norms = (self._centroids64 ** 2).sum(1)

    @property
    def vocab_size(self) -> int:
        return len(self.centroids)

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.features.frame_rate

    def encode(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """int64 ids `[frames]` of mono audio at `sample_rate`."""
        return self.encode_with_features(wav, sample_rate)[0]

    def encode_with_features(self, wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """The ids and the features they were chosen from, normalised as k-means saw them (float32
        `[frames, dim]`): what a model's continuous input path reads (`opuslm.model.streams`)."""
        feats = self.features(resample(np.asarray(wav, np.float32), sample_rate, self.sample_rate))
        normalised = ((feats - self.normalization[0]) / self.normalization[1]).astype(np.float32)
        x = torch.from_numpy(normalised).to(torch.float64)
        distances = self._centroid_norms[None, :] - 2 * x @ self._centroids64.T
        return distances.argmin(dim=1).numpy().astype(np.int64), normalised

    @property
    def feature_dim(self) -> int:
        return self.centroids.shape[1]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "centroids.npy", self.centroids.numpy())
        np.save(folder / "normalization.npy", self.normalization)
        meta = {"type": "semantic", "features": self.features.config(), "k": self.vocab_size, "seed": self.seed}
        write_json(folder / "semantic.json", meta, indent=2)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SemanticTokenizer:
        folder = Path(folder)
        if not (folder / "semantic.json").is_file():
            raise OpusLMError(f"{folder} is not a semantic tokenizer (no semantic.json); train one with "
                              "`opuslm tokenizers train-semantic`")
        meta = json.loads((folder / "semantic.json").read_text())
        return cls(build_features(meta["features"]), np.load(folder / "centroids.npy"),
                   np.load(folder / "normalization.npy"), meta.get("seed", 0))


def train_semantic_tokenizer(audio: Iterable[tuple[np.ndarray, int]], features, k: int, seed: int = 0,
                             max_frames: int = 200_000) -> SemanticTokenizer:
    """Fit k-means (scikit-learn MiniBatchKMeans) on up to `max_frames` frames of `audio`, in order."""
    from sklearn.cluster import MiniBatchKMeans

    chunks, total = [], 0
    for wav, rate in audio:
        feats = features(resample(np.asarray(wav, np.float32), rate, features.sample_rate))
        chunks.append(feats[: max_frames - total])
        total += len(chunks[-1])
        if total >= max_frames:
            break
    frames = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    if len(frames) < k:
        raise OpusLMError(f"k-means with K={k} needs at least {k} frames; the audio gave {len(frames)}. "
                          "Use more audio or a smaller K")
    mean, std = frames.mean(0), frames.std(0) + 1e-5
    kmeans = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096, max_iter=100)
    kmeans.fit((frames - mean) / std)
    return SemanticTokenizer(features, kmeans.cluster_centers_, np.stack([mean, std]), seed)
