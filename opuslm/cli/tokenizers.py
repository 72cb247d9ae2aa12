"""`opuslm tokenizers train-text|train-semantic|train-codec` and `opuslm tokenize`."""

from __future__ import annotations

import os
from pathlib import Path

from opuslm.cli import help_formatter
from opuslm.errors import OpusLMError


def register(subparsers) -> None:
    group = subparsers.add_parser("tokenizers", help="train the text, semantic and acoustic tokenizers",
                                  description="Train tokenizers on a corpus manifest. Each writes a folder that "
                                  "`opuslm tokenize` and the model load by path.")
    commands = group.add_subparsers(dest="tokenizers_command", metavar="COMMAND", required=True)

    text = commands.add_parser("train-text", formatter_class=help_formatter, help="byte-level BPE on corpus text",
                               description="Train a byte-level BPE text tokenizer on the transcripts (and "
                               "answers) of a manifest, saved as a folder AutoTokenizer loads. For a pretrained "
                               "LLM, use its own tokenizer folder instead.")
    text.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl or its folder")
    text.add_argument("--out", type=Path, required=True, help="output tokenizer folder")
    text.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size, specials included")
    text.add_argument("--extra-text", type=Path, help="a plain-text file (one sentence a line) to train on as well")
    text.set_defaults(func=_train_text)

    semantic = commands.add_parser("train-semantic", formatter_class=help_formatter,
                                   help="k-means over Whisper-encoder, cepstral, log-mel or SSL features",
                                   description="Fit k-means on frame features of the train split: a Whisper encoder "
                                   "(default: the embedded Whisper tiny.en; --whisper DIR for any local Whisper in "
                                   "CTranslate2 or transformers format), speaker-normalised cepstra, log-mel, or a "
                                   "layer of a local HF SSL model (--ssl DIR --layer N). Encoder frames are averaged "
                                   "onto the --hop grid so semantic and codec frames stay 1:1.")
    semantic.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl or its folder")
    semantic.add_argument("--out", type=Path, required=True, help="output tokenizer folder")
    semantic.add_argument("-k", "--clusters", type=int, default=256, help="number of k-means clusters (OpusLM: 5000)")
    semantic.add_argument("--ssl", type=Path, help="local HF SSL model folder (HuBERT, WavLM, wav2vec2)")
    semantic.add_argument("--whisper", type=Path, help="local Whisper folder for --features whisper (default: embedded tiny.en)")
    semantic.add_argument("--layer", type=int, help="SSL hidden layer (default 6; 0 = input embeddings) or Whisper "
                          "encoder layer (default: the last; other layers need a transformers-format Whisper)")
    semantic.add_argument("--features", choices=("whisper", "cepstral", "logmel"), default="whisper",
                          help="the features when no --ssl is given")
    semantic.add_argument("--whisper-compute", choices=("float32", "int8"), default="float32",
                          help="CTranslate2 Whisper: int8 weights encode about 1.7x faster on a CPU (other ids than float32)")
    semantic.add_argument("--hop", type=int, default=640, help="frame hop in samples at 16 kHz; match the codec")
    semantic.add_argument("--max-frames", type=int, default=200_000, help="frames sampled for k-means")
    semantic.add_argument("--seed", type=int, default=0, help="seed of the k-means fit")
    semantic.set_defaults(func=_train_semantic)

    probe = commands.add_parser("probe", formatter_class=help_formatter,
                                help="how well semantic ids carry words across speakers (no training)",
                                description="The word nearest-neighbour probe (opuslm/eval/units.py): each timed word "
                                "of the query split, as its run-length-collapsed semantic ids, is matched by edit "
                                "distance to the train split's occurrences of the most frequent words by other "
                                "speakers; prints how often the nearest is the same word. Needs word timestamps "
                                "in the manifest (the embedded corpus has them).")
    probe.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl or its folder")
    probe.add_argument("--semantic", type=Path, required=True, help="semantic tokenizer folder")
    probe.add_argument("--query-split", default="test", help="split whose words are matched (default: test)")
    probe.add_argument("--train-utterances", type=int, default=800, help="train utterances to draw references from")
    probe.add_argument("--words", type=int, default=60, help="the most frequent words probed (default: 60)")
    probe.set_defaults(func=_probe_semantic)

    aligner = commands.add_parser("train-aligner", formatter_class=help_formatter,
                                  help="the word aligner that places SRWT's words (generate/eval --timestamps aligned)",
                                  description="Train a frame classifier on a Whisper encoder's features (the text token "
                                  "spoken in each 40 ms frame, or silence) from the word times of a manifest's train "
                                  "split, and save it with the text tokenizer it labels with; prints the mean boundary "
                                  "shift of the dev split's own words as it places them (SRWT's AAS for a right "
                                  "transcript). About 2 minutes on 2 CPU cores at the defaults.")
    aligner.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl or its folder, with word times")
    aligner.add_argument("--text-tokenizer", type=Path, required=True,
                         help="the model's text tokenizer folder (the demo's demo_out/tokenizers/text, or the LLM's)")
    aligner.add_argument("--out", type=Path, required=True, help="output aligner folder")
    aligner.add_argument("--whisper", type=Path, help="local Whisper folder whose encoder gives the features (default: "
                         "the embedded tiny.en)")
    aligner.add_argument("--clips", type=int, default=1000, help="train clips with word times to learn from")
    aligner.add_argument("--dev-clips", type=int, default=50, help="dev clips the report places")
    aligner.add_argument("--steps", type=int, default=800, help="training steps of 32 clips")
    aligner.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the batches")
    aligner.set_defaults(func=_train_aligner)

    codec = commands.add_parser("train-codec", formatter_class=help_formatter,
                                help="the acoustic tokenizer: mel-pitch (default) or the small neural codec",
                                description="Fit the demo's acoustic tokenizer on the train split: --kind mel-pitch "
                                "(a pitch codebook and residual k-means log-mel codebooks, decoded by a harmonic-plus-"
                                "noise synthesiser, or with --vocoder by a pretrained HiFi-GAN; about a minute on a "
                                "CPU) or --kind neural (the small convolutional "
                                "codec with residual VQ; --steps of training). Then the codec's report on dev clips: "
                                "the judge's WER on original and resynthesis, F0 agreement, bitrate and speed, printed "
                                "and saved with the clips under --report.")
    codec.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl or its folder")
    codec.add_argument("--out", type=Path, required=True, help="output codec folder")
    codec.add_argument("--kind", choices=("mel-pitch", "neural"), default="mel-pitch", help="which tokenizer to fit")
    codec.add_argument("--vocoder", type=Path,
                       help="--kind mel-pitch: decode with this HiFi-GAN folder (`opuslm assets import hifigan-universal "
                       "--out DIR`) instead of the harmonic synthesiser; the codebooks then quantise the vocoder's own "
                       "log-mel, and the codec folder keeps a copy of the vocoder")
    codec.add_argument("--steps", type=int, default=1500, help="--kind neural: training steps")
    codec.add_argument("--batch-size", type=int, default=8, help="--kind neural: crops per step")
    codec.add_argument("--codebooks", type=int, default=8, help="codebooks per frame (mel-pitch: the pitch one included)")
    codec.add_argument("--codebook-size", type=int, default=256, help="ids per codebook")
    codec.add_argument("--seed", type=int, default=0, help="seed of the fit (k-means, or training)")
    _report_options(codec, "where the codec's report goes (default: OUT.report beside the codec folder, which "
                    "keeps the codec's identity hash free of it)")
    codec.set_defaults(func=_train_codec)

    probe_codec = commands.add_parser("probe-codec", formatter_class=help_formatter,
                                      help="the codec report for any codec folder (mel-pitch, small codec, EnCodec/DAC/Mimi)",
                                      description="Encode and decode dev clips with a codec folder and report what "
                                      "train-codec reports: the judge's WER on original and resynthesis, F0 agreement, "
                                      "bitrate and speed; the clips and their transcripts are saved under --report.")
    probe_codec.add_argument("--codec", type=Path, required=True, help="codec folder or encodec checkpoint")
    probe_codec.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl or its folder")
    _report_options(probe_codec, "where the report goes (default: CODEC.report beside the codec folder)")
    probe_codec.set_defaults(func=_probe_codec)

    tokenize = subparsers.add_parser("tokenize", formatter_class=help_formatter, help="a manifest -> token shards",
                                     description="Tokenize every utterance of a manifest into memory-mapped token "
                                     "shards (text ids, semantic ids, codec codes, labels). Resumable: a re-run "
                                     "skips finished shards. Refuses shards made with other tokenizers. Give the three "
                                     "tokenizers, or --model: exactly the tokenizers a trained model folder was "
                                     "trained with (what fine-tuning it needs).")
    tokenize.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl or its folder")
    tokenize.add_argument("--out", type=Path, required=True, help="output shard folder")
    tokenize.add_argument("--model", type=Path, help="an OpusLM model folder: use its tokenizers (--codec relocates its codec)")
    tokenize.add_argument("--text", type=Path, help="text tokenizer folder (the LLM's, or train-text's)")
    tokenize.add_argument("--semantic", type=Path, help="semantic tokenizer folder")
    tokenize.add_argument("--codec", type=Path, help="codec folder or encodec checkpoint")
    tokenize.add_argument("--shard-size", type=int, default=256, help="utterances per shard")
    tokenize.add_argument("--max-seconds", type=float, default=60.0,
                          help="longer utterances are rejected (listed in rejects.jsonl): memory grows with the clip")
    tokenize.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                          help="processes, one shard each at a time")
    tokenize.add_argument("--heard-features", action="store_true",
                          help="also store each frame's semantic features (float16), for a model with the continuous "
                          "input path (a schedule's init.heard_features); with --model, whenever that model reads them")
    tokenize.set_defaults(func=_tokenize)


