"""`opuslm model init|merge|export-text` and `opuslm generate`."""

from __future__ import annotations

from pathlib import Path

from opuslm.cli import help_formatter, positive, require_device

GENERATE_TASKS = ("asr", "tts", "continue-audio", "continue-text")


def register(subparsers) -> None:
    from opuslm.infer.sampling import Sampling, add_joint_ctc_options, add_timestamp_options
    from opuslm.model.config import HEARD_MIX, STREAM0_SOFTMAX
    from opuslm.model.presets import PRESETS
    from opuslm.tasks import BUILTIN_TASKS

    group = subparsers.add_parser("model", help="create a multi-stream model from an LLM; export its text part",
                                  description="Create, inspect and export OpusLM model folders.")
    commands = group.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    init = commands.add_parser(
        "init", formatter_class=help_formatter, help="a text LLM + tokenized data -> an initial model folder",
        description="Grow a text LLM (a local HF folder, or a preset shape with random weights) to the joint "
        "vocabulary of a tokenized corpus and save it with its tokenizers. With --llm, the corpus must have been "
        "tokenized with that LLM's own tokenizer.")
    source = init.add_mutually_exclusive_group(required=True)
    source.add_argument("--llm", type=Path, help="local HF causal-LM folder (SmolLM2, Qwen2.5, OLMo-2, Llama, ...)")
    source.add_argument("--preset", choices=sorted(PRESETS), help="train from scratch: a Llama of this shape")
    init.add_argument("--tokens", type=Path, required=True, help="token shard folder (gives the vocabulary and tokenizers)")
    init.add_argument("--out", type=Path, required=True, help="output model folder")
    init.add_argument("--delays", help="comma-separated delay per stream (default 0,1,...,N-1)")
    init.add_argument("--seed", type=int, default=0, help="seed for the new embedding rows")
    init.add_argument("--codebook-row-scale", type=float, default=1.0,
                      help="scale of the new codebook rows; 0 starts an audio frame as its semantic row alone")
    init.add_argument("--stream0-softmax", choices=STREAM0_SOFTMAX, default=STREAM0_SOFTMAX[0],
                      help="stream 0 scored over the whole vocabulary, or over the ids its input's modality allows")
    init.add_argument("--heard-features", action="store_true",
                      help="the continuous input path: the heard audio's semantic-encoder features, added through an "
                      "adapter (needs shards tokenized with --heard-features)")
    init.add_argument("--heard-mix", choices=HEARD_MIX, default=HEARD_MIX[0],
                      help="with --heard-features: add the adapter's output, or its softmax over the text rows times "
                      "those rows (the heard words as the LLM's own word embeddings; warm the adapter first with a "
                      "stage of objective heard_ctc, stages/listen.yaml)")
    init.set_defaults(func=_init)

    export = commands.add_parser("export-text", formatter_class=help_formatter, help="the text part as a plain HF LLM",
                                 description="Write the text range of the model as a plain HF causal-LM folder "
                                 "(with its tokenizer) that AutoModelForCausalLM loads, e.g. for lm-eval.")
    export.add_argument("--model", type=Path, required=True, help="OpusLM model folder")
    export.add_argument("--out", type=Path, required=True, help="output HF folder")
    export.add_argument("--tokenizer", type=Path,
                        help="text tokenizer folder, when the model folder has none (checked against the model's)")
    export.set_defaults(func=_export)

    merge = commands.add_parser("merge", formatter_class=help_formatter, help="fold LoRA adapters into the weights",
                                description="Write a model folder whose backbone has its LoRA adapters (adapter/) "
                                "folded into the base weights with peft's own merge: the same outputs, no adapters.")
    merge.add_argument("--model", type=Path, required=True, help="OpusLM model folder with adapter/")
    merge.add_argument("--out", type=Path, required=True, help="output model folder")
    merge.set_defaults(func=_merge)

    plan = subparsers.add_parser(
        "plan", formatter_class=help_formatter, help="size, memory and FLOPs of a real-scale config, no weights",
        description="Build the backbone of each config (configs/*.yaml) on the meta device and print the joint "
        "vocabulary, parameter counts, memory per GPU for the chosen parallelism, frames and FLOPs per step. "
        "MFU = FLOPs per step / (measured step seconds x GPUs x peak FLOPs).")
    plan.add_argument("configs", type=Path, nargs="+", help="plan config YAML(s)")
    plan.set_defaults(func=_plan)

    tasks = GENERATE_TASKS + tuple(name for name in BUILTIN_TASKS if name != "asr")
    generate = subparsers.add_parser(
        "generate", formatter_class=help_formatter, help="ASR, TTS, continuation or an understanding task",
        description="Generate with a trained model. Inputs are WAV files for asr, continue-audio and the "
        f"understanding tasks (built in: {', '.join(BUILTIN_TASKS)}; and any the model was fine-tuned on, listed in "
        "its tasks.json), and texts for tts and continue-text. Text is decoded greedily; audio is sampled "
        "(seeded) unless --greedy-audio.")
    generate.add_argument("task", metavar="TASK", help=f"one of: {', '.join(tasks)}, or a task the model declares")
    generate.add_argument("inputs", nargs="+", help="WAV files, or texts for tts / continue-text")
    generate.add_argument("--model", type=Path, required=True, help="OpusLM model folder")
    generate.add_argument("--codec", type=Path, help="the codec folder, when not where the model recorded it")
    generate.add_argument("--out", type=Path, default=Path("generated"), help="folder for generated WAVs")
    generate.add_argument("--speaker", type=Path, help="tts: a WAV of the voice to speak in (its first seconds, as "
                          "long as the speaker prompts the model was trained with)")
    generate.add_argument("--instruction", help="understanding tasks: ask in your own words")
    generate.add_argument("--batch-size", type=positive(int), default=8, help="inputs generated together")
    generate.add_argument("--max-tokens", type=positive(int), default=200,
                          help="text: most tokens to generate (prompt and output must fit the model's positions)")
    generate.add_argument("--max-seconds", type=positive(float), default=20.0,
                          help="audio: most seconds to generate; tts refuses text that takes longer to say")
    defaults = Sampling()
    generate.add_argument("--temperature", type=float, default=defaults.temperature, help="audio sampling temperature")
    generate.add_argument("--top-k", type=int, default=defaults.top_k, help="audio top-k (0: off)")
    generate.add_argument("--top-p", type=float, default=defaults.top_p, help="audio nucleus (1: off)")
    generate.add_argument("--greedy-audio", action="store_true", help="greedy audio too (reproducible across batch sizes)")
    generate.add_argument("--seed", type=int, default=defaults.seed, help="seed of the audio sampling")
    generate.add_argument("--beam", type=int, default=defaults.beam, help="text: beam width (1: greedy)")
    add_joint_ctc_options(generate)
    generate.add_argument("--guard", action="store_true",
                          help="text: decode within the task's format, choosing each next token only among those "
                          "that keep it (ASR: the transcript only; ASR + X: the transcript and the task's tags, from "
                          "the labels it was taught; STTC: one answer after one <answer>); free SRWT is ended where "
                          "it leaves its format")
    add_timestamp_options(generate)
    generate.add_argument("--overwrite", action="store_true",
                          help="replace the WAVs an earlier tts / continue-audio run left in --out (refused without it)")
    generate.add_argument("--json", action="store_true",
                          help="one JSON object per input: for text tasks the output read as the task's format "
                          "(transcript, labels, timestamps, answer) and its problems; for audio the WAV's path")
    generate.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    generate.set_defaults(func=_generate)


