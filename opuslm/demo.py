"""The main job on the embedded default, as a library pipeline: `run_demo(DemoConfig(...))`.

One function per step, each taking the config and the run's folders (`DemoPaths`) and returning the
line it reports. A step writes under `out` and is skipped when its output is already complete, so a
re-run resumes. `opuslm demo` is this module behind argparse; its options are `DemoConfig`'s fields.

    corpus/  text/  tokenizers/{text,semantic,codec}/  tokens/  vocab.json
    text_llm_schedule.yaml  text_llm/  llm/          the small text LLM (unless `llm` is given)
    replay/                                          the LLM's own text (a schedule with a `replay` dataset)
    schedule.yaml  run/{pretrain,anneal,instruct}/   the stages of stages/demo.yaml
    judge/  eval/                                    the CTC judge (with judge="ctc"), the report
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from opuslm.errors import OpusLMError
from opuslm.infer.sampling import CTC_LAYERS
from opuslm.json_files import write_json

ALIGNER_CLIPS = 1000  # train clips the word aligner learns from (each holds a few dozen labelled frames)
STAGE_FILES = Path(__file__).resolve().parents[1] / "stages"  # the checkout's stage YAMLs


def _option(default, help: str, **argparse_options):
    """A config field that is also a command-line option: `help` and any argparse settings ride along."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help, **argparse_options})
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass
class DemoConfig:
    out: Path = _option(Path("demo_out"), "where every step writes")
    hours: float = _option(2.0, "size of the synthetic corpus in hours")
    world_share: float = _option(0.0, "share of the synthetic corpus's statements that name a topic of the wider world "
                                 "(countries, languages, planets ...: the words of the factual questions, never their "
                                 "facts; docs/results.md measures 0.3 with the SmolLM2 recipe)")
    seed: int = _option(0, "seed for every step")
    workers: int = _option(lambda: min(4, os.cpu_count() or 1), "parallel processes")
    codec_frames: int = _option(30000, "40 ms frames of training audio the mel-pitch codec's codebooks are fit on")
    vocoder: Path | None = _option(None, "a HiFi-GAN folder (`opuslm assets import hifigan-universal`) that decodes the "
                                   "mel-pitch codec instead of its harmonic synthesiser")
    steps_scale: float = _option(1.0, "multiply every stage's steps (stages/demo.yaml) by this; 0.01 for a smoke run")
    text_lines: int = _option(100000, "lines of grammar text for the text LLM")
    llm_steps: int = _option(120, "training steps of the text LLM (its held-out loss is flat from step 100 on the "
                             "grammar's text)")
    aligner_steps: int = _option(800, "training steps of the word aligner that places SRWT's words in the eval (about a "
                                 "minute on 2 cores)")
    judge_steps: int = _option(500, "training steps of the CTC judge, with --judge ctc")
    llm: Path | None = _option(None, "a local HF LLM folder instead of training the small text LLM")
    schedule: str = _option("demo.yaml", "the stage schedule: a file in stages/ or a path (stages/demo_smollm2.yaml "
                            "is sized for --llm SmolLM2-135M from `opuslm assets import smollm2-135m`)")
    judge: str = _option("embedded", "the TTS judge: 'embedded' (Whisper tiny.en), 'ctc' (train the small CTC judge "
                         "on the corpus), or a local Whisper / HF ASR folder")
    semantic_features: str = _option("whisper", "semantic tokenizer features when no --ssl is given",
                                     choices=("whisper", "cepstral"))
    whisper: str | None = _option(None, "a local Whisper folder (CTranslate2 or transformers) for the semantic "
                                  "features; None: the embedded tiny.en")
    semantic_k: int = _option(256, "k-means clusters of the semantic tokenizer")
    codec: Path | None = _option(None, "a codec folder (HF EnCodec/DAC/Mimi) instead of training the small one")
    ssl: Path | None = _option(None, "a local HF SSL model (HuBERT, WavLM) for the semantic features")
    ssl_layer: int = _option(6, "the SSL layer to cluster")
    eval_tasks: str | None = _option(None, "comma-separated tasks the last step evaluates (default: every task "
                                     "`opuslm eval` scores)")
    ctc_weight: float = _option(0.0, "ASR in the last step's eval: the CTC prefix score's weight in joint decoding (0: the "
                                "model's own greedy transcripts; see `opuslm eval --help`)")
    ctc_layer: str = _option("adapter", "ASR with --ctc-weight: whose CTC posteriors score the transcripts, the continuous "
                             "input path's adapter (a listen stage trained it) or the decoder's output at the audio",
                             choices=CTC_LAYERS)
    corpus: Path | None = _option(None, "a corpus folder (manifest.jsonl, from `opuslm data import`) instead of the "
                                  "synthetic one")
    replay_lines: int = _option(1000, "samples of the LLM's own text to replay, when the schedule names a `replay` "
                                "dataset (stages/demo_smollm2.yaml does)")
    heard_features: bool = _option(True, "the continuous input path: tokenize with the semantic encoder's features "
                                   "and let the model add them, through an adapter, at the audio it listens to (tasks "
                                   "about the voice read the ids only); --no-heard-features: ids only (use a new --out: "
                                   "the shards change)")
    heard_dropout: float = _option(0.0, "with the continuous input path: the share of training examples that listen "
                                   "without the features (modality dropout)")