def _split_audio(manifest: Path, split: str):
    from opuslm.data.manifest import read_manifest

    folder = manifest if manifest.is_dir() else manifest.parent
    utterances = read_manifest(manifest, split=split)
    if not utterances:
        raise OpusLMError(f"{manifest} has no {split} utterances")
    for u in utterances:
        yield u.load_audio(folder, target_rate=16000)


def _train_text(args) -> None:
    from opuslm.data.manifest import read_manifest
    from opuslm.tokenize.text import corpus_texts, train_text_tokenizer

    texts = corpus_texts(read_manifest(args.manifest))
    if args.extra_text:
        texts += args.extra_text.read_text(encoding="utf-8").splitlines()
    train_text_tokenizer(texts, args.out, args.vocab_size)
    print(f"text tokenizer ({args.vocab_size} tokens) trained on {len(texts)} lines -> {args.out}")


def _train_semantic(args) -> None:
    from opuslm.tokenize.features import SPECTRAL_FEATURES, SSLFeatures, WhisperFeatures
    from opuslm.tokenize.semantic import train_semantic_tokenizer

    if args.ssl:
        features = SSLFeatures(args.ssl, 6 if args.layer is None else args.layer)
    elif args.features == "whisper":
        features = WhisperFeatures(args.whisper, args.layer, hop=args.hop, compute_type=args.whisper_compute)
    else:
        features = SPECTRAL_FEATURES[args.features](hop=args.hop)
    tokenizer = train_semantic_tokenizer(_split_audio(args.manifest, "train"), features, args.clusters,
                                         args.seed, args.max_frames)
    tokenizer.save(args.out)
    print(f"semantic tokenizer (K={args.clusters}, {features.kind} at {features.frame_rate:g} Hz) -> {args.out}")


