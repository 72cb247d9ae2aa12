"""Word times by forced alignment: a frame classifier over speech-encoder features, and the Viterbi path
of a transcript's tokens through it (how HMM aligners such as the Montreal Forced Aligner place words).

Why not the language model's own times: written as text after ASR (`opuslm.infer.timed_words`), they miss
by about 200 ms in the demo (the model must turn a position it attends to into decimal digits), and a CTC
head on the same features aligns no better (a CTC posterior spikes anywhere within its token). The
corpus knows where each word lies, so this classifier learns it frame by frame: each 40 ms frame of a
training clip is labelled with the text token being spoken (a word's span shared among its tokens by
position) or silence, and a small network on the features learns to tell them (two layers, as the
continuous input path's adapter; Whisper's encoder states are local enough in time for that).

Aligning a transcript (words, each a run of token ids) to a clip's frames is a left-to-right HMM:

    [silence?] word 1's tokens [silence?] word 2's tokens ... [silence?]

every token holds at least one frame, a silence may hold none, and a frame's score is its log posterior
of the state's label. A word then spans its first token's first frame to its last token's last frame.
A token the classifier never saw in training scores as "not silence" (1 - p(silence)). Where a clip
has fewer frames than the transcript has tokens, each word is one state, scored by its likeliest token;
with fewer frames than words (a runaway transcript), the words share the clip evenly.

The aligner is a folder (`aligner.json`: the features, classes and the dev report; `aligner.pt`; the
text tokenizer it labels with, `text/`), trained by `opuslm tokenizers train-aligner` or the demo:

    aligner = WordAligner.load("demo_out/tokenizers/aligner")
    aligner.align(wav, 16000, ["zoe", "wanted", "eight", "tomatoes"])  # -> [(0.0, 0.21), (0.21, 0.52), ...]

No library fits: torchaudio's `forced_align` aligns CTC posteriors (and is not a dependency), and the
HMM aligners (MFA, Kaldi) are programs with their own acoustic models, not functions over our posteriors.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from opuslm.audio import resample
from opuslm.errors import OpusLMError
from opuslm.json_files import write_json

SILENCE = 0  # class 0; class k > 0 is the k-th text token the training transcripts hold
HIDDEN = 256


def word_token_ids(tokenizer, words: list[str]) -> list[list[int]]:
    """Each word's text-token ids as the transcript spells it: the first bare, the rest after a space."""
    return [tokenizer(("" if i == 0 else " ") + word, add_special_tokens=False)["input_ids"]
            for i, word in enumerate(words)]


