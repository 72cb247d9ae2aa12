"""Fine-tuning: LoRA adapters through a model folder and merged back, frozen groups that keep their
values exactly, a schedule that starts from a trained model (refusing shards of other tokenizers), and
the walkthrough of docs/usage.md at tiny size: your own labelled clips, a declared task, LoRA, eval, generate."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, LlamaConfig

from opuslm.cli.main import main as cli
from opuslm.errors import OpusLMError
from opuslm.interleave import delay
from opuslm.model.lora import add_lora, has_lora
from opuslm.model.multistream import OpusLM
from opuslm.train.config import LoraSettings, TuneConfig
from opuslm.train.trainer import parameter_groups
from opuslm.train.tuning import apply_tuning
from opuslm.vocab import PAD_ID, JointVocab

VOCAB = JointVocab(semantic_size=16, num_codebooks=2, codebook_size=8, text_size=100)
STAGES = Path(__file__).parent.parent / "stages"
RECIPE = Path(__file__).parent.parent / "data_recipes" / "finetune"


def small_model(tied: bool = False) -> OpusLM:
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, tie_word_embeddings=tied)
    return OpusLM.from_llm(config, VOCAB, seed=0)


def random_frames(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    undelayed = torch.full((2, VOCAB.num_streams, 12), PAD_ID, dtype=torch.long)
    undelayed[:, 0, :6] = VOCAB.semantic_offset + torch.randint(0, 16, (2, 6), generator=g)
    for k in range(2):
        undelayed[:, k + 1, :6] = VOCAB.codebook_offset(k) + torch.randint(0, 8, (2, 6), generator=g)
    undelayed[:, 0, 6:] = VOCAB.text_offset + torch.randint(0, 100, (2, 6), generator=g)
    frames = delay(undelayed, [0, 1, 2], PAD_ID)
    return frames, frames != PAD_ID


def logits_of(model, frames):
    with torch.no_grad():
        hidden = model(frames).last_hidden_state
        return torch.cat([model.stream_logits(hidden, 0), model.codebook_logits(hidden).flatten(-2)], -1)


def test_lora_round_trips_through_a_model_folder_and_merges_to_the_same_outputs(tmp_path):
    model = small_model()
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    add_lora(model, rank=4, alpha=8)
    with torch.no_grad():  # peft starts B at zero (no change); make the adapters matter
        for name, param in model.backbone.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    frames, _ = random_frames()
    adapted = logits_of(model, frames)
    folder = model.save_pretrained(tmp_path / "lora")
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    plain = AutoModelForCausalLM.from_pretrained(str(folder))  # the base weights, under their own names
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in base.items())
    loaded = OpusLM.from_pretrained(folder)
    assert has_lora(loaded) and torch.equal(logits_of(loaded, frames), adapted)
    assert cli(["model", "merge", "--model", str(folder), "--out", str(tmp_path / "merged")]) == 0
    merged = OpusLM.from_pretrained(tmp_path / "merged")
    assert not has_lora(merged) and not (tmp_path / "merged" / "adapter").exists()
    torch.testing.assert_close(logits_of(merged, frames), adapted, atol=1e-5, rtol=0)
    assert not torch.allclose(logits_of(OpusLM.from_pretrained(folder), frames), logits_of(small_model(), frames))
    assert cli(["model", "merge", "--model", str(tmp_path / "merged"), "--out", str(tmp_path / "again")]) == 2


def train_steps(model, steps: int = 2):
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-2)
    frames, mask = random_frames()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model.loss(frames, mask).loss.backward()
        optimizer.step()


def test_frozen_groups_keep_their_values_exactly_and_the_others_train():
    model = small_model()
    apply_tuning(model, TuneConfig(freeze=["audio_rows", "backbone"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model)
    after = model.state_dict()
    table = "backbone.model.embed_tokens.weight"
    audio = slice(VOCAB.semantic_offset, VOCAB.text_offset)
    assert torch.equal(after[table][audio], before[table][audio])
    assert not torch.equal(after[table][VOCAB.text_offset:], before[table][VOCAB.text_offset:])
    layers = [k for k in before if ".layers." in k or k == "backbone.model.norm.weight"]
    assert layers and all(torch.equal(after[k], before[k]) for k in layers)
    assert not torch.equal(after["backbone.lm_head.weight"], before["backbone.lm_head.weight"])
    assert not torch.equal(after["stream_offsets"], before["stream_offsets"])


def test_with_lora_only_the_adapters_change_inside_the_backbone_and_a_tied_head_cannot_be_frozen_alone():
    model = small_model()
    apply_tuning(model, TuneConfig(lora=LoraSettings(rank=2, alpha=4), freeze=["head", "stream_offsets"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model, 3)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora_A" in k for k in changed) and any("lora_B" in k for k in changed)
    assert {k for k in changed if "lora_" not in k} == {"backbone.model.embed_tokens.weight"}
    with pytest.raises(OpusLMError, match="tied to its embeddings"):
        apply_tuning(small_model(tied=True), TuneConfig(freeze=["head"]))


def test_lr_scale_gives_each_groups_tensors_its_own_peak_and_the_schedule_keeps_the_ratios():
    from opuslm.train.config import StageConfig
    from opuslm.train.trainer import optimizer_and_schedule
    from opuslm.train.tuning import lr_groups

    model = small_model()
    apply_tuning(model, TuneConfig(lora=LoraSettings(rank=2, alpha=4)))
    stage = StageConfig.model_validate({
        "name": "s", "steps": 10, "lr": {"peak": 1e-3, "warmup": 2}, "data": {"sources": [{"name": "a", "dataset": "d", "task": "asr"}]},
        "optim": {"lr_scale": {"embeddings": 10, "lora": 0.5}}})
    optimizer, scheduler = optimizer_and_schedule(model, stage, 1e-3)
    group_of = lr_groups(model)
    scale_of = {id(p): group["lr_scale"] for group in optimizer.param_groups for p in group["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(scale_of) == len(trainable) == sum(len(g["params"]) for g in optimizer.param_groups)  # each once
    embeddings = model.backbone.get_input_embeddings().weight
    assert scale_of[id(embeddings)] == 10 and group_of[id(embeddings)] == "embeddings"
    assert all(scale_of[id(p)] == 0.5 for name, p in model.named_parameters() if ".lora_" in name)
    assert {scale_of[id(p)] for name, p in model.named_parameters() if p.requires_grad and ".lora_" not in name
            and p is not embeddings} == {1.0}
    unscaled = {(g["weight_decay"], len(g["params"])) for g in torch.optim.AdamW(parameter_groups(model, 0.1), lr=1).param_groups}
    assert len(unscaled) == 2  # without lr_scale: the decayed and the undecayed groups, as before
    for step in range(10):
        factor = optimizer.param_groups[0]["lr"] / 1e-3
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(1e-3 * group["lr_scale"] * factor)
        optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError, match="lr_scale"):
        StageConfig.model_validate({"name": "s", "steps": 1, "parallel": "megatron", "optim": {"lr_scale": {"head": 2}},
                                    "data": {"sources": [{"name": "a", "dataset": "d", "task": "asr"}]}})


@pytest.fixture(scope="module")
def base_model(tiny_shards, tmp_path_factory):
    """A model folder with its tokenizers (a preset, briefly trained: what the walkthrough fine-tunes)."""
    from opuslm.model.init import init_model

    folder = tmp_path_factory.mktemp("base") / "model"
    init_model(tiny_shards, folder, preset="tiny")
    return folder


def test_a_schedule_from_a_model_folder_refuses_shards_of_other_tokenizers_naming_both_hashes(base_model, tiny_shards,
                                                                                            tmp_path):
    from opuslm.train.stages import run_schedule

    shards = tmp_path / "other_shards"
    shutil.copytree(tiny_shards, shards)
    info = json.loads((shards / "tokens.json").read_text())
    ours = info["tokenizers"]["semantic"]["hash"]
    info["tokenizers"]["semantic"]["hash"] = "0123456789abcdef"
    (shards / "tokens.json").write_text(json.dumps(info))
    schedule = {"out": str(tmp_path / "out"), "datasets": {"mine": str(shards)}, "init": {"model": str(base_model)},
                "stages": [{"file": str(STAGES / "finetune.yaml"), "overrides": {
                    "steps": 1, "lr": {"warmup": 0}, "data": {"sources": [{"name": "asr", "dataset": "mine", "task": "asr"}]}}}]}
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match=rf"semantic tokenizer \(hash 0123456789abcdef\).*\(hash {ours}\)"):
        run_schedule(path, progress=False)
    schedule["init"] = {"model": str(base_model), "delays": [0, 1, 2]}
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(OpusLMError, match="delays shape a new model; a trained model folder keeps its own"):
        run_schedule(path, progress=False)


def test_the_walkthrough_your_clips_a_declared_task_lora_resume_eval_and_generate(base_model, small_corpus, tmp_path,
                                                                                  capsys, monkeypatch):
    """docs/usage.md, "Fine-tune on your own data", at tiny size: label clips with a key of your own, tokenize
    them with the model's tokenizers, fine-tune with LoRA on the declared task (a run killed after a
    checkpoint resumes to the same adapters and log), evaluate it, and ask the CLI."""
    import runpy
    import sys

    from opuslm.train import run_log
    from opuslm.train.stages import run_schedule

    monkeypatch.setattr(sys, "argv", ["label", "--corpus", str(small_corpus), "--out", str(tmp_path / "clips")])
    runpy.run_path(str(RECIPE / "label_sentence_types.py"), run_name="__main__")
    clips = [json.loads(line) for line in (tmp_path / "clips" / "manifest.jsonl").read_text().splitlines()]
    assert {c["labels"]["sentence_type"] for c in clips} <= {"statement", "question", "request"}
    assert cli(["tokenize", "--model", str(base_model), "--manifest", str(tmp_path / "clips"),
                "--out", str(tmp_path / "tokens"), "--workers", "1"]) == 0
    assert cli(["tokenize", "--model", str(base_model), "--text", "x", "--manifest", str(tmp_path / "clips"),
                "--out", str(tmp_path / "t2")]) == 2

    def schedule(name: str) -> Path:
        recipe = yaml.safe_load((RECIPE / "schedule.yaml").read_text())
        recipe.update(out=str(tmp_path / name), datasets={"mine": str(tmp_path / "tokens")},
                      init={"model": str(base_model)}, tasks=str(RECIPE / "tasks.yaml"))
        recipe["stages"][0]["file"] = str(STAGES / "finetune.yaml")
        recipe["stages"][0]["overrides"].update(steps=4, lr={"warmup": 1}, checkpoint_every=2, validation={"every": 2, "batches": 1},
                                                data={**recipe["stages"][0]["overrides"]["data"], "row_frames": 512, "rows": 2})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        return path

    run_schedule(schedule("straight"), progress=False)
    killed = schedule("killed")
    real_write = run_log.RunLog.write

    def die_after_step_3(self, record):
        real_write(self, record)
        if record.get("step") == 3:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(run_log.RunLog, "write", die_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_schedule(killed, progress=False)
    monkeypatch.setattr(run_log.RunLog, "write", real_write)
    run_schedule(killed, progress=False)
    folders = [tmp_path / name / "finetune" / "model" for name in ("straight", "killed")]
    from safetensors.torch import load_file

    adapters = [load_file(f / "adapter" / "adapter_model.safetensors") for f in folders]
    assert adapters[0].keys() == adapters[1].keys() and all(torch.equal(adapters[0][k], adapters[1][k]) for k in adapters[0])
    logs = [[json.loads(line) for line in (tmp_path / name / "finetune" / "log.jsonl").read_text().splitlines()]
            for name in ("straight", "killed")]
    assert [r.get("loss") for r in logs[0]] == [r.get("loss") for r in logs[1]]
    model = folders[0]
    assert json.loads((model / "tasks.json").read_text()).keys() == {"sentence_type"}
    taught = sorted({c["labels"]["sentence_type"] for c in clips if c["split"] == "train"})
    assert json.loads((model / "trained_labels.json").read_text()) == {"sentence_type": taught}
    base_tables = load_file(base_model / "model.safetensors")
    tuned = load_file(model / "model.safetensors")
    table = "model.embed_tokens.weight"
    audio = slice(*JointVocab.load(base_model / "vocab.json").modality_range("semantic"))
    assert torch.equal(tuned[table][audio], base_tables[table][audio])  # the stage froze the audio rows

    capsys.readouterr()
    assert cli(["eval", "--model", str(model), "--corpus", str(tmp_path / "clips"), "--out", str(tmp_path / "eval"),
                "--tasks", "sentence_type", "--judge", "none", "--limit", "6"]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    declared = results["declared"]["sentence_type"]
    hyps = [json.loads(line) for line in (tmp_path / "eval" / "hyps.jsonl").read_text().splitlines()]
    assert declared["utterances"] == len(hyps) == 6 and declared["score"] == "first_tag"
    assert declared["seen_in"] == "the model's training data"
    assert declared["value"] == np.mean([h["score"] for h in hyps]) == results["metrics"]["sentence_type_accuracy"]
    assert "## Declared tasks" in (tmp_path / "eval" / "report.md").read_text()
    wav = next(c["audio"] for c in clips if c["split"] == "test")
    capsys.readouterr()
    assert cli(["generate", "sentence_type", wav, "--model", str(model)]) == 0
    assert capsys.readouterr().out.startswith(f"{wav}\t")
    assert cli(["generate", "accent", wav, "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'accent'; tasks: asr, tts, continue-audio, continue-text, " in err and err.rstrip().endswith(
        "sentence_type")  # the task the model was fine-tuned on, beside the built-in ones
