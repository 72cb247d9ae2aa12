"""Bad input refused where it enters, each case held to its one-line message: a schedule through
`stages check` and `stages run` alike (same message, exit 2, nothing built, no internal error);
`generate` at its limits; import and tokenize under the same utterance rules; byte-reproducible JSON."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import yaml
from test_training import write_schedule

from opuslm.cli.main import main
from opuslm.errors import OpusLMError

SR = 16000


def _stage(schedule: dict, name: str) -> dict:
    return next(e["overrides"] for e in schedule["stages"] if e["file"].endswith(f"{name}.yaml"))


def _other_tokenizer(name):
    def edit(schedule, tmp_path):
        shards = tmp_path / f"other_{name}"
        shutil.copytree(schedule["datasets"]["speech_hq"], shards)
        info = json.loads((shards / "tokens.json").read_text())
        info["tokenizers"][name]["hash"] = "0123456789abcdef"
        (shards / "tokens.json").write_text(json.dumps(info))
        schedule["datasets"]["speech_hq"] = str(shards)  # read by the anneal stage only
    return edit


def _set(stage, **keys):
    def edit(schedule, tmp_path):
        _stage(schedule, stage).update(keys)
    return edit


def _init(**keys):
    def edit(schedule, tmp_path):
        schedule["init"].update(keys)
    return edit


def _dataset(kind):
    def edit(schedule, tmp_path):
        folder = tmp_path / "nowhere"
        if kind == "empty":
            folder.mkdir()
        schedule["datasets"]["speech_hq"] = str(folder)
    return edit


def _drop_first_stage(schedule, tmp_path):
    schedule["stages"] = schedule["stages"][1:]


def _earlier_run(kind):
    """A run of pretrain already in out, made by a definition with another peak LR."""
    def edit(schedule, tmp_path):
        from opuslm.train.config import load_schedule
        from opuslm.train.preflight import definition

        path = tmp_path / "probe.yaml"
        path.write_text(yaml.safe_dump(schedule))
        stage = load_schedule(path)[1][0]
        recorded = {"definition": {**definition(stage), "lr": {**definition(stage)["lr"], "peak": 0.5}}, "peak_lr": 0.5}
        run = tmp_path / "out" / "pretrain"
        if kind == "checkpoint":
            folder = run / "checkpoints" / "step-00000002"
            folder.mkdir(parents=True)
            (folder / "trainer.json").write_text(json.dumps({**recorded, "step": 2}))
        else:
            run.mkdir(parents=True)
            (run / "summary.json").write_text(json.dumps(recorded))
    return edit


def _unknown_task(schedule, tmp_path):
    _stage(schedule, "anneal")["data"] = {"sources": [{"name": "asr", "dataset": "speech_hq", "task": "asrr"}]}


SCHEDULE_CASES = {
    "shards of another semantic tokenizer": (_other_tokenizer("semantic"),
        r"anneal.yaml .*stage anneal, data.sources \w+: datasets.speech_hq in \S+schedule.yaml \(\S+other_semantic\) "
        r"was tokenized with another semantic tokenizer \(hash 0123456789abcdef\) than the model is built with "
        r"\(tokens: speech .*\) \(hash [0-9a-f]+\)"),
    "shards of another text tokenizer": (_other_tokenizer("text"), r"another text tokenizer \(hash 0123456789abcdef\)"),
    "shards of another codec": (_other_tokenizer("acoustic"), r"another acoustic tokenizer \(hash 0123456789abcdef\)"),
    "decreasing delays": (_init(delays=[0, 2, 1, 3, 4]),
        r"schedule.yaml: init.delays: delays must be non-negative and non-decreasing, got \[0, 2, 1, 3, 4\]; give 5 "),
    "delays of the wrong length": (_init(delays=[0, 1]),
        r"schedule.yaml: init.delays: 2 delays given for 5 streams; give 5 non-negative, non-decreasing delays"),
    "LoRA targets that do not exist": (_set("instruct", tune={"lora": {"targets": ["q_proj", "qkv"]}}),
        r"instruct.yaml .*stage instruct: tune.lora.targets: no module named qkv in the backbone \(preset tiny\); "
        r"its linear layers: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj, or all-linear"),
    "rows longer than the positions": (_set("anneal", data={"row_frames": 5000}),
        r"anneal.yaml .*stage anneal: data.row_frames \(5000\) is more than the backbone's 4096 positions"),
    "warmup longer than the stage": (_set("anneal", lr={"warmup": 2000}),
        r"anneal.yaml .*: \(top\): Value error, lr.warmup \(2000 steps\) is longer than the stage \(2 steps\)"),
    "missing dataset": (_dataset("missing"),
        r"anneal.yaml .*stage anneal, data.sources \w+: datasets.speech_hq in \S+schedule.yaml: \S+nowhere does not "
        "exist; point it at a token shard folder or a text file"),
    "empty dataset folder": (_dataset("empty"),
        r"datasets.speech_hq in \S+schedule.yaml: \S+nowhere is an empty folder; run `opuslm tokenize` into it first"),
    "unknown task": (_unknown_task, r"anneal.yaml .*stage anneal, data.sources asr: task: unknown task 'asrr'; tasks: "),
    "unknown from: stage": (_drop_first_stage,
        r"anneal.yaml .*stage anneal: from: 'pretrain' is not an earlier stage of \S+schedule.yaml \(earlier: init\)"),
    "resume under another definition": (_earlier_run("checkpoint"),
        r"pretrain.yaml .*stage pretrain: checkpoint \S+step-00000002 was made by another definition of the stage "
        r"\(lr.peak: 0.5 -> 0.001; peak LR: 0.5 -> 0.001\); put the stage back as it was to resume it"),
    "reuse under another definition": (_earlier_run("finished"),
        r"stage pretrain: the finished run in \S+pretrain was made by another definition of the stage \(lr.peak: 0.5 "
        r"-> 0.001; peak LR: 0.5 -> 0.001\); put the stage back as it was to reuse it"),
}


@pytest.mark.parametrize("case", SCHEDULE_CASES)
def test_a_bad_schedule_fails_check_and_run_with_one_message_before_anything_is_built(case, tmp_path, tiny_shards, capsys):
    edit, message = SCHEDULE_CASES[case]
    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule = yaml.safe_load(path.read_text())
    edit(schedule, tmp_path)
    path.write_text(yaml.safe_dump(schedule))
    errors = []
    for command in (["check"], ["run", "--quiet"]):
        assert main(["stages", command[0], str(path), *command[1:]]) == 2, command
        errors.append(capsys.readouterr().err.strip())
    assert errors[0] == errors[1] and len(errors[0].splitlines()) == 1
    assert errors[0].startswith("opuslm: error: ") and "internal error" not in errors[0]
    assert re.search(message, errors[0]), errors[0]
    assert not (tmp_path / "out" / "init").exists()  # run refused before it built the first model


def test_check_lists_stages_and_ablations_with_what_run_would_do(tmp_path, tiny_shards, capsys):
    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule = yaml.safe_load(path.read_text())
    schedule["ablations"] = {"speech_only": [{"name": "asr", "dataset": "speech_hq", "task": "asr", "weight": 3.0}]}
    path.write_text(yaml.safe_dump(schedule))
    assert main(["stages", "check", str(path), "--steps-scale", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  model: 5 streams, tokenizers of tokens: speech") and "4096 positions" in lines[1]
    assert lines[2].startswith("  pretrain from init: 2 steps, lr cosine peak 0.001 warmup 0,")  # 4 x 0.5; warmup 1 x 0.5
    assert lines[2].endswith("; would start")
    pretrain_sources = lines[2].split("frames, loss on ")[1].split("; ")[1]
    assert lines[5:] == ["  ablation of anneal, start: pretrain's model; would start once pretrain has finished",
                         "  ablation of anneal, continued: 1 steps, lr constant peak previous warmup 0, 2 x 512 frames, "
                         f"loss on whole; {pretrain_sources}; would start once pretrain has finished",
                         "  ablation of anneal, speech_only: 1 steps, lr linear_to_zero peak previous warmup 0, 2 x 512 "
                         "frames, loss on whole; asr(asr x3 on speech_hq); would start once pretrain has finished"]


# ---- generate ----
@pytest.fixture(scope="module")
def model_folder(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["model", "init", "--preset", "tiny", "--tokens", str(tiny_shards), "--out", str(out)]) == 0
    return out


def _wav(folder, name, seconds, channels=1, cancel=False):
    tone = 0.3 * np.cos(2 * np.pi * 220 * np.arange(max(int(seconds * SR), 1)) / SR)  # cos: a 1-sample clip is not 0
    samples = np.stack([tone, -tone if cancel else tone], 1)[:, :channels] if channels > 1 else tone
    path = folder / f"{name}.wav"
    sf.write(path, samples, SR, subtype="PCM_16")
    return str(path)


GENERATE_CASES = {
    "a 0.1 s clip": (["asr", "{clip_0.1}"], r"clip_0.1.wav: 0.100 s of audio is shorter than the 0.2 s a word needs"),
    "a 0.01 s clip": (["ser", "{clip_0.01}"], r"clip_0.01.wav: 0.010 s of audio is shorter than the 0.2 s"),
    "a 5-minute clip": (["asr", "{clip_300}"],
        r"clip_300.wav: its audio is 7500 frames and --max-tokens lets 200 more follow, 7705 positions in all, but the "
        r"model has 4096: split the clip into pieces of at most about 156 s, or lower --max-tokens"),
    "empty text": (["tts", ""], r"error: '': the text to speak is empty; give the words to say"),
    "blank text": (["tts", "   "], r"error: '   ': the text to speak is empty"),
    "2,000 characters": (["tts", "a" * 2000],
        r"2000 characters take at least 100 s to say \(at 20 characters a second\), more than --max-seconds 20: split "
        "the text or raise --max-seconds"),
}


@pytest.mark.parametrize("case", GENERATE_CASES)
def test_generate_refuses_input_outside_its_limits(case, model_folder, tmp_path, capsys):
    arguments, message = GENERATE_CASES[case]
    clips = {f"clip_{s:g}": _wav(tmp_path, f"clip_{s:g}", s) for s in (0.1, 0.01, 300)}
    arguments = [clips[a[1:-1]] if a.startswith("{") else a for a in arguments]
    assert main(["generate", *arguments, "--model", str(model_folder), "--out", str(tmp_path / "gen")]) == 2
    [err] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("opuslm")]  # (and progress bars)
    assert err.startswith("opuslm: error: ") and re.search(message, err), err
    assert not (tmp_path / "gen").exists()


@pytest.mark.parametrize("flag", ["--max-seconds", "--max-tokens"])
def test_zero_limits_are_refused_by_the_parser(flag, model_folder, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "tts", "hello", "--model", str(model_folder), flag, "0"])
    assert exit_.value.code == 2 and f"argument {flag}: must be greater than 0, got 0" in capsys.readouterr().err


def test_tts_crops_the_speaker_prompt_and_says_when_speech_may_be_cut(model_folder, tmp_path):
    from opuslm.infer.sampling import Sampling
    from opuslm.infer.speech_lm import SpeechLM

    lm = SpeechLM.load(model_folder, sampling=Sampling(greedy_audio=True))
    seen = []
    tokenize = lm.tokenize_audio
    lm.tokenize_audio = lambda audio, *a, **k: seen.append(len(audio[0]) / audio[1]) or tokenize(audio, *a, **k)
    long_prompt = sf.read(_wav(tmp_path, "five_minutes", 300))
    [cut] = lm.speak(["hi"], [(long_prompt[0].astype(np.float32), SR)], max_seconds=0.2)
    assert seen == [lm.prompt_seconds]  # the first 3 s, as long as training's prompts
    if cut.stopped:  # the random model ended within 5 frames: no warning owed
        assert cut.note is None or "likely not spoken" in cut.note
    else:
        assert "reached --max-seconds 0.2 before the model ended it" in cut.note
    # a text that takes longer to say than the audio the model made is named too
    [short] = lm.speak(["one two three four five six seven eight"], max_seconds=20)
    seconds = len(short.audio) / lm.tokenizers.acoustic.sample_rate
    assert (short.note is not None) == (seconds < 39 / 20 or not short.stopped)


# ---- import and tokenize: one set of utterance rules ----
def _hand_manifest(folder):
    """Utterances a hand-written manifest could hold, one rule broken per utterance but the first."""
    ok = _wav(folder, "ok", 1.0)
    rows = [
        {"id": "ok", "audio": ok, "duration": 1.0, "text": "hello there"},
        {"id": "ok", "audio": ok, "duration": 1.0, "text": "hello again"},
        {"id": "empty", "audio": ok, "duration": 1.0, "text": "  "},
        {"id": "one_sample", "audio": _wav(folder, "one_sample", 1 / SR), "duration": 1 / SR, "text": "two words"},
        {"id": "declared", "audio": ok, "duration": 3.0, "text": "hello there"},
        {"id": "cancelling", "audio": _wav(folder, "cancelling", 1.0, 2, cancel=True), "duration": 1.0, "text": "hi"},
    ]
    lines = [json.dumps({**r, "sample_rate": SR, "speaker": "s", "split": "train"}) for r in rows]
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "manifest.jsonl"


REASONS = {
    "empty": "empty transcript and no labels: nothing to learn from it",
    "one_sample": "0.000 s of audio is shorter than the minimum of 0.2 s",
    "cancelling": "its 2 channels cancel out (one is the other inverted), so their mono mix is silence",
}


def test_tokenize_applies_the_rules_import_does_to_a_hand_written_manifest(tmp_path, tiny_tokenizers):
    from opuslm.data.importers import Candidate, import_corpus
    from opuslm.tokenize.pipeline import tokenize_corpus

    manifest = _hand_manifest(tmp_path)
    summary = tokenize_corpus(manifest, tmp_path / "tokens", tiny_tokenizers, progress=False)
    reasons = [json.loads(line) for line in (tmp_path / "tokens" / "rejects.jsonl").read_text().splitlines()]
    assert (summary["seen"], summary["accepted"], summary["rejected"]) == (6, 1, 5)
    by_id = {r["id"]: r["reason"] for r in reasons}
    assert [r["id"] for r in reasons].count("ok") == 1 and "duplicate id" in by_id["ok"]
    for name, reason in REASONS.items():
        assert reason in by_id[name], (name, by_id[name])
    assert "the manifest declares 3.000 s but the audio holds 1.000 s" in by_id["declared"]
    # import, reading the same files, gives the same reasons
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    candidates = [Candidate(id=r["id"], audio=tmp_path / os.path.basename(r["audio"]), text=r["text"], speaker="s")
                  for r in rows if r["id"] in REASONS]
    result = import_corpus(iter(candidates), tmp_path / "imported", "train", progress=False)
    imported = {json.loads(line)["id"]: json.loads(line)["reason"]
                for line in (tmp_path / "imported" / "rejects.jsonl").read_text().splitlines()}
    assert (result.seen, result.accepted, result.rejected) == (3, 0, 3)
    for name, reason in REASONS.items():
        assert reason in imported[name], (name, imported[name])


# ---- byte-reproducible folders ----
ADAPTER_SCRIPT = """
import sys
from types import SimpleNamespace
from transformers import LlamaConfig, LlamaForCausalLM
from opuslm.model.lora import add_lora, save_adapter
config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
model = SimpleNamespace(backbone=LlamaForCausalLM(config))
add_lora(model, 2, 4.0, targets=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"])
save_adapter(model, sys.argv[1])
"""


def test_lora_adapter_config_is_the_same_bytes_whatever_the_hash_seed(tmp_path):
    written = []
    for seed in ("1", "2", "3"):
        folder = tmp_path / seed
        subprocess.run([sys.executable, "-c", ADAPTER_SCRIPT, str(folder)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        written.append((folder / "adapter" / "adapter_config.json").read_bytes())
    assert written[0] == written[1] == written[2]
    config = json.loads(written[0])
    assert config["target_modules"] == sorted(config["target_modules"]) and len(config["target_modules"]) == 7
    assert list(config) == sorted(config)


def test_the_json_the_project_writes_has_sorted_keys():
    from opuslm.json_files import json_text

    assert json_text({"b": 1, "a": {"d": 2, "c": "é"}}) == '{\n "a": {\n  "c": "é",\n  "d": 2\n },\n "b": 1\n}\n'
    assert json_text({"b": 1, "a": 2}, None) == '{"a": 2, "b": 1}'


def test_a_steps_scale_scales_steps_and_warmup_alike():
    from opuslm.train.config import scaled

    assert scaled({"steps": 10, "lr": {"warmup": 4, "peak": 1.0}}, 0.5) == {"steps": 5, "lr": {"warmup": 2, "peak": 1.0}}
    assert scaled({"steps": 10, "lr": {"warmup": 4}}, 0.01) == {"steps": 1, "lr": {"warmup": 0}}
    assert scaled({"steps": 10}, 1.0) == {"steps": 10}
    with pytest.raises(OpusLMError, match="steps scale must be greater than 0"):
        scaled({"steps": 10}, 0)


def test_a_mixes_file_replaces_the_ablations_and_its_bad_sources_are_named_with_the_file(tmp_path, tiny_shards):
    from opuslm.train.config import load_schedule, with_mixes

    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule, _ = load_schedule(path)
    mixes = tmp_path / "mixes.yaml"
    mixes.write_text(yaml.safe_dump({"ablations": {"asr_only": [{"name": "asr", "dataset": "speech", "task": "asr"}]}}))
    assert list(with_mixes(path, schedule, mixes).ablations) == ["asr_only"]
    mixes.write_text(yaml.safe_dump({"ablations": {"bad": [{"name": "asr", "dataset": "elsewhere", "task": "asr"}]}}))
    with pytest.raises(OpusLMError, match=rf"{mixes}: ablations.bad, source asr: dataset 'elsewhere' is not named under "
                                          rf"datasets in {path}"):
        with_mixes(path, schedule, mixes)
    mixes.write_text(yaml.safe_dump({"ablation": {}}))
    with pytest.raises(OpusLMError, match=rf"{mixes}: ablations: Field required; ablation: Extra inputs"):
        with_mixes(path, schedule, mixes)
