"""Every check a schedule must pass before `stages run` builds anything, made without building a model.

`stages check` and `stages run` (and `stages ablate`) call `preflight` on the loaded schedule, so a
schedule that `check` passes does not fail later for a reason `check` could have seen, and both say
it in the same words. On top of what loading already checks (keys, values, paths, tasks, stage
order) it reads:

    tokenizer identities   every token-shard dataset any source reads, against the tokenizers the
                           model is built with (`tokens`' shards, or `init.model`'s tokenizers.json)
    heard features         every such dataset holds the features the model's continuous input path
                           reads (`init.heard_features`, or `init.model`'s), of its dimension; a
                           stage's `data.heard_dropout` needs that path
    delays                 `init.delays` against the number of streams of that vocabulary
    LoRA targets           each stage's `tune.lora.targets` against the backbone's module names (the
                           backbone is built on the meta device: no weights are read)
    positions              `data.row_frames` against the backbone's `max_position_embeddings`
    earlier runs           a stage already finished or checkpointed in `out` under another definition

Messages name the key and the file it is set in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from opuslm.errors import OpusLMError
from opuslm.train.config import ScheduleConfig, StageConfig, dataset_readers

# What a stage's definition is, for a resume or a reuse: everything but where and how often it reports,
# and how it is laid out on the hardware (a checkpoint loads under any of them, bit for bit)
NOT_DEFINITION = {"checkpoint_every", "keep_last", "log_every", "validation", "activation_checkpointing", "parallel"}


@dataclass
class Backbone:
    """What the checks read of the model a schedule builds."""

    identity: dict[str, str]  # tokenizer name -> content hash
    identity_from: str  # where those came from, for messages
    num_streams: int
    module_names: list[str]
    linear_names: list[str]  # the short names (q_proj, ...) of its linear layers, for messages
    position_limit: int | None
    config_from: str
    heard_features: int = 0  # the feature dimension of its continuous input path (0: none)


def definition(stage: StageConfig) -> dict:
    """The parts of a stage that decide what it trains (see NOT_DEFINITION)."""
    return stage.model_dump(by_alias=True, exclude=NOT_DEFINITION, mode="json")


def changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every dotted key whose value differs between two definitions."""
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += changes(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return found


def require_same_definition(stage: StageConfig, run_dir: Path, peak_lr: float | None) -> None:
    """Refuse to reuse a finished run, or resume a checkpoint, of `run_dir` that another definition of
    `stage` made (its steps, LR, data or tuning differ); `peak_lr` None: not known yet, not compared."""
    from opuslm.train.checkpoint import latest

    run_dir = Path(run_dir)
    summary, newest = run_dir / "summary.json", latest(run_dir / "checkpoints")
    if summary.is_file():
        recorded, what = json.loads(summary.read_text()), f"the finished run in {run_dir}"
    elif newest is not None:
        recorded, what = json.loads((newest / "trainer.json").read_text()), f"checkpoint {newest}"
    else:
        return
    old = recorded.get("definition")
    if old is None:  # written before definitions were recorded: a checkpoint has the whole stage
        old = {k: v for k, v in recorded.get("stage", {}).items() if k not in NOT_DEFINITION} or None
    if old is None:
        return
    found = changes(old, definition(stage))
    if peak_lr is not None and recorded.get("peak_lr") not in (None, peak_lr):
        found.append(f"peak LR: {recorded['peak_lr']} -> {peak_lr}")
    if found:
        raise OpusLMError(f"{stage.file}: stage {stage.name}: {what} was made by another definition of the stage "
                          f"({'; '.join(found)}); put the stage back as it was to "
                          f"{'reuse' if summary.is_file() else 'resume'} it, or use a new out folder "
                          f"(or delete {run_dir}) to train it anew")


def read_backbone(path: Path, schedule: ScheduleConfig) -> Backbone:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from opuslm.model.multistream import backbone_positions, model_identity
    from opuslm.tokenize.shards import TokenShards
    from opuslm.vocab import JointVocab

    from opuslm.model.multistream import reads_heard_features

    init = schedule.init
    heard = 0
    if init.model is not None:
        heard = reads_heard_features(init.model)
        identity, identity_from = model_identity(init.model), f"init.model {init.model}"
        num_streams = JointVocab.load(Path(init.model) / "vocab.json").num_streams
        config, config_from = AutoConfig.from_pretrained(init.model, local_files_only=True), f"{init.model}/config.json"
    else:
        tokens = Path(schedule.datasets[schedule.tokens])
        shards = TokenShards(tokens)
        identity = {name: recorded["hash"] for name, recorded in shards.info["tokenizers"].items()}
        identity_from = f"tokens: {schedule.tokens} ({tokens})"
        if init.heard_features:
            heard = shards.feature_dim
            if not heard:
                raise OpusLMError(f"{path}: init.heard_features: datasets.{schedule.tokens} ({tokens}) has no heard "
                                  "features to size the continuous input path by: tokenize it with "
                                  "`opuslm tokenize --heard-features`, or drop init.heard_features")
        num_streams = JointVocab.from_tokens(tokens).num_streams
        if init.llm is not None:
            config, config_from = AutoConfig.from_pretrained(init.llm, local_files_only=True), f"{init.llm}/config.json"
        else:
            from opuslm.model.presets import preset_config
            from opuslm.tokenize.text import load_text_tokenizer

            config = preset_config(init.preset, load_text_tokenizer(shards.tokenizer_path("text")))
            config_from = f"preset {init.preset}"
    with torch.device("meta"):  # shapes and names only
        modules = dict(AutoModelForCausalLM.from_config(config).named_modules())
    linear = sorted({name.rpartition(".")[2] for name, m in modules.items() if isinstance(m, torch.nn.Linear)})
    return Backbone(identity, identity_from, num_streams, list(modules), linear, backbone_positions(config), config_from,
                    heard)


def preflight(path: str | Path, schedule: ScheduleConfig, stages: list[StageConfig]) -> Backbone:
    """Every check of the module docstring; raises OpusLMError naming the key and the file."""
    from opuslm.batch_stream import require_heard_features, text_dataset_file
    from opuslm.interleave import check_delays
    from opuslm.tokenize.shards import TokenShards, check_identity

    path = Path(path)
    backbone = read_backbone(path, schedule)
    for where, source in dataset_readers(path, schedule, stages):
        folder = Path(schedule.datasets[source.dataset])
        if text_dataset_file(folder, source.split) is None:
            shards = TokenShards(folder)
            named = f"{where}: datasets.{source.dataset} in {path} ({folder})"
            check_identity(shards.info["tokenizers"], backbone.identity, named,
                           f"the model is built with ({backbone.identity_from})")
            require_heard_features(shards, backbone.heard_features, named)
    if schedule.init.delays is not None:
        try:
            check_delays(schedule.init.delays, backbone.num_streams)
        except ValueError as error:
            raise OpusLMError(f"{path}: init.delays: {error}; give {backbone.num_streams} non-negative, non-decreasing "
                              f"delays, one per stream (stream 0, then {backbone.num_streams - 1} codebooks)") from None
    for stage in stages:
        lora = stage.tune.lora
        if lora is not None and isinstance(lora.targets, list):
            missing = [t for t in lora.targets if not any(n == t or n.endswith("." + t) for n in backbone.module_names)]
            if missing:
                raise OpusLMError(f"{stage.file}: stage {stage.name}: tune.lora.targets: no module named "
                                  f"{', '.join(missing)} in the backbone ({backbone.config_from}); its linear layers: "
                                  f"{', '.join(backbone.linear_names)}, or all-linear")
        if stage.data.heard_dropout and not backbone.heard_features:
            raise OpusLMError(f"{stage.file}: stage {stage.name}: data.heard_dropout ({stage.data.heard_dropout}) drops "
                              "heard features, and the model has no continuous input path: set init.heard_features, "
                              "or drop data.heard_dropout")
        if stage.data.ctc_layer == "adapter" and stage.data.ctc_weight and not backbone.heard_features:
            raise OpusLMError(f"{stage.file}: stage {stage.name}: data.ctc_layer adapter asks the continuous input path's "
                              "adapter for the transcript, and the model has none: set init.heard_features, or use "
                              "data.ctc_layer: output")
        if backbone.position_limit is not None and stage.data.row_frames > backbone.position_limit:
            raise OpusLMError(f"{stage.file}: stage {stage.name}: data.row_frames ({stage.data.row_frames}) is more than "
                              f"the backbone's {backbone.position_limit} positions (max_position_embeddings of "
                              f"{backbone.config_from}); lower data.row_frames to at most {backbone.position_limit}")
    out = Path(schedule.out)
    for stage in stages:
        require_same_definition(stage, out / stage.name, known_peak_lr(stage, out))
    return backbone


def known_peak_lr(stage: StageConfig, out: Path) -> float | None:
    """The stage's peak LR, or None while it is 'previous' and the previous stage has not finished."""
    if stage.lr.peak != "previous":
        return float(stage.lr.peak)
    summary = Path(out) / stage.start_from / "summary.json"
    return json.loads(summary.read_text())["final_lr"] if summary.is_file() else None
