"""`opuslm eval` and `opuslm judge train`."""

from __future__ import annotations

from pathlib import Path

from opuslm.cli import help_formatter
from opuslm.errors import OpusLMError
from opuslm.infer.sampling import Sampling, add_joint_ctc_options, add_timestamp_options


def register(subparsers) -> None:
    from opuslm.eval.runner import EVAL_TASKS

    evaluate = subparsers.add_parser(
        "eval", formatter_class=help_formatter, help="score a trained model on every task",
        description="Evaluate a model folder on a corpus: ASR WER (dev = seen, test = unseen speakers), OSUM "
        "classification accuracy (first tag) with confusion matrices, SRWT WER and AAS, STTC answer accuracy, TTS "
        "judge WER with the codec's resynthesis ceiling, text perplexity and multiple-choice accuracy. Writes "
        "results.json, hyps.jsonl, report.md and PNG plots to --out.")
    evaluate.add_argument("--model", type=Path, required=True, help="OpusLM model folder")
    evaluate.add_argument("--corpus", type=Path, help="corpus folder (manifest.jsonl and audio)")
    evaluate.add_argument("--suite", choices=("osum", "opuslm"),
                          help="instead of --corpus: the papers' test sets found under --data-root, beside their numbers")
    evaluate.add_argument("--data-root", type=Path, help="--suite: folder of <set>/manifest.jsonl made by `data recipe`")
    evaluate.add_argument("--out", type=Path, required=True, help="output folder")
    evaluate.add_argument("--judge", default="embedded",
                          help="judge for TTS: 'embedded' (Whisper tiny.en, greedy; the default), a CTranslate2 "
                          "Whisper folder, a local HF ASR folder, `opuslm judge train` output, or 'none' to skip TTS")
    evaluate.add_argument("--tasks", help=f"comma-separated subset of {','.join(EVAL_TASKS)} and the tasks the model "
                          "was fine-tuned on (its tasks.json); default: all of them")
    evaluate.add_argument("--limit", type=int, help="at most this many utterances per task (quick looks)")
    evaluate.add_argument("--base-llm", type=Path, help="the text LLM before speech training, for text comparisons")
    evaluate.add_argument("--run", type=Path, help="the schedule's out folder, for loss curves across stages")
    evaluate.add_argument("--codec", type=Path, help="the codec folder, when not where the model recorded it")
    evaluate.add_argument("--batch-size", type=int, default=8, help="clips decoded together")
    evaluate.add_argument("--beam", type=int, default=1, help="beam width for the text the model writes (1: greedy, "
                          "the default and what the demo reports)")
    add_joint_ctc_options(evaluate)
    evaluate.add_argument("--guard", action="store_true",
                          help="score outputs decoded within the task's format (as `opuslm generate --guard`); the "
                          "default scores what the model wrote, so the malformed rate is its own")
    add_timestamp_options(evaluate)
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=_eval)

    judge = subparsers.add_parser("judge", help="the ASR judge that scores generated speech",
                                  description="Train the small CTC ASR judge on a corpus's real audio (an option "
                                  "beside the default, the embedded Whisper tiny.en).")
    commands = judge.add_subparsers(dest="judge_command", metavar="COMMAND", required=True)
    train = commands.add_parser("train", formatter_class=help_formatter, help="train the CTC judge",
                                description="Train a character CTC ASR model on the train split's real audio and "
                                "report its WER on dev. It never sees resynthesised or generated audio.")
    train.add_argument("--corpus", type=Path, required=True, help="corpus folder (manifest.jsonl and audio)")
    train.add_argument("--out", type=Path, required=True, help="output judge folder")
    train.add_argument("--steps", type=int, default=1500, help="training steps")
    train.add_argument("--batch-size", type=int, default=16, help="clips per step")
    train.add_argument("--seed", type=int, default=0, help="seed of the weights and the clip order")
    train.set_defaults(func=_train_judge)
    transcribe = commands.add_parser("transcribe", formatter_class=help_formatter, help="the judge's transcripts of WAVs",
                                     description="Transcribe audio files with the judge that scores TTS (the embedded "
                                     "Whisper tiny.en, or --judge DIR): what it hears, and with --reference its WER; or "
                                     "a corpus split's own audio against its transcripts (--corpus), the judge's "
                                     "ceiling on real speech.")
    transcribe.add_argument("wavs", nargs="*", type=Path, help="audio files (or give --corpus)")
    transcribe.add_argument("--judge", default="embedded", help="'embedded', a CTranslate2 Whisper folder, a local HF "
                            "ASR folder, or `opuslm judge train` output")
    transcribe.add_argument("--reference", action="append",
                            help="what was said, once per WAV in order: prints each WER and the corpus WER")
    transcribe.add_argument("--corpus", type=Path, help="a corpus folder (manifest.jsonl): judge the audio of --split "
                            "against its transcripts instead of WAVs")
    transcribe.add_argument("--split", default="test", help="the split of --corpus")
    transcribe.set_defaults(func=_judge_transcribe)