@dataclass(frozen=True)
class DemoPaths:
    """Where each step of a demo run reads and writes."""

    out: Path
    corpus: Path
    text: Path  # what text_lm sources read: the grammar's text corpus, or a given corpus's own transcripts
    tokenizers: Path
    aligner: Path  # the word aligner SRWT's eval places words with
    tokens: Path
    vocab: Path
    llm: Path
    replay: Path
    text_llm_run: Path
    run: Path
    judge: Path
    eval: Path

    @classmethod
    def under(cls, out: Path, given_corpus: Path | None = None) -> DemoPaths:
        out = Path(out)
        return cls(out=out, corpus=given_corpus or out / "corpus", text=out / "tokens" if given_corpus else out / "text",
                   tokenizers=out / "tokenizers", aligner=out / "tokenizers" / "aligner", tokens=out / "tokens",
                   vocab=out / "vocab.json", llm=out / "llm",
                   replay=out / "replay", text_llm_run=out / "text_llm", run=out / "run", judge=out / "judge", eval=out / "eval")


def _done(folder: Path, marker: str) -> bool:
    return (folder / marker).is_file()


def _stage_file(name: str) -> Path:
    if not (STAGE_FILES / name).is_file():
        raise OpusLMError(f"the stage files are not at {STAGE_FILES}; run the demo from a checkout (`make demo`)")
    return STAGE_FILES / name


def _demo_schedule(config: DemoConfig) -> dict:
    import yaml

    path = Path(config.schedule)
    return yaml.safe_load((path if path.is_file() else _stage_file(config.schedule)).read_text())


def _listening_parts(config: DemoConfig) -> list[str]:
    """What in the demo's schedule reads the continuous input path: `init.heard_mix`, and stages whose
    objective is `heard_ctc` (their file with the schedule's overrides)."""
    from opuslm.config_files import read_yaml
    from opuslm.train.config import merge

    schedule = _demo_schedule(config)
    parts = [f"init.heard_mix: {schedule['init']['heard_mix']}"] if "heard_mix" in schedule["init"] else []
    for entry in schedule["stages"]:
        stage = merge(read_yaml(_stage_file(entry["file"])), entry.get("overrides") or {})
        if stage.get("objective") == "heard_ctc":
            parts.append(f"stage {stage['name']} (objective: heard_ctc)")
    return parts


def _write_schedule(path: Path, schedule: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(schedule, sort_keys=False))
    return path


def tokenizer_paths(config: DemoConfig, paths: DemoPaths):
    from opuslm.tokenize.pipeline import TokenizerPaths

    root = paths.tokenizers
    return TokenizerPaths(config.llm or root / "text", root / "semantic", config.codec or root / "codec")