def _init(args) -> None:
    from opuslm.cli.layout import parse_delays
    from opuslm.model.init import init_model
    from opuslm.vocab import JointVocab

    delays = parse_delays(args.delays, JointVocab.from_tokens(args.tokens).num_streams)
    model = init_model(args.tokens, args.out, args.llm, args.preset, delays, args.seed, args.codebook_row_scale,
                       args.stream0_softmax, args.heard_features, args.heard_mix)
    params = sum(p.numel() for p in model.parameters())
    print(f"model {args.out}: {params / 1e6:.1f} M parameters, vocabulary {model.vocab.hash} ({model.vocab.size} ids), "
          f"delays {model.delays}")


def _plan(args) -> None:
    from opuslm.plan import describe, load_plan_config, plan

    for path in args.configs:
        config = load_plan_config(path)
        print(describe(plan(config), config))


def _export(args) -> None:
    from opuslm.errors import OpusLMError
    from opuslm.model.multistream import TOKENIZER_FOLDERS, OpusLM, model_identity, require_tokenizer

    tokenizer = args.tokenizer or args.model / TOKENIZER_FOLDERS["text"]
    if not tokenizer.is_dir():
        raise OpusLMError(f"{args.model} has no text tokenizer ({TOKENIZER_FOLDERS['text']}/): pass its folder with "
                          "--tokenizer; an LLM without one cannot be evaluated or used")
    if (args.model / "tokenizers.json").is_file():
        require_tokenizer(args.model, "text", tokenizer, model_identity(args.model)["text"])
    model = OpusLM.from_pretrained(args.model)
    model.export_text_lm(args.out, tokenizer)
    print(f"text LLM ({model.vocab.text_size} tokens) -> {args.out}")


def _merge(args) -> None:
    from opuslm.errors import OpusLMError
    from opuslm.model.lora import merge_lora
    from opuslm.model.multistream import OpusLM, model_tokenizers
    from opuslm.tasks import TaskTable

    model = OpusLM.from_pretrained(args.model)
    merged = merge_lora(model)
    if not merged:
        raise OpusLMError(f"{args.model} has no LoRA adapters (no adapter/ folder): nothing to merge")
    has_tokenizers = (args.model / "tokenizers.json").is_file()
    model.save_pretrained(args.out, model_tokenizers(args.model) if has_tokenizers else None)
    TaskTable.of_model(args.model).save(args.out)
    print(f"{merged} LoRA layers merged -> {args.out}")