def frame_labels(spans: list[tuple[float, float]], tokens: list[list[int]], frames: int, frame_seconds: float
                 ) -> np.ndarray:
    """`[frames]` int64: the token spoken in each frame (-1 for silence), each word's frames
    [round(start / frame), round(end / frame)) (at least one) shared among its tokens in order."""
    labels = np.full(frames, -1, np.int64)
    for (start, end), ids in zip(spans, tokens, strict=True):
        lo = min(int(round(start / frame_seconds)), frames - 1)
        hi = min(max(int(round(end / frame_seconds)), lo + 1), frames)
        for k, token in enumerate(ids):
            labels[lo + (hi - lo) * k // len(ids): lo + (hi - lo) * (k + 1) // len(ids)] = token
    return labels


def forced_alignment(scores: np.ndarray, words: list[list[int]]) -> list[tuple[int, int]]:
    """The best path of `words` (each a list of state labels, columns of `scores`) through `scores`
    `[frames, labels]` (log probabilities; column SILENCE is silence), with optional silences before,
    between and after the words and every token at least one frame: each word's (first frame, last
    frame + 1). Needs as many frames as tokens."""
    if not words:
        return []
    labels, optional, word_of = [SILENCE], [True], [-1]
    for index, tokens in enumerate(words):
        for label in tokens:
            labels.append(label), optional.append(False), word_of.append(index)
        labels.append(SILENCE), optional.append(True), word_of.append(-1)
    frames, states, tokens = scores.shape[0], len(labels), sum(map(len, words))
    if frames < tokens:
        raise OpusLMError(f"forced alignment: {tokens} tokens cannot hold a frame each in {frames} frames")
    emit = scores[:, labels]
    # a state is entered from itself, the state before it, or over an optional silence from two before
    skip_from = np.array([s >= 2 and optional[s - 1] for s in range(states)])
    best = np.full((frames, states), -np.inf)
    came_from = np.zeros((frames, states), np.int64)  # how far back the previous frame's state was
    best[0, 0], best[0, 1] = emit[0, 0], emit[0, 1]
    for t in range(1, frames):
        moves = np.full((3, states), -np.inf)
        moves[0] = best[t - 1]
        moves[1, 1:] = best[t - 1, :-1]
        moves[2, 2:] = np.where(skip_from[2:], best[t - 1, :-2], -np.inf)
        came_from[t] = moves.argmax(0)
        best[t] = moves.max(0) + emit[t]
    state = states - 1 if best[-1, -1] >= best[-1, -2] else states - 2
    spans: dict[int, list[int]] = {}
    for t in range(frames - 1, -1, -1):
        if word_of[state] >= 0:
            spans.setdefault(word_of[state], [t, t + 1])[0] = t
        state -= came_from[t, state]
    return [tuple(spans[i]) for i in range(len(words))]


class FrameClassifier(nn.Module):
    """Features `[..., D]` -> class logits `[..., classes]`."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(features, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN), nn.GELU(),
                                    nn.Linear(HIDDEN, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class WordAligner:
    """A trained frame classifier, its features (normalised as in training) and its text tokenizer."""

    def __init__(self, features, tokenizer, classifier: FrameClassifier, token_classes: list[int],
                 normalization: np.ndarray, info: dict | None = None):
        self.features, self.tokenizer, self.classifier = features, tokenizer, classifier.eval()
        self.token_classes = {token: k + 1 for k, token in enumerate(token_classes)}
        self.normalization = np.asarray(normalization, np.float32)
        self.info = info or {}

    @property
    def frame_seconds(self) -> float:
        return 1.0 / self.features.frame_rate

    def frame_features(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        feats = self.features(resample(np.asarray(wav, np.float32), sample_rate, self.features.sample_rate))
        return ((feats - self.normalization[0]) / self.normalization[1]).astype(np.float32)

    @torch.no_grad()
    def scores(self, feats: np.ndarray) -> np.ndarray:
        """`[frames, 2 + known tokens]`: log p(silence), log p(speech), then a column per known token
        (`_columns`)."""
        log_probs = self.classifier(torch.from_numpy(feats)).log_softmax(-1).double()
        speech = torch.log1p(-log_probs[:, SILENCE].exp().clamp(max=1 - 1e-12))
        return torch.cat([log_probs[:, :1], speech[:, None], log_probs[:, 1:]], 1).numpy()

    def _columns(self, tokens: list[list[int]]) -> list[list[int]]:
        """Each token's column of `scores`: its class (after the two leading columns), or speech (1)."""
        return [[self.token_classes[t] + 1 if t in self.token_classes else 1 for t in ids] for ids in tokens]

    def align(self, wav: np.ndarray, sample_rate: int, words: list[str]) -> list[tuple[float, float]]:
        """(start, end) seconds of each word of `words` in the clip, in order, within its length."""
        if not words:
            return []
        scores = self.scores(self.frame_features(wav, sample_rate))
        columns = self._columns(word_token_ids(self.tokenizer, words))
        if sum(map(len, columns)) > len(scores):  # too fast for a frame per token: a state per word
            word_scores = np.stack([scores[:, ids].max(1) for ids in columns], 1)
            scores = np.concatenate([scores[:, :1], word_scores], 1)
            columns = [[k + 1] for k in range(len(columns))]
        seconds = len(wav) / sample_rate
        if len(columns) > len(scores):  # a runaway transcript: no frame can tell its words apart
            return [(seconds * k / len(words), seconds * (k + 1) / len(words)) for k in range(len(words))]
        return [(min(lo * self.frame_seconds, seconds), min(hi * self.frame_seconds, seconds))
                for lo, hi in forced_alignment(scores, columns)]

    def summary(self) -> str:
        aas = self.info.get("dev_aas_ms")
        placed = f"dev words placed {aas:.0f} ms from their times on average" if aas is not None else "no dev clips placed"
        return f"{len(self.token_classes)} token classes, {placed}"

    # ---- a folder ----
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.classifier.state_dict(), folder / "aligner.pt")
        np.save(folder / "normalization.npy", self.normalization)
        self.tokenizer.save_pretrained(folder / "text")
        classes = sorted(self.token_classes, key=self.token_classes.get)
        write_json(folder / "aligner.json", {**self.info, "features": self.features.config(), "token_classes": classes})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> WordAligner:
        from transformers import AutoTokenizer

        from opuslm.tokenize.features import build_features

        folder = Path(folder)
        if not (folder / "aligner.json").is_file():
            raise OpusLMError(f"{folder} is not a word aligner (no aligner.json); train one with "
                              "`opuslm tokenizers train-aligner`")
        info = json.loads((folder / "aligner.json").read_text())
        classes = info.pop("token_classes")
        features = build_features(info.pop("features"))
        normalization = np.load(folder / "normalization.npy")
        classifier = FrameClassifier(normalization.shape[1], len(classes) + 1)
        classifier.load_state_dict(torch.load(folder / "aligner.pt", weights_only=True))
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "text"))
        return cls(features, tokenizer, classifier, classes, normalization, info)