# ---- the steps ----
def synthesise_corpus(config: DemoConfig, paths: DemoPaths) -> str:
    from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus

    if config.corpus:
        return f"using the given corpus {config.corpus}"
    synth = SynthConfig(hours=config.hours, seed=config.seed, world_share=config.world_share)
    summary = synthesize_corpus(paths.corpus, synth, workers=config.workers)
    total = sum(c["utterances"] for c in summary["counts"].values())
    return f"{total} utterances, {sum(c['seconds'] for c in summary['counts'].values()) / 60:.1f} min -> {paths.corpus}"


def synthesise_text(config: DemoConfig, paths: DemoPaths) -> str:
    from opuslm.data.synth.text import describe, synthesize_text

    if config.corpus:
        return "a given corpus: text_lm sources read its transcripts"
    return f"{describe(synthesize_text(paths.text, config.text_lines, config.seed, progress=False))} -> {paths.text}"


def _semantic_features(config: DemoConfig):
    from opuslm.tokenize.features import CepstralFeatures, SSLFeatures, WhisperFeatures

    if config.ssl:
        return SSLFeatures(config.ssl, config.ssl_layer)
    return CepstralFeatures() if config.semantic_features == "cepstral" else WhisperFeatures(config.whisper)


def train_tokenizers(config: DemoConfig, paths: DemoPaths) -> str:
    """Text BPE, k-means on Whisper-encoder (or cepstral, or `ssl`) features and the mel-pitch codec,
    with the codec's report on dev clips (`tokenizers/codec.report/`); each skipped when its folder is
    complete or a real asset (`llm`, `codec`) replaces it."""
    from opuslm.data.manifest import read_manifest
    from opuslm.eval.codec_report import codec_report, summary_line
    from opuslm.tokenize.mel_pitch import MelPitchConfig, fit_mel_pitch_codec
    from opuslm.tokenize.semantic import train_semantic_tokenizer
    from opuslm.tokenize.text import corpus_texts, train_text_tokenizer

    corpus, tokenizers = paths.corpus, tokenizer_paths(config, paths)
    utts = read_manifest(corpus)
    if not config.llm and not _done(tokenizers.text, "tokenizer.json"):
        # the grammar's text corpus too, as a real LLM's tokenizer is trained on far more text than transcripts
        grammar = [] if config.corpus else (paths.text / "train.txt").read_text(encoding="utf-8").splitlines()
        train_text_tokenizer(corpus_texts(utts) + grammar, tokenizers.text, 1024)
    need_semantic = not _done(tokenizers.semantic, "semantic.json")
    need_codec = not config.codec and not _done(tokenizers.acoustic, "codec.json")
    if need_semantic or need_codec:
        train = [u.load_audio(corpus, target_rate=16000)[0] for u in utts if u.split == "train"]
    if need_semantic:
        train_semantic_tokenizer(((w, 16000) for w in train), _semantic_features(config), k=config.semantic_k,
                                 seed=config.seed).save(tokenizers.semantic)
    if need_codec:
        staging = paths.tokenizers / "codec.tmp"
        fit_mel_pitch_codec(train, staging, MelPitchConfig(seed=config.seed), max_frames=config.codec_frames,
                            vocoder=config.vocoder)
        staging.rename(tokenizers.acoustic)
    report = paths.tokenizers / "codec.report"
    if not (report / "report.json").is_file():
        from opuslm.eval.judge import WhisperJudge
        from opuslm.tokenize.acoustic import load_acoustic_tokenizer

        dev = [(u.id, u.load_audio(corpus, target_rate=16000)[0], u.text) for u in utts if u.split == "dev"][:50]
        codec_report(load_acoustic_tokenizer(tokenizers.acoustic), dev, WhisperJudge(), report, workers=config.workers)
    aligned = train_aligner(config, paths, utts)
    figures = json.loads((report / "report.json").read_text())
    codec = f"the given codec {config.codec}" if config.codec else \
        f"the mel-pitch codec{' with the HiFi-GAN ' + str(config.vocoder) if config.vocoder else ''}"
    codec += f" ({summary_line(figures)})"
    text = f"the LLM's tokenizer ({config.llm})" if config.llm else "text BPE 1024"
    semantic = json.loads((tokenizers.semantic / "semantic.json").read_text())  # not the encoder: a line needs no model
    return (f"{text}, semantic K={semantic['k']} on {semantic['features']['kind']} features, {codec}; {aligned} "
            f"-> {paths.tokenizers}")