def _eval(args) -> None:
    from opuslm.eval.judge import load_judge
    from opuslm.eval.report import declared_table, malformed_table, table
    from opuslm.eval.runner import EVAL_TASKS, Evaluation, check_eval_tasks
    from opuslm.tasks import TaskTable

    if args.suite:
        from opuslm.eval.suites import run_suite

        if not args.data_root:
            raise OpusLMError("--suite needs --data-root (the folder holding <set>/manifest.jsonl)")
        print(run_suite(args.suite, args.model, args.data_root, args.out, args.limit, args.batch_size, args.codec,
                        args.beam))
        return
    if not args.corpus:
        raise OpusLMError("give --corpus (or --suite with --data-root)")
    table_of_model = TaskTable.of_model(args.model)
    scored = [name for name, spec in table_of_model.declared.items() if spec.score is not None]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else [*EVAL_TASKS, *scored]
    check_eval_tasks(tasks, table_of_model)  # before loading a judge and a model
    judge = None if args.judge == "none" else load_judge(args.judge)
    evaluation = Evaluation(args.model, args.corpus, args.out, judge, args.codec, args.batch_size, args.limit,
                            progress=not args.quiet,
                            sampling=Sampling(seed=0, beam=args.beam, guard=args.guard, timestamps=args.timestamps,
                                              aligner=args.aligner, ctc_weight=args.ctc_weight,
                                              ctc_layer=args.ctc_layer))
    results = evaluation.run(tasks, args.base_llm, args.run)
    print(table(results["metrics"]))
    print("\n".join(malformed_table(results["malformed"]) + declared_table(results["declared"])))
    print(f"report: {args.out / 'report.md'}")


def _judge_transcribe(args) -> None:
    from opuslm.audio import load_audio
    from opuslm.eval import metrics
    from opuslm.eval.judge import load_judge

    if args.corpus is not None:
        from opuslm.data.manifest import read_manifest

        if args.wavs or args.reference:
            raise OpusLMError("give WAVs (with --reference) or --corpus, not both")
        utterances = read_manifest(args.corpus, split=args.split)
        if not utterances:
            raise OpusLMError(f"{args.corpus}/manifest.jsonl has no {args.split!r} utterances; pick --split")
        args.wavs = [u.audio_path(args.corpus) for u in utterances]
        args.reference = [u.text for u in utterances]
    if not args.wavs:
        raise OpusLMError("give the WAVs to transcribe, or --corpus DIR")
    if args.reference is not None and len(args.reference) != len(args.wavs):
        raise OpusLMError(f"{len(args.wavs)} WAVs but {len(args.reference)} --reference texts: give one per WAV")
    audio = [load_audio(path, target_rate=16000)[0] for path in args.wavs]
    heard = load_judge(None if args.judge == "embedded" else args.judge).transcribe(audio)
    for i, (path, text) in enumerate(zip(args.wavs, heard)):
        if args.reference is None:
            print(f"{path}\t{text}")
        else:
            errors, words = metrics.word_errors(args.reference[i], text)
            print(f"{path}\t{text}\tWER {errors / max(words, 1):.3f}")
    if args.reference is not None:
        print(f"corpus WER {metrics.corpus_wer(args.reference, heard):.3f} over {len(heard)} files")


def _train_judge(args) -> None:
    from opuslm.eval.judge import judge_data, train_judge

    info = train_judge(judge_data(args.corpus, "train"), judge_data(args.corpus, "dev"), args.out,
                       steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    print(f"judge -> {args.out}: dev WER {info['dev_wer']:.3f} after {info['steps']} steps")
