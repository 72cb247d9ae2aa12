"""A newcomer's plausible mistakes, each held to one line naming the problem and the fix."""

import re

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from test_training import write_schedule

from opuslm.cli.main import main

ROOT = __import__("pathlib").Path(__file__).parent.parent


@pytest.fixture(scope="module")
def model_run(tiny_shards, tmp_path_factory):
    """A model folder inside a run folder, as a stage leaves it (run/model)."""
    run = tmp_path_factory.mktemp("run") / "instruct"
    assert main(["model", "init", "--preset", "tiny", "--tokens", str(tiny_shards), "--out", str(run / "model")]) == 0
    return run


def _clip(folder):
    path = folder / "clip.wav"
    sf.write(path, 0.3 * np.cos(2 * np.pi * 220 * np.arange(16000) / 16000), 16000)
    return path


def _error(capsys) -> str:
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("opuslm")]
    return line


GENERATE_MISTAKES = {
    "the run folder, not its model": (lambda run, clip: ["asr", str(clip), "--model", str(run)],
        r"error: \S+instruct is not an OpusLM model folder \(no opuslm.json\): did you mean \S+instruct/model\?"),
    "a folder as audio": (lambda run, clip: ["asr", str(clip.parent), "--model", str(run / "model")],
        r"is a folder, not an audio file; give the WAV \(or FLAC, ...\) files in it"),
    "a WAV path as the text to speak": (lambda run, clip: ["tts", str(clip), "--model", str(run / "model")],
        r"tts speaks text, and '\S+clip.wav' is an audio file: give the words to say \(for a voice to speak in, "
        r"--speaker FILE\)"),
    "a typo'd task": (lambda run, clip: ["asrr", str(clip), "--model", str(run / "model")],
        r"unknown task 'asrr' \(did you mean asr\?\); tasks: asr, tts, continue-audio, continue-text, "),
}


@pytest.mark.parametrize("case", GENERATE_MISTAKES)
def test_generate_mistakes_get_one_line_with_the_fix(case, model_run, tmp_path, capsys):
    arguments, message = GENERATE_MISTAKES[case]
    assert main(["generate", *arguments(model_run, _clip(tmp_path)), "--out", str(tmp_path / "out")]) == 2
    line = _error(capsys)
    assert re.search(message, line), line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_named(model_run, tmp_path, capsys):
    assert main(["generate", "asr", str(_clip(tmp_path)), "--model", str(model_run / "model"), "--device", "cuda"]) == 2
    assert "--device cuda: this machine has no CUDA device" in _error(capsys)


