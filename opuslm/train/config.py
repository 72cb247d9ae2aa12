"""Typed training configuration: YAML maps one-to-one onto these models; an unknown or mistyped key
fails before any work, naming the key and the file.

A *stage* (`stages/pretrain.yaml`, ...) is one training run: its data mixture, steps, optimiser and
LR schedule, and the stage it starts from. A *schedule* lists stages, names the datasets their
sources refer to, and says how the first model is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from opuslm.config_files import Strict, read_yaml, validate
from opuslm.errors import OpusLMError
from opuslm.model.config import HEARD_MIX, STREAM0_SOFTMAX
from opuslm.model.lora import ALL_LINEAR
from opuslm.tasks import GENERATIVE_TASKS, TaskTable, read_tasks
from opuslm.train.tuning import FREEZE_GROUPS, LR_GROUPS


class SourceConfig(Strict):
    """One component of a mixture: a task over a dataset's split, drawn with `weight`."""

    name: str
    # a name from the schedule's `datasets`: a token shard folder; for text_lm also a .txt file or a
    # folder of <split>.txt files
    dataset: str
    task: str
    weight: float = Field(1.0, gt=0)
    split: Literal["train", "dev", "test"] = "train"
    instruct: bool = False  # ASR with an instruction, as OSUM trains it


class DataConfig(Strict):
    sources: list[SourceConfig] = Field(min_length=1)
    row_frames: int = Field(1024, gt=0)  # frames per packed row
    rows: int = Field(8, gt=0)  # rows per micro-batch, over all ranks
    pool: float = Field(2.0, ge=1.0)  # frames held for best-fit packing, in micro-batches
    loss_region: Literal["whole", "target"] = "target"
    # weight of the auxiliary CTC loss on the audio ASR and the understanding tasks listen to (0: off)
    ctc_weight: float = Field(0.0, ge=0)
    # where it asks: "output", the decoder's last hidden states; "adapter", the continuous input path's
    # adapter output, scored by the text rows (with a tied head, the rows the LLM reads its text through):
    # the adapter learns to write the heard words in the LLM's own input space
    ctc_layer: Literal["output", "adapter"] = "output"
    # SpecAugment's time masking on ids: this share of the heard audio's frames become pad (embedding
    # zero) in spans of audio_mask_span frames, in training only; against memorising utterances
    audio_mask: float = Field(0.0, ge=0, lt=1)
    audio_mask_span: int = Field(5, gt=0)
    # the continuous input path only: this share of the examples that listen to audio are trained without
    # its features (modality dropout), so the model keeps learning what the ids carry and the features do
    # not (the voice: Whisper's states are speaker-invariant); in training only
    heard_dropout: float = Field(0.0, ge=0, le=1)
    seed: int = 0


# No AdamW run of a language model peaks above this (OpusLM: 2e-4; the demo: 3e-3); a larger value is a typo
MAX_PEAK_LR = 0.1


class LRConfig(Strict):
    schedule: Literal["cosine", "wsd", "linear_to_zero", "constant"] = "cosine"
    peak: float | Literal["previous"] = 2e-4  # "previous": the LR the previous stage ended at
    warmup: int = Field(0, ge=0)
    floor: float = Field(0.3, ge=0, le=1)  # cosine / wsd: the final LR as a fraction of peak
    decay_fraction: float = Field(0.2, gt=0, le=1)  # wsd: the share of steps spent decaying

    @field_validator("peak")
    @classmethod
    def _positive_peak(cls, peak):
        if peak != "previous" and not 0 < peak <= MAX_PEAK_LR:
            raise ValueError(f"the peak LR must be greater than 0 and at most {MAX_PEAK_LR:g} (or 'previous'), got {peak}")
        return peak


class OptimConfig(Strict):
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0)  # not on embeddings, norms, biases or stream offsets
    eps: float = Field(1e-8, gt=0)
    clip: float = Field(1.0, gt=0)  # the gradient norm's ceiling
    # the peak LR times this for a group (`opuslm.train.tuning.LR_GROUPS`), e.g. new audio parts faster than LoRA
    lr_scale: dict[Literal[LR_GROUPS], Annotated[float, Field(gt=0, le=100)]] = {}