def train_aligner(config: DemoConfig, paths: DemoPaths, utts) -> str:
    """The word aligner on the semantic tokenizer's features, which SRWT's eval places words with
    (`opuslm.infer.word_aligner`); none for a corpus without word times."""
    from transformers import AutoTokenizer

    from opuslm.infer.word_aligner import WordAligner, fit_word_aligner, timed_clips

    folder = paths.aligner
    if not _done(folder, "aligner.json"):
        if not any(u.words for u in utts if u.split == "train"):
            return "no word aligner (the corpus has no word times; SRWT's times are the model's own)"
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_paths(config, paths).text))
        staging = folder.with_name("aligner.tmp")
        fit_word_aligner(timed_clips(paths.corpus, "train", ALIGNER_CLIPS), timed_clips(paths.corpus, "dev", 50),
                         _semantic_features(config), tokenizer, steps=config.aligner_steps, seed=config.seed
                         ).save(staging)
        staging.rename(folder)
    return f"word aligner: {WordAligner.load(folder).summary()}"


def tokenize(config: DemoConfig, paths: DemoPaths) -> str:
    from opuslm.tokenize.pipeline import tokenize_corpus

    summary = tokenize_corpus(paths.corpus, paths.tokens, tokenizer_paths(config, paths), workers=config.workers,
                              heard_features=config.heard_features)
    return f"seen {summary['seen']} = accepted {summary['accepted']} + rejected {summary['rejected']} -> {paths.tokens}"


def joint_vocab(config: DemoConfig, paths: DemoPaths) -> str:
    from opuslm.vocab import JointVocab

    vocab = JointVocab.from_tokens(paths.tokens)
    path = vocab.save(paths.vocab)
    return f"{vocab.size} ids ({vocab.summary()}), hash {vocab.hash} -> {path}; see `opuslm vocab show --vocab {path}`"


def train_text_llm(config: DemoConfig, paths: DemoPaths) -> str:
    """A small Llama of the demo schedule's preset, trained from scratch on the text corpus and
    exported as a plain HF folder."""
    from opuslm.model.multistream import TOKENIZER_FOLDERS, OpusLM
    from opuslm.train.stages import run_schedule, stage_model, stage_summary

    if config.llm:
        return f"using the given LLM {config.llm}"
    preset = _demo_schedule(config)["init"].get("preset")
    if preset is None:
        raise OpusLMError(f"the schedule {config.schedule} starts from a given LLM (its init has no preset): pass --llm DIR")
    if not (paths.llm / "config.json").is_file():
        schedule = _write_schedule(paths.out / "text_llm_schedule.yaml", {
            "out": str(paths.text_llm_run.resolve()), "tokens": "speech",
            "datasets": {"speech": str(paths.tokens.resolve()), "text": str(paths.text.resolve())},
            "init": {"preset": preset, "seed": config.seed},
            "stages": [{"file": str(_stage_file("text_llm.yaml")), "overrides": {
                "steps": config.llm_steps, "lr": {"warmup": min(_warmup(_stage_file("text_llm.yaml")), config.llm_steps)}}}]})
        run_schedule(schedule, progress=True)
        trained, staging = stage_model(paths.text_llm_run, "text_llm"), paths.llm.with_name("llm.tmp")
        OpusLM.from_pretrained(trained).export_text_lm(staging, trained / TOKENIZER_FOLDERS["text"])
        staging.rename(paths.llm)
    summary = stage_summary(paths.text_llm_run, "text_llm")
    return f"text LLM (Llama, preset {preset}): validation loss {summary['final_validation'].get('text_lm', float('nan')):.3f} -> {paths.llm}"


