"""`opuslm model init`, `opuslm generate` and the SpeechLM API on the tiny tokenized corpus."""

import numpy as np
import pytest
import soundfile as sf

from opuslm.cli.main import main


@pytest.fixture(scope="module")
def tiny_model_folder(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["model", "init", "--preset", "tiny", "--tokens", str(tiny_shards), "--out", str(out)]) == 0
    return out


def corpus_wavs(small_corpus, count):
    from opuslm.data.manifest import read_manifest

    return [str(u.audio_path(small_corpus)) for u in read_manifest(small_corpus)[:count]]


def test_the_api_batches_like_single_calls_and_respects_limits(tiny_model_folder, small_corpus):
    from opuslm.audio import load_audio
    from opuslm.infer.sampling import Sampling
    from opuslm.infer.speech_lm import SpeechLM

    lm = SpeechLM.load(tiny_model_folder, sampling=Sampling(greedy_audio=True))
    audios = [load_audio(path) for path in corpus_wavs(small_corpus, 3)]
    batched = lm.transcribe(audios, max_tokens=6)
    assert batched == [lm.transcribe([a], max_tokens=6)[0] for a in audios]
    assert all(isinstance(text, str) for text in batched)
    assert lm.understand("ser", audios[:2], max_tokens=4) == [lm.understand("ser", [a], max_tokens=4)[0] for a in audios[:2]]
    wavs = lm.synthesize(["one two", "three"], [audios[0], None], max_seconds=0.4)
    rate, frame_rate = lm.tokenizers.acoustic.sample_rate, lm.frame_rate
    assert all(0 < len(w) <= 0.4 * rate + rate / frame_rate for w in wavs)
    [(forced, right)] = lm.speak_teacher_forced([("one two", audios[1])], [audios[0]])
    frames = lm.tokenize_audio(audios[1]).semantic.shape[0]
    assert right.shape == (lm.vocab.num_streams, frames) and right.dtype == bool
    assert len(forced) == frames * round(rate / frame_rate)
    continued = lm.continue_audio(audios[:1], max_seconds=0.2)[0]
    assert len(continued) <= 0.2 * rate + rate / frame_rate
    # every clip above was tokenized once: asked again, the model answers as a fresh one does, encoding nothing
    misses = lm.encoded_audio.misses
    again = lm.understand("sgc", audios, max_tokens=4)
    assert lm.encoded_audio.misses == misses and lm.encoded_audio.hits >= len(audios)
    assert again == SpeechLM.load(tiny_model_folder, sampling=Sampling(greedy_audio=True)).understand("sgc", audios, max_tokens=4)


def test_srwt_after_asr_times_the_words_asr_wrote_and_free_srwt_stays_available(tiny_model_folder, small_corpus):
    from opuslm.audio import load_audio
    from opuslm.data.manifest import read_manifest
    from opuslm.infer.outputs import emitted_words
    from opuslm.infer.sampling import Sampling
    from opuslm.infer.speech_lm import SpeechLM

    lm = SpeechLM.load(tiny_model_folder)
    audios = [load_audio(path) for path in corpus_wavs(small_corpus, 3)]
    # what the untrained model's ASR pass writes depends on the CPU's float kernels (on one Intel Xeon it wrote
    # no word for any of these clips), so the ASR pass here writes given transcripts: a sentence, nothing, a word
    sentence = read_manifest(small_corpus)[0].text
    written = [sentence, "", sentence.split()[-1]]
    lm._transcripts = lambda examples, clips, names, max_tokens: written[:len(clips)]
    transcripts = [emitted_words(text).split() for text in lm.transcribe(audios, max_tokens=8)]
    assert transcripts == [sentence.split(), [], sentence.split()[-1:]]
    for words, text, audio in zip(transcripts, lm.understand("srwt", audios, max_tokens=8), audios):
        read = lm.read("srwt", text, audio)
        assert (not read.problems and [w for w, _, _ in read.timestamps] == words) if words else text == ""
    free = SpeechLM.load(tiny_model_folder, sampling=Sampling(timestamps="free"))
    assert free.understand("srwt", audios, max_tokens=8) == [
        free.tokenizers.text.decode(free.vocab.to_text(g.frames[0]).tolist(), skip_special_tokens=True)
        for g in free._run([free._prompt("srwt", free.tokenize_audio(a, "", "x", 8), "text", 8, "x", "--max-tokens",
                                         instruct=True) for a in audios])]