def _generate(args) -> None:
    import json
    import sys
    from difflib import get_close_matches

    from opuslm.audio import AUDIO_SUFFIXES, load_audio, write_wav
    from opuslm.errors import OpusLMError
    from opuslm.infer.sampling import Sampling
    from opuslm.infer.speech_lm import SpeechLM
    from opuslm.model.multistream import require_model_folder
    from opuslm.tasks import TaskTable

    if args.beam > 1 and args.task in ("tts", "continue-audio"):
        raise OpusLMError(f"--beam searches text; {args.task} samples audio (--temperature, --top-k, --top-p, "
                          "--greedy-audio)")
    require_model_folder(args.model)
    known = [*GENERATE_TASKS, *(t for t in TaskTable.of_model(args.model).names() if t not in GENERATE_TASKS)]
    if args.task not in known:
        close = get_close_matches(args.task, known, 1)
        raise OpusLMError(f"unknown task {args.task!r}" + (f" (did you mean {close[0]}?)" if close else "")
                          + f"; tasks: {', '.join(known)}")
    require_device(args.device)
    if args.task == "tts":
        for text in args.inputs:
            if Path(text).suffix.lower() in AUDIO_SUFFIXES and Path(text).exists():
                raise OpusLMError(f"tts speaks text, and {text!r} is an audio file: give the words to say (for a voice "
                                  "to speak in, --speaker FILE)")
    earlier = sorted(args.out.glob(f"{args.task}-*.wav")) if args.task in ("tts", "continue-audio") else []
    if earlier and not args.overwrite:
        raise OpusLMError(f"{args.out} already holds {len(earlier)} {args.task} WAV(s) of an earlier run "
                          f"({earlier[0].name}, ...): give another --out, or --overwrite to replace them all")
    sampling = Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                        greedy_audio=args.greedy_audio, seed=args.seed, beam=args.beam, guard=args.guard,
                        timestamps=args.timestamps, aligner=args.aligner, ctc_weight=args.ctc_weight,
                        ctc_layer=args.ctc_layer)
    lm = SpeechLM.load(args.model, args.codec, args.device, sampling)
    for path in earlier:  # --overwrite: none of the earlier run's files stays beside the new ones
        path.unlink()
    text_inputs = args.task in ("tts", "continue-text")
    speaker = load_audio(args.speaker) if args.speaker else None
    empty = 0
    for start in range(0, len(args.inputs), args.batch_size):
        batch = args.inputs[start: start + args.batch_size]
        sources = batch if text_inputs else [load_audio(path) for path in batch]
        names = [repr(item) if text_inputs else str(item) for item in batch]
        if args.task == "asr":
            results = lm.transcribe(sources, args.max_tokens, names)
        elif args.task == "continue-text":
            results = lm.continue_text(sources, args.max_tokens, names)
        elif args.task == "tts":
            speech = lm.speak(sources, [speaker] * len(sources), args.max_seconds, names)
            for name, spoken in zip(names, speech):
                if spoken.note:
                    print(f"opuslm: warning: {name}: {spoken.note}", file=sys.stderr)
            results = [spoken.audio for spoken in speech]
        elif args.task == "continue-audio":
            results = lm.continue_audio(sources, args.max_seconds, names)
        else:
            results = lm.understand(args.task, sources, args.instruction, args.max_tokens, names)
        for offset, (source, result) in enumerate(zip(batch, results)):
            if isinstance(result, str):
                if not args.json:
                    print(f"{source}\t{result}")
                elif args.task == "continue-text":
                    print(json.dumps({"input": source, "text": result}, ensure_ascii=False))
                else:
                    read = lm.read(args.task, result, sources[offset])
                    print(json.dumps({"input": source, **read.fields()}, ensure_ascii=False))
            else:
                args.out.mkdir(parents=True, exist_ok=True)
                path = args.out / f"{args.task}-{start + offset:04d}.wav"
                write_wav(path, result, lm.tokenizers.acoustic.sample_rate)
                if len(result) == 0:
                    empty += 1
                    why = (" (a clip that already ends, as a whole utterance does, has nothing to continue: give its "
                           "first part)" if args.task == "continue-audio" else "")
                    print(f"opuslm: warning: {source}: the model ended at once, {path} holds 0 s of audio{why}",
                          file=sys.stderr)
                seconds = len(result) / lm.tokenizers.acoustic.sample_rate
                print(json.dumps({"input": source, "wav": str(path), "seconds": round(seconds, 3)}) if args.json
                      else f"{source}\t{path} ({seconds:.2f} s)")
    if empty:
        print(f"opuslm: {empty} of {len(args.inputs)} outputs are empty (see the warnings above)", file=sys.stderr)

