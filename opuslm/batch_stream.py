"""The batch stream: where joint ids are shifted and packed for training. A weighted mixture of
(dataset, task) sources is templated (`templates.py`), each example's streams are shifted by their
delays (`interleave.py`), and the delayed examples are packed into rows of a fixed number of frames.

Determinism. Example k of the stream is decided by counters alone: the source from a generator
seeded with (seed, k); the item by that source's draw counter, through a permutation fixed per
(seed, source, epoch), so every item is seen once per epoch. Templates take their own
(seed, k)-seeded generator. The loader runs in the calling process, so nothing depends on workers;
templating is microseconds per example over memory-mapped shards.

Packing. A buffer of examples is packed best-fit-decreasing into the rows of a micro-batch; what
does not fit waits for the next one. Each packed example keeps its own positions (from 0) and a
document id, from which the model builds attention that never crosses examples, and the first
frame of an example is never a target of the frame before it.

State. `state()` is the draw position, the source counters and the keys of the buffered examples:
restoring it rebuilds the buffer and continues the exact same stream. Ranks take rows r, r+R, ... of
each global micro-batch, so the data seen is the same for any number of ranks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from opuslm.errors import OpusLMError
from opuslm.interleave import delay
from opuslm.templates import (TARGET_WRITERS, SpeakerPrompts, TemplateBuilder, TemplateError, label_values, spoken_words,
                              transcript)
from opuslm.vocab import PAD_ID, JointVocab

TEXT_SUFFIXES = (".txt",)


@dataclass
class HeardTranscripts:
    """What the auxiliary CTC loss needs of a batch: per heard audio segment, its row, its steps
    `[start, end)` in the delayed row (`ctc_span`: at the output, the trailer included, where the last
    frames' codebooks land; at the adapter, only its steps with features),
    and the transcript's text ids (the tokenizer's own ids); `weight` scales the summed loss."""

    rows: list[int]
    spans: list[tuple[int, int]]
    transcripts: list[torch.Tensor]
    weight: float
    layer: str = "output"


@dataclass
class HeardFeatures:
    """The continuous input path's inputs of a batch (`opuslm.model.streams`): at step s of row r,
    `values[r, s]` (`[R, L, F]`) is added through the adapter where `present[r, s]` (`[R, L]`) holds:
    the steps of the audio a task listens to, in stream 0's delayed place."""

    values: torch.Tensor
    present: torch.Tensor

    def to(self, device) -> HeardFeatures:
        return HeardFeatures(self.values.to(device), self.present.to(device))


@dataclass
class Batch:
    frames: torch.Tensor  # [R, N, L] delayed joint ids
    loss_mask: torch.Tensor  # [R, N, L]
    position_ids: torch.Tensor  # [R, L], from 0 in each example
    document_ids: torch.Tensor  # [R, L], -1 on padding
    examples: int
    real_frames: int  # frames holding an example (the rest is padding)
    heard: HeardTranscripts | None = None  # for the auxiliary CTC loss, when data.ctc_weight > 0
    features: HeardFeatures | None = None  # for the continuous input path, when the model has one

    def model_inputs(self, device) -> tuple:
        """What the model's loss takes, in its order, on `device`."""
        tensors = tuple(t.to(device) for t in (self.frames, self.loss_mask, self.position_ids, self.document_ids))
        return tensors + (self.heard, None if self.features is None else self.features.to(device))


class _Built(NamedTuple):
    """One templated, delayed example as the buffer holds it; `heard`: `(start, end, transcript)` of the
    audio it listens to, for the auxiliary CTC loss, or None; `features`: `(values [T, F], present [T])`
    of the continuous input path, or None."""

    key: tuple[int, int, int]
    tokens: np.ndarray
    mask: np.ndarray
    heard: tuple[int, int, np.ndarray] | None
    features: tuple[np.ndarray, np.ndarray] | None


def text_dataset_file(path: Path, split: str) -> Path | None:
    """The text file a text_lm source of `split` reads, or None for a token shard folder.

    A `.txt` file serves every split as it is; a folder of `<split>.txt` files (what
    `opuslm data synth-text` writes) gives each split its own, so validation reads held-out text."""
    if path.suffix in TEXT_SUFFIXES:
        return path
    if (path / "train.txt").is_file():
        return path / f"{split}.txt"
    return None