def test_guarded_outputs_stay_in_their_format_and_equal_unguarded_ones_that_did(tiny_model_folder, small_corpus):
    from opuslm.audio import load_audio
    from opuslm.infer.beam import beam_search
    from opuslm.infer.sampling import Sampling
    from opuslm.infer.speech_lm import SpeechLM

    free, guarded = SpeechLM.load(tiny_model_folder), SpeechLM.load(tiny_model_folder, sampling=Sampling(guard=True))
    guarded.labels_taught = {"sgc_label": ["male", "female"]}  # as a trained model's folder records them
    audios = [load_audio(path) for path in corpus_wavs(small_corpus, 4)]
    changed = stopped = 0
    for task in ("asr", "sgc", "sgc_label", "sttc"):
        def run(lm, constraint=None, beam=1):
            prompts = [lm._prompt(task, lm.tokenize_audio(a, "", "x", 12), "text", 12, "x", "--max-tokens",
                                  instruct=task != "asr") for a in audios]
            for prompt in prompts:
                prompt.constraint = constraint
            return lm._run(prompts) if beam == 1 else beam_search(lm.model, prompts, beam)

        constraint = guarded._guarded(task)
        assert constraint is not None and free._guarded(task) is None
        kept_outputs = run(guarded, constraint)
        public = guarded.transcribe(audios, 12) if task == "asr" else guarded.understand(task, audios, max_tokens=12)
        assert public == [guarded.read(task, guarded._text(g), a).well_formed for g, a in zip(kept_outputs, audios)]
        for searched in run(guarded, constraint, beam=2):
            constraint.allowed(guarded.vocab.to_text(searched.frames[0]).tolist())  # beams keep the format too
        for own, kept, audio in zip(run(free), kept_outputs, audios):
            constraint.allowed(guarded.vocab.to_text(kept.frames[0]).tolist())  # raises where it left the format
            text, own_text = guarded._text(kept), free._text(own)
            if kept.stopped:
                assert not guarded.read(task, text, audio).problems, (task, text)
            if own.stopped and not free.read(task, own_text, audio).problems:
                assert text == own_text  # greedy: where every choice was in the format, the guard changed nothing
            changed, stopped = changed + (text != own_text), stopped + kept.stopped
    assert changed > 0  # the untrained model leaves its formats, and the guard kept it in them
    assert stopped >= len(audios)  # with known labels, a label-only output can only end: `<`, a label, `>`


