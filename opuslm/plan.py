"""`opuslm plan CONFIG`: what a real-scale run will cost, from config files alone (no weights).

The backbone is built on the meta device, so a 7B model is counted in seconds on a laptop. Printed:
the joint-vocabulary layout, parameter counts (backbone, new embedding rows, new head rows, stream
offsets), memory per GPU for the chosen parallelism, frames per step, and FLOPs per step, from
which MFU follows once a step has been timed:

    MFU = flops_per_step / (step_seconds x gpus x peak_flops_per_gpu)

Memory model (stated, not measured): mixed precision keeps fp32 parameters (4 bytes), fp32 gradients
(4) and AdamW's two fp32 moments (8): 16 bytes a parameter, divided by the data-parallel size under
FSDP2 (fully sharded) and by the model-parallel size under Megatron (tensor x pipeline, with the
optimiser state also sharded over data parallel: Megatron's distributed optimiser). Activations per
decoder layer per frame: 34 x hidden bytes in bf16 (Korthikanti et al., with FlashAttention), or 2 x
hidden with full activation checkpointing plus one layer's 34 x hidden while it is recomputed; plus one
loss chunk of fp32 logits.
FLOPs per frame, forward and backward: 6 x (non-embedding parameters + scored head rows x hidden),
plus 6 x layers x hidden x row_frames for causal attention (half the usual 12: the upper triangle is
skipped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from opuslm.errors import OpusLMError
from opuslm.config_files import Strict, read_yaml, validate
from opuslm.vocab import JointVocab

PEAK_BF16_FLOPS = {"h100": 989e12, "h200": 989e12, "a100": 312e12}


class BackboneConfig(Strict):
    """A local HF folder (only its config.json is read) or an architecture with its shape."""

    llm: str | None = None
    family: str | None = None  # "llama", "qwen2", "olmo2", ...
    shape: dict = {}
    text_vocab: int | None = None  # len(tokenizer), when it differs from the embedding rows (Qwen pads)


class CodecConfig(Strict):
    name: str
    num_codebooks: int = Field(gt=0)
    codebook_size: int = Field(gt=0)
    frame_rate: float = Field(gt=0)


class TrainPlan(Strict):
    gpus: int = Field(8, gt=0)
    gpu: Literal["h100", "h200", "a100"] = "h100"
    gpu_memory_gib: float = 80.0
    parallel: Literal["ddp", "fsdp2", "megatron"] = "fsdp2"
    tensor: int = Field(1, gt=0)
    pipeline: int = Field(1, gt=0)
    row_frames: int = Field(8192, gt=0)
    rows_per_gpu: int = Field(1, gt=0)
    grad_accum: int = Field(1, gt=0)
    activation_checkpointing: bool = True
    loss_chunk: int = 4096


class PlanConfig(Strict):
    name: str
    backbone: BackboneConfig
    semantic_clusters: int = Field(gt=0)
    semantic_model: str = ""  # what the semantic ids come from, for the record
    codec: CodecConfig
    delays: list[int] | None = None
    stages: list[str] = []  # stage files this setup is trained with (relative to the config)
    train: TrainPlan = TrainPlan()


def backbone_config(backbone: BackboneConfig):
    from transformers import AutoConfig

    if backbone.llm:
        folder = Path(backbone.llm)
        if not (folder / "config.json").is_file():
            raise OpusLMError(f"{folder} has no config.json (give a local HF model folder)")
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    if not backbone.family:
        raise OpusLMError("backbone needs `llm` (a local folder) or `family` with its `shape`")
    return AutoConfig.for_model(backbone.family, **backbone.shape)


def plan(config: PlanConfig) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    hf = backbone_config(config.backbone)
    text_size = config.backbone.text_vocab or hf.vocab_size
    vocab = JointVocab(config.semantic_clusters, config.codec.num_codebooks, config.codec.codebook_size, text_size)
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(hf)
    hidden, layers = hf.hidden_size, hf.num_hidden_layers
    tied = bool(getattr(hf, "tie_word_embeddings", False))
    backbone_params = sum(p.numel() for p in llm.parameters())
    embedding_rows = llm.get_input_embeddings().weight.shape[0]
    non_embedding = backbone_params - embedding_rows * hidden * (1 if tied else 2)
    new_rows = vocab.size - embedding_rows
    params = {
        "backbone": backbone_params,
        "backbone_non_embedding": non_embedding,
        "new_embedding_rows": new_rows * hidden,
        "new_head_rows": 0 if tied else new_rows * hidden,
        "stream_offsets": (vocab.num_streams - 1) * hidden,
    }
    params["total"] = params["backbone"] + params["new_embedding_rows"] + params["new_head_rows"] + params["stream_offsets"]

    t = config.train
    model_parallel = t.tensor * t.pipeline if t.parallel == "megatron" else 1
    if t.gpus % model_parallel:
        raise OpusLMError(f"{t.gpus} GPUs do not divide into tensor {t.tensor} x pipeline {t.pipeline}")
    data_parallel = t.gpus // model_parallel
    if t.parallel == "ddp":
        state = 16 * params["total"]
    elif t.parallel == "fsdp2":
        state = 16 * params["total"] / t.gpus
    else:  # parameters and gradients split by model parallelism, optimiser moments also by data parallelism
        state = 8 * params["total"] / model_parallel + 8 * params["total"] / (model_parallel * data_parallel)
    frames_per_gpu = t.row_frames * t.rows_per_gpu / (t.tensor if t.parallel == "megatron" else 1)
    layers_here = layers / (t.pipeline if t.parallel == "megatron" else 1)
    if t.activation_checkpointing:  # each layer's input, plus one layer's full activations while recomputing
        activations = 2 * hidden * frames_per_gpu * layers_here + 34 * hidden * frames_per_gpu
    else:
        activations = 34 * hidden * frames_per_gpu * layers_here
    logits = 4 * t.loss_chunk * vocab.size
    frames_per_step = data_parallel * t.rows_per_gpu * t.row_frames * t.grad_accum
    head_rows = vocab.size + vocab.num_codebooks * vocab.codebook_size  # stream 0 full, streams k their slice
    flops_per_frame = 6 * (non_embedding + head_rows * hidden) + 6 * layers * hidden * t.row_frames
    gib = 1024 ** 3
    return {
        "name": config.name, "vocab": vocab, "params": params, "tied": tied, "hidden": hidden, "layers": layers,
        "embedding_rows": embedding_rows,
        "memory_gib": {"weights_grads_optimizer": state / gib, "activations": activations / gib,
                       "loss_chunk_logits": logits / gib, "total": (state + activations + logits) / gib},
        "fits": (state + activations + logits) / gib <= t.gpu_memory_gib * 0.9,
        "data_parallel": data_parallel, "frames_per_step": frames_per_step,
        "seconds_of_audio_per_step": frames_per_step / config.codec.frame_rate,
        "flops_per_step": flops_per_frame * frames_per_step,
        "step_seconds_at_40pct_mfu": flops_per_frame * frames_per_step / (0.4 * t.gpus * PEAK_BF16_FLOPS[t.gpu]),
    }


def load_plan_config(path: str | Path) -> PlanConfig:
    data = read_yaml(path)
    if {"steps", "data"} <= set(data) or {"stages", "datasets"} <= set(data):
        kind = "a stage file" if "steps" in data else "a schedule"
        raise OpusLMError(f"{path} is {kind}, which `opuslm stages` runs; `opuslm plan` takes a plan config such as "
                          "configs/smollm2-135m.yaml")
    return validate(PlanConfig, data, str(path))


def describe(result: dict, config: PlanConfig) -> str:
    vocab: JointVocab = result["vocab"]
    p, m, t = result["params"], result["memory_gib"], config.train
    lines = [
        f"{result['name']}",
        f"  joint vocabulary {vocab.hash}: {vocab.size:,} ids = 256 specials + {vocab.semantic_size:,} semantic "
        f"+ {vocab.num_codebooks} x {vocab.codebook_size:,} codes + {vocab.text_size:,} text; {vocab.num_streams} streams "
        f"at {config.codec.frame_rate:g} Hz ({config.codec.name})",
        f"  backbone {p['backbone']:,} parameters ({p['backbone_non_embedding']:,} outside the embeddings; "
        f"{result['embedding_rows']:,} embedding rows, {'tied' if result['tied'] else 'untied'} head)",
        f"  added: embedding rows {p['new_embedding_rows']:,}, head rows {p['new_head_rows']:,}, stream offsets "
        f"{p['stream_offsets']:,}; total {p['total']:,}",
        f"  {t.gpus} x {t.gpu} ({t.parallel}" + (f", tensor {t.tensor} x pipeline {t.pipeline}" if t.parallel == "megatron" else "")
        + f", data parallel {result['data_parallel']}), {t.rows_per_gpu} x {t.row_frames} frames per GPU, accumulation {t.grad_accum}",
        f"  memory per GPU: weights+grads+AdamW {m['weights_grads_optimizer']:.1f} GiB, activations {m['activations']:.1f} GiB"
        f"{' (checkpointed)' if t.activation_checkpointing else ''}, loss chunk {m['loss_chunk_logits']:.2f} GiB; total "
        f"{m['total']:.1f} of {t.gpu_memory_gib:g} GiB{'' if result['fits'] else '  -> DOES NOT FIT'}",
        f"  per step: {result['frames_per_step']:,} frames ({result['seconds_of_audio_per_step'] / 3600:.2f} h of audio), "
        f"{result['flops_per_step']:.3e} FLOPs; {result['step_seconds_at_40pct_mfu']:.2f} s at 40% MFU",
        f"  assumes: fp32 weights and gradients with AdamW's two fp32 moments (16 bytes a parameter), bf16 "
        f"activations (34 x hidden bytes a frame per layer, 2 x hidden checkpointed), the {t.gpu}'s dense bf16 peak "
        f"of {PEAK_BF16_FLOPS[t.gpu] / 1e12:g} TFLOP/s; not counted: FSDP/Megatron gather and communication "
        "buffers, the CUDA context, fragmentation (leave 10-20% free)",
    ]
    return "\n".join(lines)
