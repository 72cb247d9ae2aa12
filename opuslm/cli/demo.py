"""`opuslm demo`: the main job on the embedded default, as a sequence of resumable steps.

Each step writes its output under --out and is skipped when that output is already complete, so a
re-run resumes. Later stages of the pipeline add their steps to STEPS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _corpus(args) -> Path:
    return args.corpus or args.out / "corpus"


def _tokenizer_paths(args):
    from opuslm.tokenize.pipeline import TokenizerPaths

    root = args.out / "tokenizers"
    return TokenizerPaths(args.llm or root / "text", root / "semantic", args.codec or root / "codec")


def _synthesise_corpus(args) -> str:
    from opuslm.data.synth.corpus import SynthConfig, synthesize_corpus

    if args.corpus:
        return f"using the given corpus {args.corpus}"
    corpus = args.out / "corpus"
    summary = synthesize_corpus(corpus, SynthConfig(hours=args.hours, seed=args.seed), workers=args.workers)
    total = sum(c["utterances"] for c in summary["counts"].values())
    return f"{total} utterances, {sum(c['seconds'] for c in summary['counts'].values()) / 60:.1f} min -> {corpus}"


def _text_dataset(args) -> Path:
    """What text_lm sources read: the grammar's text corpus, or a given corpus's own transcripts."""
    return args.out / "tokens" if args.corpus else args.out / "text"


def _synthesise_text(args) -> str:
    from opuslm.data.synth.text import describe, synthesize_text

    if args.corpus:
        return "a given corpus: text_lm sources read its transcripts"
    return f"{describe(synthesize_text(args.out / 'text', args.text_lines, args.seed, progress=False))} -> {args.out / 'text'}"


def _done(folder: Path, marker: str) -> bool:
    return (folder / marker).is_file()


def _semantic_features(args):
    from opuslm.tokenize.features import CepstralFeatures, SSLFeatures, WhisperFeatures

    if args.ssl:
        return SSLFeatures(args.ssl, args.ssl_layer)
    return CepstralFeatures() if args.semantic_features == "cepstral" else WhisperFeatures(args.whisper)


def _train_tokenizers(args) -> str:
    """Text BPE, k-means on Whisper-encoder (or cepstral, or --ssl) features and the small codec; each
    skipped when its folder is complete or a real asset (--llm, --codec) replaces it."""
    from opuslm.data.manifest import read_manifest
    from opuslm.tokenize.acoustic import SmallCodecTokenizer
    from opuslm.tokenize.codec_training import train_and_measure
    from opuslm.tokenize.semantic import train_semantic_tokenizer
    from opuslm.tokenize.text import corpus_texts, train_text_tokenizer

    corpus, root, paths = _corpus(args), args.out / "tokenizers", _tokenizer_paths(args)
    utts = read_manifest(corpus)
    if not args.llm and not _done(paths.text, "tokenizer.json"):
        # the grammar's text corpus too, as a real LLM's tokenizer is trained on far more text than transcripts
        grammar = [] if args.corpus else (args.out / "text" / "train.txt").read_text(encoding="utf-8").splitlines()
        train_text_tokenizer(corpus_texts(utts) + grammar, paths.text, 1024)
    need_semantic = not _done(paths.semantic, "semantic.json")
    need_codec = not args.codec and not _done(paths.acoustic, "codec.json")
    if need_semantic or need_codec:
        train = [u.load_audio(corpus, target_rate=16000)[0] for u in utts if u.split == "train"]
    if need_semantic:
        train_semantic_tokenizer(((w, 16000) for w in train), _semantic_features(args), k=args.semantic_k,
                                 seed=args.seed).save(paths.semantic)
    if need_codec:
        dev = [u.load_audio(corpus, target_rate=16000)[0] for u in utts if u.split == "dev"][:50]
        train_and_measure(train, dev, root / "codec.tmp", steps=args.codec_steps, seed=args.seed)
        (root / "codec.tmp").rename(paths.acoustic)
    codec = f"the given codec {args.codec}" if args.codec else \
        f"codec dev mel distance {SmallCodecTokenizer(paths.acoustic).metrics['mel_distance']}"
    text = f"the LLM's tokenizer ({args.llm})" if args.llm else "text BPE 1024"
    semantic = json.loads((paths.semantic / "semantic.json").read_text())  # not the encoder: a line needs no model
    return f"{text}, semantic K={semantic['k']} on {semantic['features']['kind']} features, {codec} -> {root}"


def _tokenize(args) -> str:
    from opuslm.tokenize.pipeline import tokenize_corpus

    summary = tokenize_corpus(_corpus(args), args.out / "tokens", _tokenizer_paths(args), workers=args.workers)
    return f"seen {summary['seen']} = accepted {summary['accepted']} + rejected {summary['rejected']} -> {args.out / 'tokens'}"


def _joint_vocab(args) -> str:
    from opuslm.vocab import JointVocab

    vocab = JointVocab.from_tokens(args.out / "tokens")
    path = vocab.save(args.out / "vocab.json")
    return f"{vocab.size} ids ({vocab.summary()}), hash {vocab.hash} -> {path}; see `opuslm vocab show --vocab {path}`"


def _stage_files() -> Path:
    folder = Path(__file__).resolve().parents[2] / "stages"
    if not (folder / "demo.yaml").is_file():
        from opuslm.errors import OpusLMError

        raise OpusLMError(f"the stage files are not at {folder}; run the demo from a checkout (`make demo`)")
    return folder


def _write_schedule(path: Path, schedule: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(schedule, sort_keys=False))
    return path


def _demo_schedule() -> dict:
    import yaml

    return yaml.safe_load((_stage_files() / "demo.yaml").read_text())


def _train_text_llm(args) -> str:
    """A small Llama of the demo schedule's preset, trained from scratch on the text corpus and
    exported as a plain HF folder."""
    from opuslm.model.multistream import TOKENIZER_FOLDERS, OpusLM
    from opuslm.train.stages import run_schedule

    llm = args.out / "llm"
    if args.llm:
        return f"using the given LLM {args.llm}"
    preset = _demo_schedule()["init"]["preset"]
    if not (llm / "config.json").is_file():
        tokens = str((args.out / "tokens").resolve())
        schedule = _write_schedule(args.out / "text_llm_schedule.yaml", {
            "out": str((args.out / "text_llm").resolve()), "tokens": "speech",
            "datasets": {"speech": tokens, "text": str(_text_dataset(args).resolve())},
            "init": {"preset": preset, "seed": args.seed},
            "stages": [{"file": str(_stage_files() / "text_llm.yaml"), "overrides": {"steps": args.llm_steps}}]})
        run_schedule(schedule, progress=True)
        trained = args.out / "text_llm" / "text_llm" / "model"
        OpusLM.from_pretrained(trained).export_text_lm(llm.with_name("llm.tmp"), trained / TOKENIZER_FOLDERS["text"])
        llm.with_name("llm.tmp").rename(llm)
    summary = json.loads((args.out / "text_llm" / "text_llm" / "summary.json").read_text())
    return f"text LLM (Llama, preset {preset}): validation loss {summary['final_validation'].get('text_lm', float('nan')):.3f} -> {llm}"


def _train_stages(args) -> str:
    """Pretrain -> anneal -> instruct (stages/demo.yaml) from the text LLM."""
    from opuslm.train.stages import run_schedule

    schedule = _demo_schedule()
    tokens = str((args.out / "tokens").resolve())
    schedule["out"] = str((args.out / "run").resolve())
    text = str(_text_dataset(args).resolve())
    schedule["datasets"] = {name: text if name == "text" else tokens for name in schedule["datasets"]}
    kept = {key: value for key, value in schedule["init"].items() if key != "preset"}  # codebook_row_scale
    schedule["init"] = {**kept, "llm": str(Path(args.llm or args.out / "llm").resolve()), "seed": args.seed}
    for entry in schedule["stages"]:
        entry["file"] = str(_stage_files() / entry["file"])
        entry["overrides"]["steps"] = max(1, round(entry["overrides"]["steps"] * args.steps_scale))
    summaries = run_schedule(_write_schedule(args.out / "schedule.yaml", schedule), progress=True)
    return "; ".join(f"{s['stage']} {s['steps']} steps, loss {s['first_loss']:.2f} -> {s['final_loss']:.2f}"
                     for s in summaries) + f" -> {args.out / 'run'}"


def _judge_folder(args):
    """What `load_judge` takes: the embedded Whisper, the CTC judge the demo trains, or a given folder."""
    return args.out / "judge" if args.judge == "ctc" else args.judge


def _train_judge(args) -> str:
    from opuslm.cli.evaluate import judge_data
    from opuslm.eval.judge import train_judge

    judge = args.out / "judge"
    if args.judge == "embedded":
        return "the embedded Whisper tiny.en (CTranslate2, greedy) judges TTS; nothing to train"
    if args.judge != "ctc":
        return f"using the given judge {args.judge}"
    if not (judge / "judge.json").is_file():
        corpus = _corpus(args)
        train_judge(judge_data(corpus, "train"), judge_data(corpus, "dev"), judge.with_name("judge.tmp"),
                    steps=args.judge_steps, seed=args.seed)
        judge.with_name("judge.tmp").rename(judge)
    info = json.loads((judge / "judge.json").read_text())
    return f"CTC judge on real audio, dev WER {info['dev_wer']:.3f} -> {judge}"


def _evaluate(args) -> str:
    from opuslm.eval.judge import load_judge
    from opuslm.eval.report import table
    from opuslm.eval.runner import Evaluation
    from opuslm.cli.evaluate import EVAL_TASKS

    out = args.out / "eval"
    if not (out / "results.json").is_file():
        judge = load_judge(_judge_folder(args))
        evaluation = Evaluation(args.out / "run" / "instruct" / "model", _corpus(args), out, judge)
        evaluation.run(list(EVAL_TASKS), Path(args.llm or args.out / "llm"), args.out / "run")
    results = json.loads((out / "results.json").read_text())
    return "\n" + table(results["metrics"]) + f"\n    report: {out / 'report.md'}"


STEPS = (
    ("synthesise the eSpeak corpus", _synthesise_corpus),
    ("write the text corpus for the text LLM", _synthesise_text),
    ("train the text, semantic and acoustic tokenizers", _train_tokenizers),
    ("tokenize the corpus into shards", _tokenize),
    ("lay out the joint vocabulary", _joint_vocab),
    ("train the text LLM", _train_text_llm),
    ("train in stages: pretrain -> anneal -> instruct", _train_stages),
    ("the TTS judge (embedded Whisper, or the CTC judge trained on real audio)", _train_judge),
    ("evaluate every task", _evaluate),
)


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole pipeline on the embedded default (CPU, minutes)",
        description="Run the main job on the embedded default: synthesise the corpus and run every pipeline "
        "step after it. Re-running resumes: finished steps are skipped.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="where every step writes (default: demo_out)")
    demo.add_argument("--hours", type=float, default=2.0, help="size of the synthetic corpus in hours (default: 2.0)")
    demo.add_argument("--seed", type=int, default=0, help="seed for every step (default: 0)")
    demo.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="parallel processes")
    demo.add_argument("--codec-steps", type=int, default=400, help="training steps of the small codec (default: 400)")
    demo.add_argument("--steps-scale", type=float, default=1.0,
                      help="multiply every stage's steps (stages/demo.yaml) by this; 0.01 for a smoke run")
    demo.add_argument("--text-lines", type=int, default=100000, help="lines of grammar text for the text LLM (default: 100000)")
    demo.add_argument("--llm-steps", type=int, default=120, help="training steps of the text LLM (default: 120; "
                      "its held-out loss is flat from step 100 on the grammar's text)")
    demo.add_argument("--judge-steps", type=int, default=500, help="training steps of the CTC judge, with --judge ctc (default: 500)")
    demo.add_argument("--llm", type=Path, help="a local HF LLM folder instead of training the small text LLM")
    demo.add_argument("--judge", default="embedded",
                      help="the TTS judge: 'embedded' (Whisper tiny.en; default), 'ctc' (train the small CTC judge "
                      "on the corpus), or a local Whisper / HF ASR folder")
    demo.add_argument("--semantic-features", choices=("whisper", "cepstral"), default="whisper",
                      help="semantic tokenizer features when no --ssl is given (default: whisper)")
    demo.add_argument("--whisper", help="a local Whisper folder (CTranslate2 or transformers) for the semantic "
                      "features (default: the embedded tiny.en)")
    demo.add_argument("--semantic-k", type=int, default=256, help="k-means clusters of the semantic tokenizer (default: 256)")
    demo.add_argument("--codec", type=Path, help="a codec folder (HF EnCodec/DAC/Mimi) instead of training the small one")
    demo.add_argument("--ssl", type=Path, help="a local HF SSL model (HuBERT, WavLM) for the semantic features")
    demo.add_argument("--ssl-layer", type=int, default=6, help="the SSL layer to cluster")
    demo.add_argument("--corpus", type=Path, help="a corpus folder (manifest.jsonl, from `opuslm data import`) instead of the synthetic one")
    demo.set_defaults(func=_run)


def _run(args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for number, (title, step) in enumerate(STEPS, 1):
        print(f"[{number}/{len(STEPS)}] {title}", flush=True)
        print(f"    {step(args)}", flush=True)
    print(f"demo finished; everything is in {args.out}")