class ValidationConfig(Strict):
    every: int = Field(50, gt=0)
    batches: int = Field(2, gt=0)  # packed batches per task
    split: Literal["train", "dev", "test"] = "dev"


class LoraSettings(Strict):
    """LoRA on the backbone's linear layers (opuslm.model.lora); alpha / rank scales the update."""

    rank: int = Field(8, gt=0)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] | Literal[ALL_LINEAR] = ALL_LINEAR  # module names (q_proj, ...) or every linear layer
    seed: int = 0  # the adapters' initial A matrices


class TuneConfig(Strict):
    """What the stage trains (opuslm.train.tuning): LoRA adapters, and groups kept frozen."""

    lora: LoraSettings | None = None
    freeze: list[Literal[FREEZE_GROUPS]] = []


class StageConfig(Strict):
    name: str
    start_from: str = Field("init", alias="from")  # "init" or an earlier stage's name
    steps: int = Field(gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: LRConfig = LRConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig
    validation: ValidationConfig = ValidationConfig()
    checkpoint_every: int = Field(50, gt=0)
    keep_last: int = Field(2, gt=0)
    log_every: int = Field(1, gt=0)  # TensorBoard scalars and progress figures every N steps; log.jsonl gets every step
    activation_checkpointing: bool = False
    bf16: Literal["auto", "on", "off"] = "auto"  # auto: on when a GPU is present
    parallel: Literal["ddp", "fsdp2", "megatron"] = "ddp"  # under torchrun with more than one process
    tensor: int = Field(1, gt=0)  # Megatron-Core tensor-parallel size (parallel: megatron)
    pipeline: int = Field(1, gt=0)  # Megatron-Core pipeline-parallel size (only 1 is supported so far)
    tune: TuneConfig = TuneConfig()
    # "next_frame": the multi-stream LM loss (plus data.ctc_weight's auxiliary CTC). "heard_ctc": only the
    # continuous input path's adapter trains, by CTC of its output against the transcript over the text
    # rows (data.ctc_layer "adapter"), and no decoder runs: a warm-up, cheap enough for a CPU, after which
    # the adapter writes what it hears in the LLM's own input space and the next stage's decoder only
    # learns to read it
    objective: Literal["next_frame", "heard_ctc"] = "next_frame"
    _file: str = PrivateAttr("")  # where it was read: "<stage file> (with overrides from <schedule>)"

    @model_validator(mode="after")
    def _tuning_on_hf(self):
        if self.parallel == "megatron" and (self.tune.lora is not None or self.tune.freeze or self.optim.lr_scale):
            raise ValueError("tune (LoRA, freezing) and optim.lr_scale run on the HF backend (parallel: ddp or fsdp2), "
                             "not megatron")
        return self

    @model_validator(mode="after")
    def _heard_ctc_alone(self):
        if self.objective == "heard_ctc":
            if self.data.ctc_weight <= 0 or self.data.ctc_layer != "adapter":
                raise ValueError("objective heard_ctc trains the adapter by the auxiliary CTC alone: set data.ctc_weight "
                                 "above 0 and data.ctc_layer: adapter")
            if self.tune.lora is not None or self.parallel == "megatron":
                raise ValueError("objective heard_ctc trains only the adapter, on the HF backend: drop tune.lora "
                                 "(and parallel: megatron)")
        return self

    @model_validator(mode="after")
    def _warmup_within_steps(self):
        if self.lr.warmup > self.steps:
            raise ValueError(f"lr.warmup ({self.lr.warmup} steps) is longer than the stage ({self.steps} steps), so the "
                             "peak LR would never be reached; lower lr.warmup or raise steps")
        return self

    @property
    def file(self) -> str:
        return self._file


class InitConfig(Strict):
    """The model the first stage starts from: a local HF LLM folder, a preset shape, or a trained OpusLM
    model folder (fine-tuning: its vocabulary, streams and tokenizers are kept)."""

    llm: str | None = None
    preset: str | None = None
    model: str | None = None
    delays: list[int] | None = None
    seed: int = 0
    # the new codebook rows' scale at init; 0 starts an audio frame as its semantic row alone (see
    # opuslm.model.embeddings.extend_to_joint_vocab)
    codebook_row_scale: float = Field(1.0, ge=0)
    # stream 0 scored over the whole vocabulary, or over the ids that can follow its input (MultiStreamConfig)
    stream0_softmax: Literal[STREAM0_SOFTMAX] = STREAM0_SOFTMAX[0]
    # the continuous input path (opuslm.model.streams): the heard audio's semantic-encoder features, from
    # token shards made with `opuslm tokenize --heard-features`, added through an adapter
    heard_features: bool = False
    # what that path adds: the adapter's output, or the words it hears as the LLM's own rows (MultiStreamConfig)
    heard_mix: Literal[HEARD_MIX] = HEARD_MIX[0]

    @model_validator(mode="after")
    def _one_start(self):
        from opuslm.model.presets import PRESETS

        if sum(start is not None for start in (self.llm, self.preset, self.model)) != 1:
            raise ValueError("name exactly one of llm (a local HF folder), preset, or model (an OpusLM model folder)")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; presets: {', '.join(PRESETS)}")
        growing = {"delays", "seed", "codebook_row_scale", "stream0_softmax", "heard_features",
                   "heard_mix"} & self.model_fields_set
        if self.model is not None and growing:
            raise ValueError(f"{', '.join(sorted(growing))} shape a new model; a trained model folder keeps its own")
        return self


class StageEntry(Strict):
    file: str
    overrides: dict = {}


class ScheduleConfig(Strict):
    out: str
    datasets: dict[str, str]
    # the dataset whose tokenizers and vocabulary a new model is built with (init from llm or preset)
    tokens: str | None = None
    init: InitConfig
    tasks: str | None = None  # a YAML file declaring understanding tasks (opuslm/tasks.py), beside the schedule
    stages: list[StageEntry] = Field(min_length=1)
    ablations: dict[str, list[SourceConfig]] = {}  # anneal data mixes to compare, by name


def merge(base: dict, overrides: dict) -> dict:
    """`overrides` on top of `base`, nested mappings merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def scaled(stage: dict, steps_scale: float) -> dict:
    """A stage's keys with its steps and its LR warmup multiplied by `steps_scale` (at least one step): a
    short run of the same schedule, its warmup the same share of the stage."""
    if steps_scale == 1 or not isinstance(stage.get("steps"), int):
        return stage
    if not steps_scale > 0:
        raise OpusLMError(f"the steps scale must be greater than 0, got {steps_scale}")
    out = {**stage, "steps": max(1, round(stage["steps"] * steps_scale))}
    lr = out.get("lr")
    if isinstance(lr, dict) and isinstance(lr.get("warmup"), int):
        out["lr"] = {**lr, "warmup": min(round(lr["warmup"] * steps_scale), out["steps"])}
    return out


def load_schedule(path: str | Path, steps_scale: float = 1.0) -> tuple[ScheduleConfig, list[StageConfig]]:
    """The schedule and its stages (files relative to the schedule's folder, overrides applied, steps
    scaled by `steps_scale`), with every value, stage reference and dataset path checked."""
    path = Path(path)
    schedule = validate(ScheduleConfig, read_yaml(path), str(path))
    stages = []
    for entry in schedule.stages:
        file = (path.parent / entry.file) if not Path(entry.file).is_absolute() else Path(entry.file)
        where = f"{file} (with overrides from {path})" if entry.overrides else str(file)
        if steps_scale != 1:
            where += f" (steps scaled by {steps_scale:g})"
        stage = validate(StageConfig, scaled(merge(read_yaml(file), entry.overrides), steps_scale), where)
        stage._file = where
        stages.append(stage)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise OpusLMError(f"{path}: stage names must be unique, got {names}")
    for i, stage in enumerate(stages):
        if stage.start_from != "init" and stage.start_from not in names[:i]:
            raise OpusLMError(f"{stage.file}: stage {stage.name}: from: {stage.start_from!r} is not an earlier stage of "
                              f"{path} (earlier: {', '.join(['init'] + names[:i])}); name one of those, or list "
                              f"{stage.start_from} before {stage.name} in stages")
    readers = dataset_readers(path, schedule, stages)
    if schedule.tokens is None and schedule.init.model is None:
        raise OpusLMError(f"{path}: tokens (the dataset a new model takes its vocabulary from) is required unless "
                          "init names a trained model folder")
    check_datasets(path, schedule, readers)
    if schedule.init.llm is not None and not (Path(schedule.init.llm) / "config.json").is_file():
        raise OpusLMError(f"{path}: init.llm {schedule.init.llm} is not a local HF model folder (no config.json)")
    if schedule.init.model is not None and not (Path(schedule.init.model) / "opuslm.json").is_file():
        raise OpusLMError(f"{path}: init.model {schedule.init.model} is not an OpusLM model folder (no opuslm.json); "
                          "for a text LLM use init.llm")
    if schedule.tasks is not None:
        schedule.tasks = str(path.parent / schedule.tasks if not Path(schedule.tasks).is_absolute() else schedule.tasks)
    check_tasks(path, schedule, readers)
    return schedule, stages


def check_datasets(path: Path, schedule: ScheduleConfig, readers: list[tuple[str, SourceConfig]]) -> None:
    """Each reader's dataset is named in the schedule, exists, and holds what its task reads."""
    from opuslm.batch_stream import source_text_file

    for where, source in readers:
        if source.dataset not in schedule.datasets:
            raise OpusLMError(f"{where}: dataset {source.dataset!r} is not named under datasets in {path} "
                              f"(datasets: {', '.join(schedule.datasets)})")
        source_text_file(Path(schedule.datasets[source.dataset]), source,
                         f"{where}: datasets.{source.dataset} in {path}")


def check_tasks(path: Path, schedule: ScheduleConfig, readers: list[tuple[str, SourceConfig]]) -> None:
    """Each reader's task is built in, or declared by the start model or the schedule's tasks file."""
    tasks = schedule_tasks(schedule)
    for where, source in readers:
        if source.task not in GENERATIVE_TASKS and source.task not in tasks:
            raise OpusLMError(f"{where}: task: unknown task {source.task!r}; tasks: {', '.join(GENERATIVE_TASKS)}, "
                              f"{', '.join(tasks.names())}" + ("" if schedule.tasks else
                                                              f" (declare your own with `tasks: FILE` in {path})"))


class MixesConfig(Strict):
    """A file of data mixes to ablate (`opuslm stages ablate --mixes FILE`), as a schedule's `ablations`."""

    ablations: dict[str, list[SourceConfig]] = Field(min_length=1)


def with_mixes(path: Path, schedule: ScheduleConfig, mixes_file: str | Path) -> ScheduleConfig:
    """The schedule with the mixes of `mixes_file` as its ablations, each source's dataset and task
    checked as loading checks the schedule's own."""
    mixes = validate(MixesConfig, read_yaml(mixes_file), str(mixes_file)).ablations
    readers = [(f"{mixes_file}: ablations.{mix}, source {source.name}", source)
               for mix, sources in mixes.items() for source in sources]
    check_datasets(path, schedule, readers)
    check_tasks(path, schedule, readers)
    return schedule.model_copy(update={"ablations": mixes})


def dataset_readers(path: Path, schedule: ScheduleConfig, stages: list[StageConfig]) -> list[tuple[str, SourceConfig]]:
    """Everything that reads a dataset, with where it is configured: the stages' sources, the ablations'
    mixes, and the schedule's `tokens` (the dataset a new model takes its vocabulary from)."""
    readers = [(f"{stage.file}: stage {stage.name}, data.sources {source.name}", source)
               for stage in stages for source in stage.data.sources]
    readers += [(f"{path}: ablations.{mix}, source {source.name}", source) for mix, sources in schedule.ablations.items()
                for source in sources]
    if schedule.tokens is not None:
        readers.append((f"{path}: tokens", SourceConfig(name="tokens", dataset=schedule.tokens, task="asr")))
    return readers


def schedule_tasks(schedule: ScheduleConfig) -> TaskTable:
    """The tasks a schedule's stages may train: the built-ins, the start model's declared ones, and the
    schedule's own `tasks` file."""
    table = TaskTable.of_model(schedule.init.model) if schedule.init.model is not None else TaskTable()
    return table.merged(TaskTable(read_tasks(schedule.tasks))) if schedule.tasks is not None else table
