"""Corpus recipes on tiny fixtures written in each corpus's published layout."""

import numpy as np
import pytest
import soundfile as sf

from opuslm.cli.main import main
from opuslm.data.manifest import read_manifest


def tone(path, seconds=1.0, rate=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * 220 * t), rate, format=fmt)


def run(args):
    assert main(args) == 0


def manifest(out):
    return {u.id: u for u in read_manifest(out)}


def test_librispeech(tmp_path):
    root = tmp_path / "LibriSpeech"
    chapter = root / "test-clean" / "1089" / "134686"
    tone(chapter / "1089-134686-0000.flac", fmt="FLAC")
    tone(chapter / "1089-134686-0001.flac", fmt="FLAC")
    (chapter / "1089-134686.trans.txt").write_text("1089-134686-0000 HE HOPED THERE WOULD BE STEW\n"
                                                   "1089-134686-0001 STUFF IT INTO YOU\n1089-134686-0002 NO AUDIO\n")
    (root / "SPEAKERS.TXT").write_text("; ID  |SEX| SUBSET           |MINUTES| NAME\n"
                                       "1089  | M | test-clean       |  8.08 | Bill\n")
    run(["data", "recipe", "librispeech", str(root), "--subset", "test-clean", "--split", "test", "--out", str(tmp_path / "m")])
    utts = manifest(tmp_path / "m")
    assert set(utts) == {"1089-134686-0000", "1089-134686-0001"}
    assert utts["1089-134686-0000"].text == "he hoped there would be stew"
    assert utts["1089-134686-0000"].labels == {"gender": "male"} and utts["1089-134686-0000"].speaker == "1089"
    rejects = (tmp_path / "m" / "rejects.jsonl").read_text()
    assert "1089-134686-0002" in rejects  # listed, not dropped silently


def test_meld_maps_emotions(tmp_path):
    root, audio = tmp_path / "MELD.Raw", tmp_path / "wav"
    root.mkdir()
    (root / "test_sent_emo.csv").write_text(
        "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
        '1,"Oh my God, hes lost it.",Phoebe,joy,positive,0,0,4,7,"00:20:57,256","00:21:00,049"\n'
        "2,Why?,Monica,sadness,negative,0,1,4,7,\"00:21:00,049\",\"00:21:01,049\"\n"
        "3,Fine.,Ross,neutral,neutral,1,0,4,7,\"00:21:00,049\",\"00:21:01,049\"\n")
    tone(audio / "dia0_utt0.wav")
    tone(audio / "dia0_utt1.wav")
    run(["data", "recipe", "meld", str(root), "--split", "test", "--audio-dir", str(audio), "--out", str(tmp_path / "m")])
    utts = manifest(tmp_path / "m")
    assert utts["meld-test-dia0_utt0"].labels == {"emotion": "happy"} and utts["meld-test-dia0_utt1"].labels == {"emotion": "sad"}
    assert utts["meld-test-dia0_utt0"].text == "Oh my God, hes lost it."
    assert "meld-test-dia1_utt0" in (tmp_path / "m" / "rejects.jsonl").read_text()