def source_text_file(path: Path, source, where: str) -> Path | None:
    """The text file `source` reads, or None for token shards, once the dataset is checked to exist
    and hold what the source's task needs (schedules check every source this way before any work)."""
    if not path.exists():
        raise OpusLMError(f"{where}: {path} does not exist; point it at a token shard folder or a text file")
    text_file = text_dataset_file(path, source.split)
    if text_file is not None:
        if source.task != "text_lm":
            raise OpusLMError(f"{where}: a text file ({text_file}) serves only the text_lm task, not {source.task}")
        if not text_file.is_file():
            raise OpusLMError(f"{where}: text file not found: {text_file} (the {source.split} split of {path})")
        if not any(line.strip() for line in text_file.open(encoding="utf-8")):
            raise OpusLMError(f"{where}: {text_file} holds no text (every line is blank); fill it or name another dataset")
    elif not (path / "tokens.json").is_file():
        empty = "is an empty folder" if path.is_dir() and not any(path.iterdir()) else "holds no token shards (no tokens.json)"
        raise OpusLMError(f"{where}: {path} {empty}; run `opuslm tokenize` into it first, or name another dataset")
    return text_file


@lru_cache(maxsize=16)
def _open_dataset(path: str):
    """A shard folder and every utterance's metadata, read once per process: a mixture names the
    same dataset in many sources, and each validation set opens it again."""
    from opuslm.tokenize.shards import TokenShards

    shards = TokenShards(path)
    return shards, [shards.meta(i) for i in range(len(shards))]


def mask_heard_audio(tokens: np.ndarray, heard: tuple[int, int], share: float, span: int, rng: random.Random) -> None:
    """Set every stream of `round(share x frames / span)` spans of `span` frames inside the heard
    audio `[start, end)` to pad, in place (spans may overlap, as SpecAugment's do)."""
    start, end = heard
    frames = end - start
    for _ in range(round(share * frames / span)):
        at = start + rng.randrange(max(frames - span, 0) + 1)
        tokens[:, at:min(at + span, end)] = PAD_ID