def test_a_second_tts_run_refuses_to_leave_old_files_beside_new_ones(model_run, tmp_path, capsys):
    model = str(model_run / "model")
    common = ["--model", model, "--out", str(tmp_path / "out"), "--max-seconds", "0.5"]
    assert main(["generate", "tts", "one", "two", *common]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tts-0000.wav", "tts-0001.wav"]
    capsys.readouterr()
    assert main(["generate", "tts", "three", *common]) == 2
    assert "already holds 2 tts WAV(s) of an earlier run (tts-0000.wav, ...): give another --out, or --overwrite" \
        in _error(capsys)
    assert main(["generate", "tts", "three", *common, "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tts-0000.wav"]


SCHEDULE_MISTAKES = {
    "a typo'd stage key": ({"stpes": 4}, r"pretrain.yaml .*: stpes: Extra inputs are not permitted \(did you mean steps\?\)"),
    "a typo'd nested key": ({"lr": {"peek": 1e-3}}, r"lr.peek: Extra inputs are not permitted \(did you mean peak\?\)"),
    "a typo'd key inside a source": ({"data": {"sources": [{"name": "a", "dataset": "speech", "task": "asr", "wieght": 2}]}},
                                      r"data.sources.0.wieght: Extra inputs are not permitted \(did you mean weight\?\)"),
    "a peak LR of 1e6": ({"lr": {"peak": 1e6}}, r"lr.peak: Value error, the peak LR must be greater than 0 and at most "
                                              r"0.1 \(or 'previous'\), got 1000000.0"),
    "an infinite LR": ({"lr": {"peak": float("inf")}}, r"lr.peak: Value error, the peak LR must be .* got inf"),
}


@pytest.mark.parametrize("case", SCHEDULE_MISTAKES)
def test_schedule_mistakes_get_one_line_with_the_fix(case, tmp_path, tiny_shards, capsys):
    override, message = SCHEDULE_MISTAKES[case]
    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule = yaml.safe_load(path.read_text())
    schedule["stages"][0]["overrides"].update(override)
    path.write_text(yaml.safe_dump(schedule))
    assert main(["stages", "check", str(path)]) == 2
    line = _error(capsys)
    assert re.search(message, line), line


def test_an_empty_text_dataset_and_a_stage_file_given_to_plan_are_named(tmp_path, tiny_shards, capsys):
    path = write_schedule(tmp_path, tiny_shards, tmp_path / "out")
    schedule = yaml.safe_load(path.read_text())
    (tmp_path / "empty.txt").write_text("\n  \n")
    schedule["datasets"]["text"] = str(tmp_path / "empty.txt")
    schedule["stages"][0]["overrides"]["data"] = {"sources": [{"name": "text", "dataset": "text", "task": "text_lm"}]}
    path.write_text(yaml.safe_dump(schedule))
    assert main(["stages", "check", str(path)]) == 2
    assert "empty.txt holds no text (every line is blank); fill it or name another dataset" in _error(capsys)
    assert main(["plan", str(ROOT / "stages" / "anneal.yaml")]) == 2
    assert "anneal.yaml is a stage file, which `opuslm stages` runs; `opuslm plan` takes a plan config" in _error(capsys)


def test_a_flipped_byte_in_the_weights_is_refused_at_load(model_run, tmp_path):
    import shutil

    from opuslm.errors import OpusLMError
    from opuslm.model.multistream import OpusLM

    folder = tmp_path / "copy"
    shutil.copytree(model_run / "model", folder)
    OpusLM.from_pretrained(folder)  # as saved: its checksums hold
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data: safetensors itself reads it without complaint
    weights.write_bytes(bytes(data))
    with pytest.raises(OpusLMError, match=r"model.safetensors does not match the checksum recorded when it was saved: "
                                          "the file is damaged; copy the model folder again"):
        OpusLM.from_pretrained(folder)


def test_a_resumed_tokenize_removes_a_killed_runs_half_written_shard(tmp_path, small_corpus, tiny_tokenizers):
    from opuslm.data.manifest import read_manifest, write_manifest
    from opuslm.tokenize.pipeline import tokenize_corpus

    manifest = small_corpus / "first4.jsonl"
    write_manifest(manifest, read_manifest(small_corpus)[:4])
    out = tmp_path / "tokens"
    tokenize_corpus(manifest, out, tiny_tokenizers, shard_size=2, progress=False)
    stale = out / ".shard-00001.tmp-99999"  # what a kill inside a shard write leaves
    stale.mkdir()
    (stale / "index.npy").write_bytes(b"half")
    summary = tokenize_corpus(manifest, out, tiny_tokenizers, shard_size=2, progress=False)
    assert not stale.exists() and summary["seen"] == 4


def test_judge_transcribe_prints_what_the_judge_hears_and_its_wer(small_corpus, capsys):
    from opuslm.data.manifest import read_manifest

    utterance = read_manifest(small_corpus, split="test")[0]
    wav = str(utterance.audio_path(small_corpus))
    assert main(["judge", "transcribe", wav, "--reference", utterance.text]) == 0
    lines = capsys.readouterr().out.splitlines()
    path, heard, wer = lines[0].split("\t")
    assert path == wav and heard and re.fullmatch(r"WER \d\.\d{3}", wer)
    assert lines[1].startswith("corpus WER ") and lines[1].endswith("over 1 files")
    assert main(["judge", "transcribe", wav, wav, "--reference", "one"]) == 2


def test_judge_transcribe_of_a_corpus_split_equals_its_wavs_with_their_transcripts(small_corpus, capsys):
    from opuslm.data.manifest import read_manifest

    utterances = read_manifest(small_corpus, split="dev")
    explicit = [str(u.audio_path(small_corpus)) for u in utterances]
    for u in utterances:
        explicit += ["--reference", u.text]
    assert main(["judge", "transcribe", *explicit]) == 0
    by_hand = capsys.readouterr().out
    assert main(["judge", "transcribe", "--corpus", str(small_corpus), "--split", "dev"]) == 0
    assert capsys.readouterr().out == by_hand and by_hand.endswith(f"over {len(utterances)} files\n")
    assert main(["judge", "transcribe", "--corpus", str(small_corpus), "--split", "nope"]) == 2
    assert main(["judge", "transcribe"]) == 2


def test_a_model_with_a_nan_weight_is_refused_before_generating(model_run, tmp_path, capsys):
    from opuslm.model.multistream import OpusLM, model_tokenizers

    model = OpusLM.from_pretrained(model_run / "model")
    with torch.no_grad():
        model.backbone.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "nan", model_tokenizers(model_run / "model"))
    assert main(["generate", "asr", str(_clip(tmp_path)), "--model", str(tmp_path / "nan")]) == 2
    assert re.search(r"the weights backbone.model.layers.0.mlp.up_proj.weight hold NaN or infinite values", _error(capsys))


def test_a_checkpoint_of_another_model_shape_is_refused_in_one_line(tmp_path, monkeypatch):
    from opuslm.backends.hf import HFTraining
    from opuslm.errors import OpusLMError
    from opuslm.train import checkpoint

    monkeypatch.setattr(checkpoint, "load", lambda path, vocab_hash: ({"model": {"weight": torch.zeros(3)},
                                                                        "optimizer": {}}, {}))
    with pytest.raises(OpusLMError, match=r"checkpoint \S+ does not fit this stage's model \(.*\): it was made by a "
                                          r"model of another shape or tuning"):
        HFTraining.restore(object.__new__(HFTraining), tmp_path, torch.nn.Linear(2, 2), torch.optim.SGD(
            torch.nn.Linear(2, 2).parameters(), lr=0.1), "v")


def test_a_vocoder_with_a_codec_it_cannot_decode_is_refused_before_any_work(small_corpus, tmp_path, capsys):
    assert main(["tokenizers", "train-codec", "--manifest", str(small_corpus), "--out", str(tmp_path / "c"),
                 "--kind", "neural", "--vocoder", str(tmp_path / "v")]) == 2
    assert "--vocoder decodes the mel-pitch codec; the neural codec has a decoder of its own" in _error(capsys)
    assert main(["demo", "--out", str(tmp_path / "d"), "--vocoder", str(tmp_path / "v"), "--codec", str(tmp_path / "c")]) == 2
    assert re.search(r"--vocoder \S+ decodes the demo's mel-pitch codec, and --codec \S+ replaces it: drop one", _error(capsys))
    assert not (tmp_path / "c").exists() and not (tmp_path / "d" / "corpus").exists()
