"""The Megatron-Core backend on CPU (gloo): the same outputs as the HF backbone for the same weights,
exact HF <-> Megatron conversion with tensor-parallel splitting, tensor parallel 2 training like
tensor parallel 1 (and like the HF backend), and a distributed checkpoint that resumes exactly."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from opuslm.backends.megatron.convert import BackboneShape, hf_to_megatron, megatron_to_hf
from opuslm.errors import OpusLMError
from opuslm.model.multistream import OpusLM
from test_model import VOCAB, random_batch, tiny_config
from test_training import final_weights, loss_log, run_cli, write_schedule

ARCHS = [("llama", True), ("llama", False), ("qwen2", False)]


@pytest.fixture(scope="module")
def parallel():
    from opuslm.backends.megatron.parallel import init_model_parallel

    return init_model_parallel(tensor=1)


def hf_model(arch, tie, seed=0):
    torch.manual_seed(seed)
    model = OpusLM.from_llm(tiny_config(arch, tie, VOCAB.text_size), VOCAB, seed=seed)
    with torch.no_grad():  # make every part matter: nonzero offsets and (Qwen2) biases
        model.stream_offsets.normal_()
        for name, param in model.backbone.named_parameters():
            if name.endswith(("bias", "norm.weight", "layernorm.weight")):
                param.normal_(1.0 if "norm" in name else 0.0, 0.5)
    return model.eval()


@pytest.mark.parametrize("arch, tie", ARCHS)
def test_megatron_logits_equal_the_hf_backbones(parallel, arch, tie):
    """fp32, same weights: every stream's logits agree within 1e-5 (packed rows and restarting
    position ids included), and so does the loss."""
    from opuslm.backends.megatron.model import MegatronOpusLM

    hf = hf_model(arch, tie)
    megatron = MegatronOpusLM.from_opuslm(hf, parallel).eval()
    frames, mask = random_batch(0)
    steps, cut = frames.shape[-1], 8
    document_ids = torch.tensor([[0] * cut + [1] * (steps - cut), [0] * steps])
    position_ids = torch.tensor([list(range(cut)) + list(range(steps - cut)), list(range(steps))])
    with torch.no_grad():
        for kwargs in ({}, {"document_ids": document_ids, "position_ids": position_ids}):
            a, b = hf.hidden_states(frames, **kwargs), megatron.hidden_states(frames, **kwargs)
            for n in range(VOCAB.num_streams):
                torch.testing.assert_close(megatron.stream_logits(b, n), hf.stream_logits(a, n), atol=1e-5, rtol=0)
            torch.testing.assert_close(megatron.codebook_logits(b), hf.codebook_logits(a), atol=1e-5, rtol=0)
        torch.testing.assert_close(megatron.loss(frames, mask).loss, hf.loss(frames, mask).loss, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch, tie", ARCHS)
@pytest.mark.parametrize("tensor", [1, 2])
def test_hf_to_megatron_to_hf_is_exact(arch, tie, tensor):
    hf = hf_model(arch, tie)
    state = hf.backbone.state_dict()
    shape = BackboneShape.of(hf.backbone.config)
    shards = hf_to_megatron(state, shape, tensor)
    assert shards[0]["embedding.word_embeddings.weight"].shape[0] * tensor == shape.padded_vocab(tensor)
    assert shape.padded_vocab(tensor) % (128 * tensor) == 0 and shape.padded_vocab(tensor) >= VOCAB.size
    back = megatron_to_hf(shards, shape)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_the_model_merges_back_to_the_same_hf_weights(parallel):
    from opuslm.backends.megatron.model import MegatronOpusLM

    hf = hf_model("qwen2", False)
    back = MegatronOpusLM.from_opuslm(hf, parallel).hf_state_dict()
    state = hf.backbone.state_dict()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_qkv_rows_are_grouped_by_key_value_head():
    """Megatron's fused qkv: group g holds its query heads, then its key head, then its value head."""
    hf = hf_model("llama", False)
    state = hf.backbone.state_dict()
    shape = BackboneShape.of(hf.backbone.config)
    fused = hf_to_megatron(state, shape, 1)[0]["decoder.layers.0.self_attention.linear_qkv.weight"]
    d, per_group = shape.head_dim, shape.heads // shape.groups
    q, k, v = (state[f"model.layers.0.self_attn.{p}_proj.weight"] for p in "qkv")
    block = (per_group + 2) * d
    for g in range(shape.groups):
        assert torch.equal(fused[g * block:g * block + per_group * d], q[g * per_group * d:(g + 1) * per_group * d])
        assert torch.equal(fused[g * block + per_group * d:g * block + (per_group + 1) * d], k[g * d:(g + 1) * d])
        assert torch.equal(fused[g * block + (per_group + 1) * d:(g + 1) * block], v[g * d:(g + 1) * d])