def heard_steps(tokens: np.ndarray, heard: tuple[int, int], features: np.ndarray, stream0_delay: int,
                steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The features of the audio that undelayed frames `tokens` `[N, T]` listen to (`heard`: their
    `[start, end)`; `features` `[end - start, F]`) in the `steps` delayed steps, where stream 0 puts them:
    `(values [steps, F], present [steps])`. The one placement rule of training and decoding
    (`opuslm.infer.decode.prompt_features`). A frame the audio mask padded is not present: a masked
    frame hides its features too."""
    start, end = heard
    if len(features) != end - start:
        raise OpusLMError(f"{len(features)} frames of heard features beside {end - start} heard audio frames")
    values = np.zeros((steps, features.shape[1]), np.float16)
    present = np.zeros(steps, bool)
    at = slice(start + stream0_delay, end + stream0_delay)
    values[at] = features
    present[at] = tokens[0, start:end] != PAD_ID
    values[~present] = 0
    return values, present


def ctc_span(layer: str, spoken: tuple, listened: tuple | None) -> tuple[int, int] | None:
    """The steps `[start, end)` of a segment that the auxiliary CTC scores. At the decoder's output
    (`layer` output): the heard audio's, the trailer included (its states there are real). At the adapter:
    only from its first to its last step with features, since it outputs zero elsewhere, a uniform frame on
    which any token costs what the blank costs, so that a trailer in the span let a short transcript hide
    there while the audio's frames wrote blanks. None where the adapter has no features to be asked of."""
    if layer == "output":
        return spoken[0], spoken[1]
    steps = np.flatnonzero(listened[1]) if listened is not None else []
    return (int(steps[0]), int(steps[-1]) + 1) if len(steps) else None


def require_heard_features(shards, dim: int, where: str) -> None:
    """Refuse shards without the heard features (of dimension `dim`) a model's continuous input path reads."""
    if dim and shards.feature_dim != dim:
        have = f"heard features of dimension {shards.feature_dim}" if shards.feature_dim else "no heard features"
        raise OpusLMError(f"{where} has {have}, and the model reads heard features of dimension {dim} (its continuous "
                          "input path): tokenize it again with `opuslm tokenize --heard-features` (or --model)")


class NoUsableItems(OpusLMError):
    """A source whose split holds nothing its task can use."""


class _Source:
    """One (dataset, task, split) component; knows its usable items and builds example i."""

    def __init__(self, config, path: Path, builder: TemplateBuilder, delays: list[int], data_config,
                 tokenizers: dict[str, str] | None, heard_features: int = 0):
        self.config, self.builder, self.delays, self.data = config, builder, delays, data_config
        self.heard_features = heard_features
        self.skipped: dict[str, int] = {}
        text_file = source_text_file(path, config, f"source {config.name}: dataset {config.dataset}")
        if text_file is not None:
            self.texts = [line.strip() for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            self.shards, self.items = None, list(range(len(self.texts)))
        else:
            self.shards, metas = _open_dataset(str(path.resolve()))
            builder.vocab.require_same(JointVocab.from_tokens(path), f"dataset {path}")
            if tokenizers is not None:  # same sizes are not the same ids: compare what made them
                from opuslm.tokenize.shards import check_identity

                check_identity(self.shards.info["tokenizers"], tokenizers, f"dataset {path}", "the model was trained with")
            require_heard_features(self.shards, heard_features, f"dataset {path}")
            self.items = [i for i, meta in enumerate(metas) if meta["split"] == config.split and self._usable(meta)]
            self.metas = metas
            # prompts come from the same split's items only: a dev utterance never prompts training
            self.prompts = SpeakerPrompts([metas[i]["speaker"] for i in self.items]) \
                if config.task in ("tts", "tts_paced") else None
            self._position = {item: p for p, item in enumerate(self.items)}
        if not self.items:
            raise NoUsableItems(f"source {config.name}: no usable {config.split} items in {path} for task "
                              f"{config.task} (skipped: {self.skipped or 'none'})")

    def labels(self, keys: tuple[str, ...]) -> set[str]:
        """The labels of `keys` that this source's usable items hold."""
        return {value for item in self.items for value in label_values(self.metas[item], keys)}

    def _usable(self, meta: dict) -> bool:
        spec = self.builder.tasks.get(self.config.task)
        try:
            if spec is not None:
                TARGET_WRITERS[spec.target](meta, spec)
            elif self.config.task in ("tts", "text_lm"):  # they read the words; audio_lm does not
                transcript(meta)
            elif self.config.task == "tts_paced":
                spoken_words(meta)
        except TemplateError as error:
            reason = str(error).split(" ", 2)[-1]  # drop "utterance <id>" so reasons group
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
            return False
        return True

    def example(self, item: int, rng: random.Random):
        """Delayed frames `[N, T + max(delays)]` and loss mask of item `item`; for the auxiliary CTC
        loss the delayed steps of the audio it listens to and their transcript (None: nothing heard); and
        for the continuous input path the features of those steps (None: nothing heard, or the path off)."""
        task = self.config.task
        example = None
        if self.shards is None:
            frames = self.builder.build(task, self.texts[item], rng)
        else:
            example = self.shards[item]
            source = example.meta["text"] if task == "text_lm" else example
            prompt = None
            if self.prompts is not None:
                chosen = self.prompts.choose(self._position[item], rng)
                prompt = self.shards[self.items[chosen]] if chosen is not None else None
            frames = self.builder.build(task, source, rng, instruct=self.config.instruct, speaker_prompt=prompt)
        if self.data.audio_mask and frames.heard is not None:
            mask_heard_audio(frames.tokens, frames.heard, self.data.audio_mask, self.data.audio_mask_span, rng)
        tokens = delay(torch.from_numpy(frames.tokens), self.delays, PAD_ID)
        mask = delay(torch.from_numpy(frames.loss_mask(self.data.loss_region)), self.delays, False)
        heard = features = None
        if frames.heard is not None:  # the delay moves codebook k's cells k steps on: keep them in the span
            heard = (frames.heard[0], frames.heard[1] + max(self.delays), frames.transcript)
            if self.heard_features and self.builder.tasks.hears_features(task):
                features = heard_steps(frames.tokens, frames.heard, example.features, self.delays[0], tokens.shape[1])
                if self.data.heard_dropout and rng.random() < self.data.heard_dropout:
                    features = (np.zeros_like(features[0]), np.zeros_like(features[1]))
        return tokens.numpy(), mask.numpy(), heard, features


class PackedLoader:
    """An endless stream of packed micro-batches of a mixture (see the module docstring)."""

    def __init__(self, data_config, datasets: dict[str, str], builder: TemplateBuilder, delays: list[int],
                 rank: int = 0, world_size: int = 1, split: str | None = None, tokenizers: dict[str, str] | None = None,
                 heard_features: int = 0):
        """`tokenizers`: the model's tokenizer identities (`model_identity`); a dataset of token shards
        made with any other is refused. `heard_features`: the feature dimension of the model's continuous
        input path (0: off); batches then carry the features of the audio each example listens to."""
        self.heard_features = heard_features
        self.config, self.rank, self.world_size = data_config, rank, world_size
        if data_config.rows % world_size:
            raise OpusLMError(f"data.rows ({data_config.rows}) must be a multiple of the number of ranks ({world_size})")
        self.sources, self.unusable = [], {}
        for source in data_config.sources:
            if split is not None:
                source = source.model_copy(update={"split": split})
            try:
                self.sources.append(_Source(source, Path(datasets[source.dataset]), builder, delays, data_config, tokenizers,
                                            heard_features))
            except NoUsableItems as error:  # listed in describe(); the rest of the mixture goes on
                self.unusable[source.name] = str(error)
        if not self.sources:
            raise OpusLMError("no source of the mixture has usable items: " + "; ".join(self.unusable.values()))
        weights = np.array([s.config.weight for s in self.sources], dtype=np.float64)
        self.cumulative = np.cumsum(weights / weights.sum())
        self.num_streams = builder.vocab.num_streams
        self.next_k = 0
        self.counters = [0] * len(self.sources)
        self.buffer: list[_Built] = []
        self.too_long: dict[str, int] = {}
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    # ---- the deterministic example stream ----
    def _item(self, source: int, draw: int) -> int:
        items = self.sources[source].items
        epoch, position = divmod(draw, len(items))
        key = (source, epoch)
        if key not in self._permutations:
            self._permutations = {k: v for k, v in self._permutations.items() if k[0] != source}
            self._permutations[key] = np.random.default_rng([self.config.seed, source, epoch]).permutation(len(items))
        return items[int(self._permutations[key][position])]

    def _build(self, key: tuple[int, int, int]):
        k, source, item = key
        return _Built(key, *self.sources[source].example(item, random.Random(f"{self.config.seed}-{k}")))

    def _draw(self):
        k = self.next_k
        source = int(np.searchsorted(self.cumulative, np.random.default_rng([self.config.seed, k]).random(), side="right"))
        source = min(source, len(self.sources) - 1)
        item = self._item(source, self.counters[source])
        self.counters[source] += 1
        self.next_k += 1
        return self._build((k, source, item))

    def _fill(self) -> None:
        held = sum(built.tokens.shape[1] for built in self.buffer)
        while held < self.config.pool * self.config.rows * self.config.row_frames:
            built = self._draw()
            if built.tokens.shape[1] > self.config.row_frames:
                name = self.sources[built.key[1]].config.name
                self.too_long[name] = self.too_long.get(name, 0) + 1
                if sum(self.too_long.values()) > 1000 and not self.buffer:
                    raise OpusLMError(f"every example is longer than data.row_frames={self.config.row_frames}; raise it")
                continue
            self.buffer.append(built)
            held += built.tokens.shape[1]

    # ---- batches ----
    def next_batch(self) -> Batch:
        """The next global micro-batch's rows for this rank."""
        self._fill()
        capacity = self.config.row_frames
        rows: list[list[int]] = [[] for _ in range(self.config.rows)]
        free = [capacity] * self.config.rows
        order = sorted(range(len(self.buffer)), key=lambda i: (-self.buffer[i].tokens.shape[1], self.buffer[i].key[0]))
        placed = set()
        for i in order:
            length = self.buffer[i].tokens.shape[1]
            fits = [r for r in range(len(rows)) if free[r] >= length]
            if fits:
                best = min(fits, key=lambda r: (free[r], r))
                rows[best].append(i)
                free[best] -= length
                placed.add(i)
        batch = self._collate([[self.buffer[i] for i in sorted(row, key=lambda j: self.buffer[j].key[0])] for row in rows])
        self.buffer = [entry for i, entry in enumerate(self.buffer) if i not in placed]
        return batch

    def _collate(self, rows) -> Batch:
        mine = rows[self.rank::self.world_size]
        length, streams = self.config.row_frames, self.num_streams
        frames = torch.full((len(mine), streams, length), PAD_ID, dtype=torch.long)
        loss_mask = torch.zeros((len(mine), streams, length), dtype=torch.bool)
        positions = torch.zeros((len(mine), length), dtype=torch.long)
        documents = torch.full((len(mine), length), -1, dtype=torch.long)
        heard = HeardTranscripts([], [], [], self.config.ctc_weight, self.config.ctc_layer) if self.config.ctc_weight > 0 else None
        features = HeardFeatures(torch.zeros((len(mine), length, self.heard_features)),
                                 torch.zeros((len(mine), length), dtype=torch.bool)) if self.heard_features else None
        examples = real = 0
        for r, row in enumerate(mine):
            at = 0
            for document, (_, tokens, mask, spoken, listened) in enumerate(row):
                size = tokens.shape[1]
                span = ctc_span(heard.layer, spoken, listened) if heard is not None and spoken is not None else None
                if span is not None:
                    heard.rows.append(r)
                    heard.spans.append((at + span[0], at + span[1]))
                    heard.transcripts.append(torch.from_numpy(spoken[2]))
                if features is not None and listened is not None:
                    features.values[r, at:at + size] = torch.from_numpy(listened[0].astype(np.float32))
                    features.present[r, at:at + size] = torch.from_numpy(listened[1])
                frames[r, :, at:at + size] = torch.from_numpy(tokens)
                loss_mask[r, :, at:at + size] = torch.from_numpy(mask)
                positions[r, at:at + size] = torch.arange(size)
                documents[r, at:at + size] = document
                at += size
            examples += len(row)
            real += at
        return Batch(frames, loss_mask, positions, documents, examples, real, heard, features)

    # ---- state ----
    def state(self) -> dict:
        return {"next_k": self.next_k, "counters": list(self.counters),
                "buffer": [list(built.key) for built in self.buffer], "too_long": dict(self.too_long)}

    def load_state(self, state: dict) -> None:
        if len(state["counters"]) != len(self.sources):
            raise OpusLMError(f"the saved data state has {len(state['counters'])} sources but this mixture has "
                              f"{len(self.sources)}; resume with the stage's own config")
        self.next_k, self.counters = state["next_k"], list(state["counters"])
        self.too_long = dict(state["too_long"])
        self.buffer = [self._build(tuple(key)) for key in state["buffer"]]

    def trained_labels(self) -> dict[str, list[str]]:
        """Per understanding task that writes labels: the labels its items hold (what the model is taught
        to write; eval lists the labels outside them as unseen)."""
        found: dict[str, set[str]] = {}
        for source in self.sources:
            spec = source.builder.tasks.get(source.config.task)
            if spec is None or not spec.labels or source.shards is None:
                continue
            found.setdefault(spec.name, set()).update(source.labels(tuple(spec.labels)))
        return {task: sorted(labels) for task, labels in found.items()}

    def describe(self) -> str:
        parts = []
        for s in self.sources:
            skipped = f", skipped {sum(s.skipped.values())} ({'; '.join(f'{n} {r}' for r, n in s.skipped.items())})" \
                if s.skipped else ""
            parts.append(f"{s.config.name}: {s.config.task} x{s.config.weight:g} on {len(s.items)} items{skipped}")
        parts += [f"{name}: LEFT OUT ({reason})" for name, reason in self.unusable.items()]
        return "; ".join(parts)
