"""What a stage trains: LoRA adapters on the backbone, and parameter groups frozen by config (OSUM trains
in stages: the encoder side first, then the LLM through LoRA).

Groups, each a set of rows or tensors of the multi-stream model:

    audio_rows       the input embedding rows of semantic and codec ids (how audio is read: the encoder side)
    text_rows        the input embedding rows of the specials and the text ids
    backbone         the transformer's own weights (layers and norms); with LoRA only its adapters train
    head             the output head (a tied head is the embedding table: freeze its rows instead)
    stream_offsets   the per-stream offsets added before the codebook heads
    heard_adapter    the continuous input path's adapter (a model with `heard_features` only)

A frozen group's rows keep their values exactly: their gradient is zero, and the tables take no weight
decay, so AdamW leaves them alone.
"""

from __future__ import annotations

import torch

from opuslm.errors import OpusLMError

FREEZE_GROUPS = ("audio_rows", "text_rows", "backbone", "head", "stream_offsets", "heard_adapter")

# What `optim.lr_scale` can speed up or slow down: whole tensors, since AdamW's step does not scale with the
# gradient (rows of one table cannot learn at two rates). `embeddings` is the joint table (with a tied head);
# with text_rows frozen it is the audio rows' rate. `lora` is the adapters, `backbone` the rest of it.
LR_GROUPS = ("embeddings", "head", "lora", "backbone", "stream_offsets", "heard_adapter")


def add_stage_lora(model, tune) -> None:
    """The stage's LoRA adapters (`tune.lora`) on `model`, unless it has adapters already (a start folder
    saved with them): what training adds, and what the stage's saved model is rebuilt with."""
    from opuslm.model.lora import add_lora, has_lora

    if tune.lora is not None and not has_lora(model):
        lora = tune.lora
        add_lora(model, lora.rank, lora.alpha, lora.dropout, lora.targets, lora.seed)


def apply_tuning(model, tune) -> None:
    """`tune` (a stage's TuneConfig): add LoRA when asked and not there yet, then freeze the groups named."""
    from opuslm.model.lora import has_lora

    add_stage_lora(model, tune)
    adapted = has_lora(model)
    frozen = set(tune.freeze)
    embeddings = model.backbone.get_input_embeddings().weight
    head = model.backbone.get_output_embeddings().weight
    tied = head is embeddings
    if tied and "head" in frozen and not {"audio_rows", "text_rows"} <= frozen:
        raise OpusLMError("this model's head is tied to its embeddings: freezing `head` would freeze the embedding "
                          "rows too; freeze audio_rows and text_rows instead")
    tables = {id(embeddings), id(head)}
    for name, param in model.backbone.named_parameters():
        if id(param) in tables:
            continue
        param.requires_grad_(".lora_" in name or (not adapted and "backbone" not in frozen))
    model.stream_offsets.requires_grad_("stream_offsets" not in frozen)
    if model.config.heard_features:
        model.heard_adapter.requires_grad_("heard_adapter" not in frozen)
    elif "heard_adapter" in frozen:
        raise OpusLMError("tune.freeze names heard_adapter, but the model has no continuous input path "
                          "(its heard_features is 0)")
    if not tied:
        head.requires_grad_("head" not in frozen)
    _freeze_rows(embeddings, model.vocab, {"audio_rows", "text_rows"} & frozen)


def train_only_heard_adapter(model) -> None:
    """The `heard_ctc` objective's tuning: the continuous input path's adapter trains, nothing else."""
    if not model.config.heard_features:
        raise OpusLMError("objective heard_ctc trains the continuous input path's adapter, but the model has none "
                          "(its heard_features is 0): start from init.heard_features: true")
    model.requires_grad_(False)
    model.heard_adapter.requires_grad_(True)


def _freeze_rows(table: torch.nn.Parameter, vocab, groups: set[str]) -> None:
    if groups == {"audio_rows", "text_rows"}:
        table.requires_grad_(False)
        return
    table.requires_grad_(True)
    if not groups:
        return
    keep = torch.ones(table.shape[0], 1, dtype=table.dtype, device=table.device)
    audio = slice(vocab.modality_range("semantic")[0], vocab.modality_range("codec")[1])
    if "audio_rows" in groups:
        keep[audio] = 0
    else:  # the specials and the text rows: all but the audio ones (and padding rows past the vocabulary)
        keep[:] = 0
        keep[audio] = 1
    table.register_hook(lambda grad: grad * keep)


def lr_groups(model) -> dict[int, str]:
    """The `LR_GROUPS` name of each of the HF multi-stream model's parameters, by `id`."""
    embeddings = model.backbone.get_input_embeddings().weight
    head = model.backbone.get_output_embeddings().weight
    groups = {id(p): ("lora" if ".lora_" in name else "backbone") for name, p in model.backbone.named_parameters()}
    groups[id(head)] = "head"
    groups[id(embeddings)] = "embeddings"  # after head: a tied head is the table
    groups[id(model.stream_offsets)] = "stream_offsets"
    if model.config.heard_features:
        groups.update({id(p): "heard_adapter" for p in model.heard_adapter.parameters()})
    return groups


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
