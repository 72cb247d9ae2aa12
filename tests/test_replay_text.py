"""`opuslm data replay-text`: the LLM's own samples, split, recorded, resumed and refused."""

import json

import pytest
import torch

from opuslm.data.synth.replay import DEV_EVERY, as_line, replay_text
from opuslm.errors import OpusLMError


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory, char_tokenizer):
    """A random 2-layer Llama over the character tokenizer, saved as an HF folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(char_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=char_tokenizer.eos_token_id,
                         bos_token_id=None)
    folder = tmp_path_factory.mktemp("llm")
    LlamaForCausalLM(config).save_pretrained(folder)
    char_tokenizer.save_pretrained(folder)
    return folder


def _naive_samples(folder, lines, seed, max_new_tokens, batch_size):
    """transformers' own sampling, one batch at a time with the documented seeds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    samples = []
    for first in range(0, lines, batch_size):
        count = min(batch_size, lines - first)
        torch.manual_seed(seed * 1_000_003 + first)
        prompt = torch.full((count, 1), tokenizer.eos_token_id)
        ids = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=0, top_p=1.0,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id)
        samples += [" ".join(text.split()) for text in tokenizer.batch_decode(ids[:, 1:], skip_special_tokens=True)]
    return samples


def test_samples_are_the_llms_own_split_every_twentieth_to_dev(tiny_llm, tmp_path):
    summary = replay_text(tiny_llm, tmp_path / "replay", lines=45, seed=3, max_new_tokens=12, batch_size=16,
                          progress=False)
    expected = _naive_samples(tiny_llm, 45, 3, 12, 16)
    train = (tmp_path / "replay" / "train.txt").read_text().splitlines()
    dev = (tmp_path / "replay" / "dev.txt").read_text().splitlines()
    kept = [(i, s) for i, s in enumerate(expected) if s]
    assert dev == [s for i, s in kept if i % DEV_EVERY == DEV_EVERY - 1]
    assert train == [s for i, s in kept if i % DEV_EVERY != DEV_EVERY - 1]
    assert summary["lines"] == {"train": len(train), "dev": len(dev)}
    assert len(train) + len(dev) + summary["empty"] == 45  # every sample is kept or counted as empty
    assert json.loads((tmp_path / "replay" / "replay.json").read_text()) == summary


def test_same_config_resumes_and_another_is_refused(tiny_llm, tmp_path):
    out = tmp_path / "replay"
    first = replay_text(tiny_llm, out, lines=20, seed=0, max_new_tokens=8, progress=False)
    written = (out / "train.txt").stat().st_mtime_ns
    assert replay_text(tiny_llm, out, lines=20, seed=0, max_new_tokens=8, progress=False) == first
    assert (out / "train.txt").stat().st_mtime_ns == written
    with pytest.raises(OpusLMError, match="holds other replay text"):
        replay_text(tiny_llm, out, lines=20, seed=1, max_new_tokens=8, progress=False)


def test_bad_arguments_are_refused_by_name(tiny_llm, tmp_path):
    with pytest.raises(OpusLMError, match="--lines must be at least 20"):
        replay_text(tiny_llm, tmp_path / "a", lines=5, progress=False)
    with pytest.raises(OpusLMError, match="not an HF model folder"):
        replay_text(tmp_path, tmp_path / "b", lines=20, progress=False)


def test_a_sample_becomes_one_line():
    assert as_line("  Once upon\na time,\n\n\tthere  was ") == "Once upon a time, there was"
    assert as_line("\n \n") == ""


def test_the_demo_samples_replay_text_for_a_schedule_that_names_it(tiny_llm, tmp_path):
    """The SmolLM2 schedule names a `replay` dataset; the demo writes it from --llm and points the schedule there."""
    import yaml

    from opuslm.demo import STAGE_FILES, DemoConfig, DemoPaths, write_replay_text

    shipped = yaml.safe_load((STAGE_FILES / "demo_smollm2.yaml").read_text())
    replayed = {s["dataset"] for stage in shipped["stages"] for s in stage["overrides"]["data"].get("sources", [])}
    assert "replay" in shipped["datasets"] and "replay" in replayed
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(yaml.safe_dump({**shipped, "stages": shipped["stages"][:1]}))
    paths = DemoPaths.under(tmp_path / "demo")
    config = DemoConfig(out=paths.out, llm=tiny_llm, schedule=str(schedule), replay_lines=20)
    assert write_replay_text(config, paths).endswith(f"-> {paths.replay}")
    summary = json.loads((paths.replay / "replay.json").read_text())
    assert summary["config"]["lines"] == 20 and sum(summary["lines"].values()) + summary["empty"] == 20
    schedule.write_text(yaml.safe_dump({**shipped, "datasets": {"speech": "tokens"}}))
    assert "replays none" in write_replay_text(config, DemoPaths.under(tmp_path / "other"))
