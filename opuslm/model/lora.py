"""LoRA adapters on the backbone's linear layers, through peft.

`add_lora` injects peft's LoRA layers into the HF backbone in place (`peft.inject_adapter_in_model`), so
the model keeps its class and every backend hook (`get_decoder`, the joint head) works unchanged; the
joint embedding rows, the head and the stream offsets are not adapted (the trainer's freezing groups
decide whether they train). peft marks every non-adapter parameter of the backbone frozen; a model with
adapters trains its backbone only through them (`merge_lora` folds them in, after which a stage can train
the merged weights in full).

A model folder keeps the base weights under their own names (what `AutoModelForCausalLM` loads) and the
adapters in `adapter/` as peft writes them (`adapter_config.json`, `adapter_model.safetensors`), so the
adapters can be shared alone; `OpusLM.from_pretrained` loads both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from opuslm.json_files import write_json

ADAPTER_FOLDER = "adapter"
ALL_LINEAR = "all-linear"  # peft's name for every linear layer but the output head


def lora_layers(backbone: torch.nn.Module) -> dict[str, torch.nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in backbone.named_modules() if isinstance(module, LoraLayer)}


def has_lora(model) -> bool:
    return bool(lora_layers(model.backbone))


def add_lora(model, rank: int, alpha: float, dropout: float = 0.0, targets: list[str] | str = ALL_LINEAR,
             seed: int = 0) -> None:
    """Inject LoRA into `model.backbone`'s `targets` (module names, or all linear layers). The adapters'
    random A matrices come from `seed` alone, so a resumed run rebuilds the same model before loading."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model.backbone)
    model.backbone.opuslm_lora_config = config


def base_state(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights without adapters, under the names a plain HF model has."""
    return {name.replace(".base_layer.", "."): value for name, value in backbone.state_dict().items()
            if ".lora_" not in name}


def save_adapter(model, folder: Path) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    target = Path(folder) / ADAPTER_FOLDER
    config = model.backbone.opuslm_lora_config
    config.save_pretrained(str(target))
    # peft writes its set-valued fields (target_modules) in set order, which changes from run to run
    written = json.loads((target / "adapter_config.json").read_text())
    written.update({key: sorted(value) for key, value in config.to_dict().items() if isinstance(value, set)})
    write_json(target / "adapter_config.json", written, indent=2)
    state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model.backbone).items()}
    save_file(state, str(target / "adapter_model.safetensors"))


def load_adapter(model, folder: Path) -> None:
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    source = Path(folder) / ADAPTER_FOLDER
    config = LoraConfig.from_pretrained(str(source))
    inject_adapter_in_model(config, model.backbone)
    result = set_peft_model_state_dict(model.backbone, load_file(str(source / "adapter_model.safetensors")))
    missing = [k for k in result.missing_keys if ".lora_" in k]
    if missing or result.unexpected_keys:
        from opuslm.errors import OpusLMError

        raise OpusLMError(f"{source} does not fit the model: missing {missing[:3]}, unexpected "
                          f"{list(result.unexpected_keys)[:3]}; the adapter belongs to another model")
    model.backbone.opuslm_lora_config = config


def merge_lora(model) -> int:
    """Fold every adapter into its base layer (peft's own `merge`) and put the plain layer back; returns
    how many layers were merged."""
    layers = lora_layers(model.backbone)
    for name, layer in layers.items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.backbone.get_submodule(parent_name) if parent_name else model.backbone
        setattr(parent, child, layer.get_base_layer())
    if hasattr(model.backbone, "opuslm_lora_config"):
        del model.backbone.opuslm_lora_config
    for param in model.backbone.parameters():  # peft froze them when it injected the adapters
        param.requires_grad_(True)
    return len(layers)