def test_unsupported_backbones_and_splits_are_refused():
    from transformers import Olmo2Config

    with pytest.raises(OpusLMError, match="not 'olmo2'"):
        BackboneShape.of(Olmo2Config(num_hidden_layers=1, hidden_size=32, num_attention_heads=4))
    shape = BackboneShape.of(tiny_config("llama"))
    with pytest.raises(OpusLMError, match=r"key/value heads \(2\)"):
        hf_to_megatron(hf_model("llama", False).backbone.state_dict(), shape, 4)


def megatron_schedule(tmp_path, shards, name, tensor, steps=4):
    path = write_schedule(tmp_path / name, shards, tmp_path / name / "out", steps=(steps,))
    schedule = yaml.safe_load(path.read_text())
    overrides = schedule["stages"][0]["overrides"]
    overrides.update({"parallel": "megatron", "tensor": tensor} if tensor else {})
    path.write_text(yaml.safe_dump(schedule))
    return path


def torchrun(path, processes=2):
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
         "--master-port", str(29600 + os.getpid() % 1000), "-m", "opuslm", "stages", "run", str(path), "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True,
        timeout=900)


@pytest.fixture(scope="module")
def tensor_parallel_runs(tmp_path_factory, tiny_shards):
    tmp = tmp_path_factory.mktemp("megatron")
    runs = {"hf": megatron_schedule(tmp, tiny_shards, "hf", None), "tp1": megatron_schedule(tmp, tiny_shards, "tp1", 1),
            "tp2": megatron_schedule(tmp, tiny_shards, "tp2", 2)}
    for name in ("hf", "tp1"):
        process = run_cli(["stages", "run", str(runs[name]), "--quiet"])
        output, _ = process.communicate(timeout=900)
        assert process.returncode == 0, output[-3000:]
    two = torchrun(runs["tp2"])
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    return {name: path.parent / "out" for name, path in runs.items()}


def test_tensor_parallel_2_trains_like_tensor_parallel_1_and_the_hf_backend(tensor_parallel_runs):
    """Four AdamW steps with gradient accumulation and clipping, fp32. Measured: losses agree within 5e-8
    relative, gradient norms within 2e-6, final weights (merged back into the HF folder) within 4e-5
    absolute — Adam divides by the root of the squared gradient, so ulp-level differences in
    near-zero gradients move a weight by up to the learning rate (1e-3); the bound is a tenth of it."""
    logs = {name: loss_log(out) for name, out in tensor_parallel_runs.items()}
    for name in ("tp1", "tp2"):
        for ours, reference in zip(logs[name], logs["hf"]):
            assert ours[0] == reference[0]
            if reference[1] is not None:
                assert ours[1] == pytest.approx(reference[1], rel=1e-6) and ours[2] == pytest.approx(reference[2], rel=1e-5)
    weights = {name: final_weights(out) for name, out in tensor_parallel_runs.items()}
    for name in ("tp1", "tp2"):
        assert weights[name].keys() == weights["hf"].keys()
        worst = max((weights[name][k] - weights["hf"][k]).abs().max().item() for k in weights["hf"])
        assert worst < 1e-4, (name, worst)


def test_a_distributed_checkpoint_resumes_to_the_same_weights(tensor_parallel_runs, tmp_path):
    """Roll the tensor-parallel-2 run back to its step-2 distributed checkpoint and resume it."""
    out = tmp_path / "out"
    shutil.copytree(tensor_parallel_runs["tp2"], out)
    stage = out / "pretrain"
    assert (stage / "checkpoints" / "step-00000002" / "distributed").is_dir()
    shutil.rmtree(stage / "checkpoints" / "step-00000004")
    shutil.rmtree(stage / "model")
    (stage / "summary.json").unlink()
    schedule = yaml.safe_load((tensor_parallel_runs["tp2"].parent / "schedule.yaml").read_text())
    schedule["out"] = str(out)
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump(schedule))
    resumed = torchrun(path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    a, b = final_weights(tensor_parallel_runs["tp2"]), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loss_log(tensor_parallel_runs["tp2"]) == loss_log(out)