def _probe_semantic(args) -> None:
    from opuslm.data.manifest import read_manifest
    from opuslm.eval.units import occurrences, word_probe
    from opuslm.tokenize.semantic import SemanticTokenizer

    tokenizer = SemanticTokenizer.load(args.semantic)
    folder = args.manifest if args.manifest.is_dir() else args.manifest.parent
    found = {}
    for split, limit in (("train", args.train_utterances), (args.query_split, None)):
        utterances = [u for u in read_manifest(args.manifest, split=split) if u.words][:limit]
        if not utterances:
            raise OpusLMError(f"{args.manifest} has no {split} utterances with word timestamps")
        ids = [tokenizer.encode(*u.load_audio(folder, target_rate=16000)) for u in utterances]
        found[split] = occurrences(utterances, ids, tokenizer.frame_rate)
    result = word_probe(found["train"], found[args.query_split], words=args.words)
    print(f"word nearest-neighbour accuracy {result['accuracy']:.3f} on {result['queries']} {args.query_split} words "
          f"({result['words']} words, {result['references']} train references; chance {result['chance']:.3f})")


def _train_aligner(args) -> None:
    from transformers import AutoTokenizer

    from opuslm.infer.word_aligner import fit_word_aligner, timed_clips
    from opuslm.tokenize.features import WhisperFeatures

    train = timed_clips(args.manifest, "train", args.clips)
    if not train:
        raise OpusLMError(f"{args.manifest} has no train utterances with word times (`words`): the aligner learns "
                          "from them")
    tokenizer = AutoTokenizer.from_pretrained(str(args.text_tokenizer))
    aligner = fit_word_aligner(train, timed_clips(args.manifest, "dev", args.dev_clips), WhisperFeatures(args.whisper),
                               tokenizer, steps=args.steps, seed=args.seed)
    aligner.save(args.out)
    print(f"word aligner on {len(train)} clips: {aligner.summary()} -> {args.out}")