def test_generate_command_writes_wavs_and_prints_text(tiny_model_folder, small_corpus, tmp_path, capsys):
    wavs = corpus_wavs(small_corpus, 2)
    assert main(["generate", "asr", *wavs, "--model", str(tiny_model_folder), "--max-tokens", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == wavs
    assert main(["generate", "tts", "hello", "world", "--model", str(tiny_model_folder), "--out", str(tmp_path),
                 "--max-seconds", "0.3", "--speaker", wavs[0]]) == 0
    written = sorted(tmp_path.glob("tts-*.wav"))
    assert [p.name for p in written] == ["tts-0000.wav", "tts-0001.wav"]
    samples, rate = sf.read(written[0])
    assert rate == 16000 and 0 < len(samples) and np.isfinite(samples).all()


def test_generate_beam_searches_text_and_refuses_it_for_audio(tiny_model_folder, small_corpus, tmp_path, capsys):
    from opuslm.audio import load_audio
    from opuslm.infer.sampling import Sampling
    from opuslm.infer.speech_lm import SpeechLM

    wavs = corpus_wavs(small_corpus, 3)
    lm = SpeechLM.load(tiny_model_folder, sampling=Sampling(beam=3))
    audios = [load_audio(path) for path in wavs]
    assert lm.transcribe(audios, max_tokens=5) == [lm.transcribe([a], max_tokens=5)[0] for a in audios]
    assert main(["generate", "asr", *wavs, "--model", str(tiny_model_folder), "--max-tokens", "5", "--beam", "3"]) == 0
    # no strip(): an untrained model's transcript can be empty, and its line then ends in the tab
    assert capsys.readouterr().out.splitlines() == [f"{w}\t{t}" for w, t in zip(wavs, lm.transcribe(audios, 5))]
    assert main(["generate", "tts", "hello", "--model", str(tiny_model_folder), "--out", str(tmp_path), "--beam", "2"]) == 2
    assert "--beam searches text; tts samples audio" in capsys.readouterr().err
    assert main(["generate", "asr", wavs[0], "--model", str(tiny_model_folder), "--beam", "0"]) == 2
    assert "must be at least 1, got 0" in capsys.readouterr().err


def test_joint_ctc_decodes_transcripts_only_batched_as_alone(tiny_model_folder, small_corpus, monkeypatch, capsys):
    from opuslm.audio import load_audio
    from opuslm.infer import speech_lm
    from opuslm.infer.ctc_prefix import JointCTC
    from opuslm.infer.sampling import Sampling

    wavs = corpus_wavs(small_corpus, 3)
    audios = [load_audio(path) for path in wavs]
    lm = speech_lm.SpeechLM.load(tiny_model_folder, sampling=Sampling(ctc_weight=0.5, ctc_layer="output"))
    joint = lm.transcribe(audios, max_tokens=5)
    assert joint == [lm.transcribe([a], max_tokens=5)[0] for a in audios]
    assert main(["generate", "asr", *wavs, "--model", str(tiny_model_folder), "--max-tokens", "5",
                 "--ctc-weight", "0.5", "--ctc-layer", "output"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{w}\t{t}" for w, t in zip(wavs, joint)]  # no strip(): an empty transcript ends its line in the tab
    searched = []
    real = speech_lm.beam_search
    monkeypatch.setattr(speech_lm, "beam_search", lambda *args: searched.append(args[3]) or real(*args))
    lm.understand("sgc", audios[:1], max_tokens=3)  # not a transcript: greedy, no CTC
    assert searched == []
    lm.understand("srwt", audios[:1], max_tokens=3)  # after ASR: the transcript is, the timed pass is not
    assert searched == [JointCTC(0.5, "output")]
    assert main(["generate", "asr", wavs[0], "--model", str(tiny_model_folder), "--ctc-weight", "0.5"]) == 2
    assert "--ctc-layer adapter needs the continuous input path" in capsys.readouterr().err


def test_generate_refuses_a_missing_file_and_a_moved_codec(tiny_model_folder, tmp_path, capsys):
    assert main(["generate", "asr", str(tmp_path / "nope.wav"), "--model", str(tiny_model_folder)]) == 2
    assert "nope.wav" in capsys.readouterr().err
    other = tmp_path / "codec"
    other.mkdir()
    (other / "codec.json").write_text("{}")
    assert main(["generate", "asr", "x.wav", "--model", str(tiny_model_folder), "--codec", str(other)]) == 2
    assert "is not the one" in capsys.readouterr().err


def test_export_text_gives_a_plain_llm_with_the_tokenizer(tiny_model_folder, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from opuslm.model.multistream import OpusLM

    assert main(["model", "export-text", "--model", str(tiny_model_folder), "--out", str(tmp_path / "text")]) == 0
    llm = AutoModelForCausalLM.from_pretrained(tmp_path / "text").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "text")
    model = OpusLM.from_pretrained(tiny_model_folder).eval()
    ids = torch.tensor([tokenizer("what is nine plus eight")["input_ids"]])
    frames = torch.zeros(1, model.vocab.num_streams, ids.shape[1], dtype=torch.long)
    frames[:, 0] = ids + model.vocab.text_offset
    with torch.no_grad():
        expected = model.stream_logits(model(frames).last_hidden_state, 0)[..., model.vocab.text_offset:]
        assert (llm(ids).logits - expected).abs().max() < 1e-5


def test_export_text_refuses_a_missing_or_foreign_tokenizer(tiny_model_folder, small_corpus, tmp_path, capsys):
    import shutil

    from opuslm.data.manifest import read_manifest
    from opuslm.errors import OpusLMError
    from opuslm.model.multistream import OpusLM
    from opuslm.tokenize.text import train_text_tokenizer

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_folder, bare, ignore=shutil.ignore_patterns("text_tokenizer"))
    assert main(["model", "export-text", "--model", str(bare), "--out", str(tmp_path / "a")]) == 2
    assert "has no text tokenizer (text_tokenizer/): pass its folder with --tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    train_text_tokenizer([u.text for u in read_manifest(small_corpus)], tmp_path / "larger", vocab_size=400)
    assert main(["model", "export-text", "--model", str(bare), "--out", str(tmp_path / "b"),
                 "--tokenizer", str(tmp_path / "larger")]) == 2
    assert "is not the one" in capsys.readouterr().err
    with pytest.raises(OpusLMError, match="has 400 tokens but the model 300 text rows"):
        OpusLM.from_pretrained(bare).export_text_lm(tmp_path / "c", tmp_path / "larger")
    assert not (tmp_path / "c").exists()
    assert main(["model", "export-text", "--model", str(bare), "--out", str(tmp_path / "d"),
                 "--tokenizer", str(tiny_model_folder / "text_tokenizer")]) == 0


def test_eval_suite_reports_present_sets_beside_published_numbers(tiny_model_folder, small_corpus, tmp_path, capsys):
    from opuslm.data.manifest import write_manifest

    present = tmp_path / "data" / "librispeech-test-clean"
    present.mkdir(parents=True)
    utts = read_test(small_corpus)
    for u in utts:
        u.audio = str(u.audio_path(small_corpus).resolve())
    write_manifest(present / "manifest.jsonl", utts)
    assert main(["eval", "--suite", "osum", "--model", str(tiny_model_folder), "--data-root", str(tmp_path / "data"),
                 "--out", str(tmp_path / "out"), "--limit", "2"]) == 0
    table = capsys.readouterr().out
    clean = next(line for line in table.splitlines() if "test-clean" in line)
    assert "not present" not in clean and "OSUM v1 2.55" in clean and "Qwen2-Audio 1.6" in clean
    ours = float(clean.split("|")[2])
    assert ours >= 0
    assert "| LibriSpeech test-other WER % | not present" in table
    assert (tmp_path / "out" / "suite-osum.md").read_text().strip() == table.strip()


def read_test(corpus):
    from opuslm.data.manifest import read_manifest

    return read_manifest(corpus, split="test")[:2]
