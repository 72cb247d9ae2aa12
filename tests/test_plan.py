"""`opuslm plan` on the shipped configs, against figures derived by hand."""

from pathlib import Path

import pytest
import torch

from opuslm.plan import load_plan_config, plan

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_smollm2_1p7b_with_5000_semantic_and_dac_8x1024():
    result = plan(load_plan_config(Path(__file__).parent.parent / "configs" / "smollm2-1.7b.yaml"))
    assert result["vocab"].size == 256 + 5000 + 8 * 1024 + 49152 == 62600
    hidden, inner, layers = 2048, 8192, 24
    per_layer = 4 * hidden * hidden + 3 * hidden * inner + 2 * hidden  # q k v o (32 kv heads), SwiGLU, 2 RMSNorms
    assert result["params"]["backbone"] == 49152 * hidden + layers * per_layer + hidden  # + final norm, tied head
    assert result["params"]["new_embedding_rows"] == (62600 - 49152) * hidden and result["params"]["new_head_rows"] == 0
    assert result["params"]["stream_offsets"] == 8 * hidden
    assert result["frames_per_step"] == 8 * 8192
    flops_per_frame = 6 * (result["params"]["backbone_non_embedding"] + (62600 + 8 * 1024) * hidden) + 6 * layers * hidden * 8192
    assert result["flops_per_step"] == flops_per_frame * 8 * 8192


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_plans(config):
    result = plan(load_plan_config(config))
    vocab = result["vocab"]
    assert vocab.size == 256 + vocab.semantic_size + vocab.num_codebooks * vocab.codebook_size + vocab.text_size
    assert result["params"]["total"] > result["params"]["backbone"] and result["memory_gib"]["total"] > 0
    assert result["fits"]


def test_a_two_layer_slice_of_the_1p7b_config_trains_a_step_on_cpu():
    """The config composes with the model, the loss and the optimiser: one step at full width."""
    from transformers import AutoConfig

    from opuslm.model.multistream import OpusLM
    from opuslm.train.trainer import parameter_groups

    config = load_plan_config(Path(__file__).parent.parent / "configs" / "smollm2-1.7b.yaml")
    shape = {**config.backbone.shape, "num_hidden_layers": 2}
    result = plan(config)
    model = OpusLM.from_llm(AutoConfig.for_model(config.backbone.family, **shape), result["vocab"])
    vocab = model.vocab
    frames = torch.zeros(1, vocab.num_streams, 24, dtype=torch.long)
    frames[0, 0, :12] = vocab.semantic_offset + torch.arange(12)
    for k in range(vocab.num_codebooks):
        frames[0, k + 1, k: 12 + k] = vocab.codebook_offset(k) + torch.arange(12)
    frames[0, 0, 12:] = vocab.text_offset + torch.arange(12)
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-4)
    before = model.stream_offsets.detach().clone()
    loss = model.loss(frames, frames != 0)
    loss.loss.backward()
    optimizer.step()
    assert torch.isfinite(loss.loss) and set(loss.per_modality) == {"semantic", "codec", "text"}
    assert not torch.equal(before, model.stream_offsets.detach())