def train_stages(config: DemoConfig, paths: DemoPaths) -> str:
    """The schedule's stages (stages/demo.yaml: pretrain -> anneal -> instruct) from the text LLM."""
    from opuslm.train.stages import run_schedule

    schedule = _demo_schedule(config)
    tokens, text = str(paths.tokens.resolve()), str(paths.text.resolve())
    schedule["out"] = str(paths.run.resolve())
    given = {"text": text, "replay": str(paths.replay.resolve())}
    schedule["datasets"] = {name: given.get(name, tokens) for name in schedule["datasets"]}
    kept = {key: value for key, value in schedule["init"].items() if key != "preset"}  # codebook_row_scale
    schedule["init"] = {**kept, "llm": str(Path(config.llm or paths.llm).resolve()), "seed": config.seed}
    if config.heard_features:
        schedule["init"]["heard_features"] = True
    for entry in schedule["stages"]:
        entry["file"] = str(_stage_file(entry["file"]))
        if config.heard_features and config.heard_dropout:
            data = entry.setdefault("overrides", {}).setdefault("data", {})
            data["heard_dropout"] = config.heard_dropout
    summaries = run_schedule(_write_schedule(paths.out / "schedule.yaml", schedule), progress=True,
                             steps_scale=config.steps_scale)
    return "; ".join(f"{s['stage']} {s['steps']} steps, loss {s['first_loss']:.2f} -> {s['final_loss']:.2f}"
                     for s in summaries) + f" -> {paths.run}"


def write_replay_text(config: DemoConfig, paths: DemoPaths) -> str:
    """The LLM's own samples (`opuslm data replay-text`), when the schedule names a `replay` dataset."""
    from opuslm.data.synth.replay import describe, replay_text

    if "replay" not in _demo_schedule(config)["datasets"]:
        return "the schedule replays none of the LLM's own text (no `replay` dataset)"
    summary = replay_text(Path(config.llm or paths.llm), paths.replay, config.replay_lines, config.seed, progress=False)
    return f"{describe(summary)} -> {paths.replay}"


def _warmup(stage_file: Path) -> int:
    """A stage file's LR warmup (a shorter text LLM run keeps at most all of its steps as warmup)."""
    from opuslm.config_files import read_yaml

    return int(read_yaml(stage_file).get("lr", {}).get("warmup", 0))


def _judge_folder(config: DemoConfig, paths: DemoPaths):
    """What `load_judge` takes: the embedded Whisper, the CTC judge the demo trains, or a given folder."""
    return paths.judge if config.judge == "ctc" else config.judge


def train_judge(config: DemoConfig, paths: DemoPaths) -> str:
    from opuslm.eval.judge import judge_data, train_judge as train_ctc_judge

    if config.judge == "embedded":
        return "the embedded Whisper tiny.en (CTranslate2, greedy) judges TTS; nothing to train"
    if config.judge != "ctc":
        return f"using the given judge {config.judge}"
    if not (paths.judge / "judge.json").is_file():
        staging = paths.judge.with_name("judge.tmp")
        train_ctc_judge(judge_data(paths.corpus, "train"), judge_data(paths.corpus, "dev"), staging,
                        steps=config.judge_steps, seed=config.seed)
        staging.rename(paths.judge)
    info = json.loads((paths.judge / "judge.json").read_text())
    return f"CTC judge on real audio, dev WER {info['dev_wer']:.3f} -> {paths.judge}"


def aligned_timestamps(paths: DemoPaths) -> dict:
    """The eval's SRWT times: placed by the demo's word aligner where it trained one."""
    return {"timestamps": "aligned", "aligner": str(paths.aligner)} if _done(paths.aligner, "aligner.json") else {}