def timed_clips(manifest: str | Path, split: str, limit: int | None = None) -> list[tuple[np.ndarray, int, list]]:
    """(16 kHz wav, 16000, words) of a manifest split's first `limit` utterances that have word times."""
    from opuslm.data.manifest import read_manifest

    manifest = Path(manifest)
    folder = manifest if manifest.is_dir() else manifest.parent
    timed = [u for u in read_manifest(manifest, split=split) if u.words][:limit]
    return [(*u.load_audio(folder, target_rate=16000), u.words) for u in timed]


def boundary_error_ms(aligner: WordAligner, clips: list[tuple[np.ndarray, int, list]]) -> float | None:
    """Mean absolute shift (ms) of the aligned start and end times of (wav, rate, [[word, start, end], ...])
    clips' own words against their times: SRWT's AAS when the transcript is right."""
    shifts = []
    for wav, rate, words in clips:
        aligned = aligner.align(wav, rate, [w for w, _, _ in words])
        shifts += [abs(a - s) for (_, *ref), got in zip(words, aligned) for s, a in zip(ref, got)]
    return 1000 * float(np.mean(shifts)) if shifts else None


def fit_word_aligner(train: list[tuple[np.ndarray, int, list]], dev: list[tuple[np.ndarray, int, list]], features,
                     tokenizer, steps: int = 800, batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
                     progress: bool = True) -> WordAligner:
    """Train on (wav, sample rate, [[word, start s, end s], ...]) clips; `info` holds the dev clips' AAS."""
    from opuslm.progress import progress_bar

    if not train:
        raise OpusLMError("the word aligner needs training clips with word times (the manifest's `words`)")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    feats = [features(resample(np.asarray(w, np.float32), rate, features.sample_rate))
             for w, rate, _ in progress_bar(train, desc="aligner features", unit="clip", disable=not progress)]
    stacked = np.concatenate(feats)
    normalization = np.stack([stacked.mean(0), stacked.std(0) + 1e-5]).astype(np.float32)
    feats = [torch.from_numpy((f - normalization[0]) / normalization[1]) for f in feats]
    tokens = [word_token_ids(tokenizer, [w for w, _, _ in words]) for _, _, words in train]
    classes = sorted({t for clip in tokens for ids in clip for t in ids})
    index = {token: k + 1 for k, token in enumerate(classes)}
    targets = []
    for f, (_, _, words), ids in zip(feats, train, tokens):
        labels = frame_labels([(s, e) for _, s, e in words], ids, len(f), 1.0 / features.frame_rate)
        targets.append(torch.tensor([index[t] if t >= 0 else SILENCE for t in labels]))
    classifier = FrameClassifier(stacked.shape[1], len(classes) + 1)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    bar = progress_bar(range(steps), desc="aligner", unit="step", disable=not progress)
    for step in bar:
        chosen = rng.sample(range(len(train)), min(batch_size, len(train)))
        x = nn.utils.rnn.pad_sequence([feats[i] for i in chosen], batch_first=True)
        y = nn.utils.rnn.pad_sequence([targets[i] for i in chosen], batch_first=True, padding_value=-100)
        loss = F.cross_entropy(classifier(x).transpose(1, 2), y, ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)  # tqdm draws it with the count
    aligner = WordAligner(features, tokenizer, classifier, classes, normalization,
                          {"steps": steps, "train_clips": len(train), "dev_clips": len(dev)})
    aligner.info["dev_aas_ms"] = boundary_error_ms(aligner, dev)
    return aligner
