"""The batch streams a stage reads: its training stream, and a fixed validation set per source.

Both are `opuslm.batch_stream.PackedLoader`s over the model's vocabulary, text tokenizer and delays,
refusing any dataset made with other tokenizers than the model's (`identity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opuslm.batch_stream import Batch, PackedLoader, text_dataset_file
from opuslm.errors import OpusLMError
from opuslm.templates import TemplateBuilder
from opuslm.train.config import DataConfig, StageConfig


@dataclass
class StageData:
    train: PackedLoader
    validation: dict[str, list[Batch]]  # source name -> its batches, the same at every validation
    notes: list[str]  # the sources that have no validation split, and why


def frame_rate_of(datasets: dict[str, str], sources) -> float:
    """The codec frame rate of the first speech dataset the sources read."""
    from opuslm.tokenize.shards import TokenShards

    for source in sources:
        path = Path(datasets[source.dataset])
        if text_dataset_file(path, source.split) is None:
            return float(TokenShards(path).info["frame_rate"])
    return 25.0  # text-only mixtures never crop a speaker prompt


def stage_data(stage: StageConfig, datasets: dict[str, str], model, text_tokenizer, identity: dict,
               rank: int, ranks: int, validation_sources=None, tasks=None) -> StageData:
    """`rank` of `ranks`: which rows of each global batch this process reads. `validation_sources`:
    the sources to validate on, by default the stage's own (an ablation validates every mix on one set).
    `tasks`: the TaskTable the sources' understanding tasks come from (default: the built-ins)."""
    builder = TemplateBuilder.for_model(model.vocab, text_tokenizer, model.delays, frame_rate_of(datasets, stage.data.sources),
                                        tasks=tasks)
    heard = model.config.heard_features
    train = PackedLoader(stage.data, datasets, builder, model.delays, rank, ranks, tokenizers=identity, heard_features=heard)
    validation, notes = {}, []
    asks = stage.objective == "heard_ctc"  # its only loss; a next-frame stage validates on that loss alone
    for source in validation_sources or stage.data.sources:
        config = DataConfig(sources=[source], row_frames=stage.data.row_frames, rows=stage.data.rows,
                            loss_region=stage.data.loss_region, seed=stage.data.seed,
                            ctc_weight=stage.data.ctc_weight if asks else 0.0, ctc_layer=stage.data.ctc_layer)
        try:
            loader = PackedLoader(config, datasets, builder, model.delays, rank, ranks, split=stage.validation.split,
                                  tokenizers=identity, heard_features=heard)
        except OpusLMError as error:
            notes.append(f"{source.name}: no validation ({error})")
            continue
        validation[source.name] = [loader.next_batch() for _ in range(stage.validation.batches)]
    return StageData(train, validation, notes)