def test_vocalsound_and_esc50_map_events(tmp_path):
    vs = tmp_path / "vocalsound"
    for name in ("f0003_0_cough", "f0003_1_laughter", "m0100_0_sniff", "m0200_0_sigh"):
        tone(vs / "audio_16k" / f"{name}.wav")
    (vs / "meta").mkdir()
    (vs / "meta" / "te_meta.csv").write_text("f0003,female\nm0100,male\n")
    run(["data", "recipe", "vocalsound", str(vs), "--split", "test", "--out", str(tmp_path / "v")])
    utts = manifest(tmp_path / "v")
    assert {k: u.labels["event"] for k, u in utts.items()} == {
        "vocalsound-f0003_0_cough": "cough", "vocalsound-f0003_1_laughter": "laugh", "vocalsound-m0100_0_sniff": "other"}
    assert utts["vocalsound-m0100_0_sniff"].labels["gender"] == "male"

    esc = tmp_path / "ESC-50-master"
    (esc / "meta").mkdir(parents=True)
    (esc / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n"
                                            "5-1-A-26.wav,5,26,laughing,False,1,A\n5-2-A-0.wav,5,0,dog,True,2,A\n"
                                            "1-3-A-24.wav,1,24,coughing,False,3,A\n")
    for name in ("5-1-A-26", "5-2-A-0", "1-3-A-24"):
        tone(esc / "audio" / f"{name}.wav", rate=44100)
    run(["data", "recipe", "esc50", str(esc), "--split", "test", "--out", str(tmp_path / "e")])
    assert {k: u.labels["event"] for k, u in manifest(tmp_path / "e").items()} == {"esc50-5-1-A-26": "laugh", "esc50-5-2-A-0": "other"}


def test_common_voice_age_and_gender(tmp_path):
    root = tmp_path / "cv-corpus" / "en"
    (root / "clips").mkdir(parents=True)
    (root / "test.tsv").write_text(
        "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
        "abc123\tcommon_voice_en_1.mp3\tHello there.\t2\t0\tteens\tmale_masculine\t\ten\t\n"
        "def456\tcommon_voice_en_2.mp3\tGood night.\t2\t0\tsixties\tfemale\t\ten\t\n"
        "ghi789\tcommon_voice_en_3.mp3\tNo metadata.\t2\t0\t\t\t\ten\t\n")
    for n in (1, 2, 3):
        tone(root / "clips" / f"common_voice_en_{n}.mp3", fmt="MP3")
    run(["data", "recipe", "common-voice", str(root), "--split", "test", "--out", str(tmp_path / "c")])
    utts = manifest(tmp_path / "c")
    assert utts["cv-common_voice_en_1"].labels == {"age": "child", "gender": "male"}
    assert utts["cv-common_voice_en_2"].labels == {"age": "old", "gender": "female"}
    assert utts["cv-common_voice_en_3"].labels == {} and utts["cv-common_voice_en_3"].text == "No metadata."


def test_aishell1(tmp_path):
    root = tmp_path / "aishell"
    tone(root / "data_aishell" / "wav" / "test" / "S0764" / "BAC009S0764W0121.wav")
    tone(root / "data_aishell" / "wav" / "test" / "S0764" / "BAC009S0764W0122.wav")
    (root / "data_aishell" / "transcript").mkdir(parents=True)
    (root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt").write_text("BAC009S0764W0121 甚至 出现 交易 几乎 停滞 的 情况\n")
    (root / "resource_aishell").mkdir()
    (root / "resource_aishell" / "speaker.info").write_text("0764 F\n")
    run(["data", "recipe", "aishell1", str(root), "--split", "test", "--out", str(tmp_path / "a")])
    utts = manifest(tmp_path / "a")
    assert utts["BAC009S0764W0121"].text == "甚至出现交易几乎停滞的情况" and utts["BAC009S0764W0121"].labels == {"gender": "female"}
    assert "no transcript" in (tmp_path / "a" / "rejects.jsonl").read_text()


def test_text_corpus_from_text_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "plain.txt").write_text("first  document\n\nsecond one\n")
    run(["data", "text", str(tmp_path / "plain.txt"), "--out", str(tmp_path / "a.txt")])
    assert (tmp_path / "a.txt").read_text() == "first document\nsecond one\n"
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"text": ["alpha beta", None, "gamma"]}), tmp_path / "pq" / "part-0.parquet")
    run(["data", "text", str(tmp_path / "pq"), "--out", str(tmp_path / "b.txt")])
    assert (tmp_path / "b.txt").read_text() == "alpha beta\ngamma\n"
    with pytest.raises(SystemExit):
        main(["data", "recipe", "librispeech"])  # argparse: root and --split are required