def evaluate(config: DemoConfig, paths: DemoPaths) -> str:
    from opuslm.eval.judge import load_judge
    from opuslm.eval.report import table
    from opuslm.eval.runner import EVAL_TASKS, Evaluation, check_eval_tasks
    from opuslm.infer.sampling import Sampling
    from opuslm.train.stages import stage_model

    if not (paths.eval / "results.json").is_file():
        final_stage = json.loads((paths.run / "summary.json").read_text())[-1]["stage"]
        evaluation = Evaluation(stage_model(paths.run, final_stage), paths.corpus, paths.eval,
                                load_judge(_judge_folder(config, paths)),
                                sampling=Sampling(seed=0, ctc_weight=config.ctc_weight, ctc_layer=config.ctc_layer,
                                                  **aligned_timestamps(paths)))
        tasks = [t.strip() for t in config.eval_tasks.split(",") if t.strip()] if config.eval_tasks else list(EVAL_TASKS)
        check_eval_tasks(tasks)
        evaluation.run(tasks, Path(config.llm or paths.llm), paths.run)
    results = json.loads((paths.eval / "results.json").read_text())
    return "\n" + table(results["metrics"]) + f"\n    report: {paths.eval / 'report.md'}"


STEPS: tuple[tuple[str, Callable[[DemoConfig, DemoPaths], str]], ...] = (
    ("synthesise the eSpeak corpus", synthesise_corpus),
    ("write the text corpus for the text LLM", synthesise_text),
    ("train the text, semantic and acoustic tokenizers", train_tokenizers),
    ("tokenize the corpus into shards", tokenize),
    ("lay out the joint vocabulary", joint_vocab),
    ("train the text LLM", train_text_llm),
    ("sample the LLM's own text to replay", write_replay_text),
    ("train the schedule's stages (pretrain -> anneal -> instruct; the SmolLM2 recipe listens first)", train_stages),
    ("the TTS judge (embedded Whisper, or the CTC judge trained on real audio)", train_judge),
    ("evaluate every task", evaluate),
)


def _print(line: str) -> None:
    print(line, flush=True)


def minutes(seconds: float) -> str:
    """`m:ss`, as the README quotes the demo's times."""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def run_demo(config: DemoConfig, report: Callable[[str], None] = _print) -> DemoPaths:
    """Every step in order, each reported as `[n/N] title`, its result and its wall time (a step resumed
    from a complete folder takes seconds); the times also go to `timings.json` under the output folder,
    so a user sees where a run's minutes went. Returns the folders."""
    from opuslm.backends import register_backends
    from opuslm.infer.sampling import Sampling

    register_backends()
    if config.heard_dropout and not config.heard_features:  # before any step: it would be ignored
        raise OpusLMError(f"--heard-dropout {config.heard_dropout} drops heard features, and --no-heard-features "
                          "turns them off: drop one of the two")
    if config.vocoder and config.codec:  # the vocoder decodes the codec the demo fits, which --codec replaces
        raise OpusLMError(f"--vocoder {config.vocoder} decodes the demo's mel-pitch codec, and --codec {config.codec} "
                          "replaces it: drop one of the two")
    Sampling(ctc_weight=config.ctc_weight, ctc_layer=config.ctc_layer)  # a bad --ctc-weight, before hours of training
    if config.ctc_weight and config.ctc_layer == "adapter" and not config.heard_features:
        raise OpusLMError("--ctc-layer adapter decodes with the continuous input path's adapter, which "
                          "--no-heard-features turns off: pass --ctc-layer output, or drop --no-heard-features")
    if not config.heard_features and (parts := _listening_parts(config)):
        raise OpusLMError(f"the schedule {config.schedule} listens through the continuous input path "
                          f"({', '.join(parts)}), which --no-heard-features turns off: drop --no-heard-features, "
                          "or pass a --schedule without them")
    paths = DemoPaths.under(config.out, config.corpus)
    config.out.mkdir(parents=True, exist_ok=True)
    timings, started = [], time.perf_counter()
    for number, (title, step) in enumerate(STEPS, 1):
        report(f"[{number}/{len(STEPS)}] {title}")
        step_started = time.perf_counter()
        result = step(config, paths)
        timings.append({"step": title, "seconds": round(time.perf_counter() - step_started, 1)})
        report(f"    {result}")
        report(f"    took {minutes(timings[-1]['seconds'])}")
    total = round(time.perf_counter() - started, 1)
    write_json(config.out / "timings.json", {"steps": timings, "total_seconds": total}, indent=1)
    report(f"demo finished in {minutes(total)}; everything is in {config.out} (step times: "
           f"{config.out / 'timings.json'})")
    return paths