def _report_options(parser, report_help: str) -> None:
    parser.add_argument("--report", type=Path, help=report_help)
    parser.add_argument("--split", default="dev", help="the clips the report encodes and decodes")
    parser.add_argument("--clips", type=int, default=50, help="how many of them")
    parser.add_argument("--judge", default="embedded", help="'embedded' (Whisper tiny.en) or a judge folder "
                        "(CTranslate2 Whisper, HF ASR, or `opuslm judge train`'s)")


def _report(args, codec_folder: Path) -> None:
    from opuslm.data.manifest import read_manifest
    from opuslm.eval.judge import load_judge
    from opuslm.tokenize.acoustic import load_acoustic_tokenizer
    from opuslm.eval.codec_report import codec_report, summary_line

    folder = args.manifest if args.manifest.is_dir() else args.manifest.parent
    utterances = read_manifest(args.manifest, split=args.split)[: args.clips]
    if not utterances:
        raise OpusLMError(f"{args.manifest} has no {args.split} utterances for the codec report (--split)")
    clips = [(u.id, u.load_audio(folder, target_rate=16000)[0], u.text) for u in utterances]
    report = args.report or codec_folder.with_name(codec_folder.name + ".report")
    figures = codec_report(load_acoustic_tokenizer(codec_folder), clips, load_judge(args.judge), report)
    print(f"{codec_folder}: {summary_line(figures)}; clips and transcripts -> {report}")


def _train_codec(args) -> None:
    if args.vocoder and args.kind != "mel-pitch":
        raise OpusLMError("--vocoder decodes the mel-pitch codec; the neural codec has a decoder of its own")
    train = [wav for wav, _ in _split_audio(args.manifest, "train")]
    if args.kind == "mel-pitch":
        from opuslm.tokenize.mel_pitch import MelPitchConfig, fit_mel_pitch_codec

        fit_mel_pitch_codec(train, args.out, MelPitchConfig(num_codebooks=args.codebooks, codebook_size=args.codebook_size,
                                                            seed=args.seed), vocoder=args.vocoder)
    else:
        from opuslm.tokenize.codec_training import train_small_codec
        from opuslm.tokenize.small_codec import SmallCodecConfig

        train_small_codec(train, args.out, SmallCodecConfig(num_codebooks=args.codebooks,
                                                            codebook_size=args.codebook_size),
                          steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    print(f"{args.kind} codec ({args.codebooks} x {args.codebook_size}) -> {args.out}")
    _report(args, args.out)


def _probe_codec(args) -> None:
    _report(args, args.codec)


def _tokenize(args) -> None:
    from opuslm.tokenize.pipeline import TokenizerPaths, tokenize_corpus

    heard = args.heard_features
    if args.model is not None:
        from opuslm.model.multistream import model_tokenizers, reads_heard_features

        if args.text or args.semantic:
            raise OpusLMError("--model gives the text and semantic tokenizers; drop --text and --semantic")
        paths = model_tokenizers(args.model, args.codec)
        heard = heard or reads_heard_features(args.model) > 0
    elif not (args.text and args.semantic and args.codec):
        raise OpusLMError("give --text, --semantic and --codec, or --model (a trained model folder's tokenizers)")
    else:
        paths = TokenizerPaths(args.text, args.semantic, args.codec)
    summary = tokenize_corpus(args.manifest, args.out, paths, args.shard_size, args.workers, max_seconds=args.max_seconds,
                              heard_features=heard)
    print(f"seen {summary['seen']} = accepted {summary['accepted']} + rejected {summary['rejected']}; "
          f"{summary['frames']} frames -> {args.out}")
