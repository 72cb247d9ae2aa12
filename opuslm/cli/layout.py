"""`opuslm vocab show` and `opuslm templates show`: the joint vocabulary and task frames, readable."""

from __future__ import annotations

import random
from pathlib import Path

from opuslm.cli import help_formatter
from opuslm.errors import OpusLMError


def register(subparsers) -> None:
    from opuslm.vocab import TASKS

    vocab = subparsers.add_parser("vocab", help="the joint vocabulary's layout",
                                  description="Inspect the joint vocabulary: specials, semantic ids, each "
                                  "codebook's slice and the LLM text range, with the layout's hash.")
    vocab_commands = vocab.add_subparsers(dest="vocab_command", metavar="COMMAND", required=True)
    show = vocab_commands.add_parser("show", formatter_class=help_formatter, help="print the ranges and the hash",
                                     description="Print the layout of a tokenized corpus (--tokens) or of a saved "
                                     "vocab.json (--vocab); --save writes it as JSON.")
    source = show.add_mutually_exclusive_group(required=True)
    source.add_argument("--tokens", type=Path, help="token shard folder (reads the sizes in its tokens.json)")
    source.add_argument("--vocab", type=Path, help="a saved vocab.json")
    show.add_argument("--save", type=Path, help="write the layout to this vocab.json")
    show.add_argument("--specials", action="store_true", help="list every named special token and its id")
    show.set_defaults(func=_vocab_show)

    templates = subparsers.add_parser("templates", help="preview task templates as frames",
                                      description="Turn one tokenized utterance into a task's frames and print them.")
    template_commands = templates.add_subparsers(dest="templates_command", metavar="COMMAND", required=True)
    preview = template_commands.add_parser(
        "show", formatter_class=help_formatter, help="print one example's frames for a task",
        description="Print the frames a task template makes from one utterance of a tokenized corpus: a one-line "
        "decoded form, then a table with a row per frame and a column per stream ('.' = pad, sN = semantic id N, "
        "cK:N = code N of codebook K, '*' = cell with target loss).")
    preview.add_argument("task", metavar="TASK", help=f"one of: {', '.join(TASKS)}, or one declared in --tasks")
    preview.add_argument("--tasks", type=Path, help="a tasks YAML file declaring your own understanding tasks")
    preview.add_argument("--tokens", type=Path, required=True, help="token shard folder")
    which = preview.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, default=0, help="utterance number in the shards")
    which.add_argument("--id", help="utterance id (searched in the shards' metadata)")
    preview.add_argument("--text-tokenizer", type=Path, help="text tokenizer folder, when not where tokens.json says")
    preview.add_argument("--delays", help="comma-separated delay per stream (default 0,1,...,N-1)")
    preview.add_argument("--delayed", action="store_true", help="show the frames after the delay interleave")
    preview.add_argument("--instruct", action="store_true", help="ASR with an instruction, as in the instruct stage")
    preview.add_argument("--seed", type=int, default=0, help="seed for instruction paraphrase and speaker prompt")
    preview.add_argument("--max-frames", type=int, default=60, help="rows of the table to print")
    preview.set_defaults(func=_templates_show)


def _vocab_show(args) -> None:
    from opuslm.vocab import SPECIALS, JointVocab

    vocab = JointVocab.from_tokens(args.tokens) if args.tokens else JointVocab.load(args.vocab)
    print(f"joint vocabulary {vocab.hash}: {vocab.size} ids ({vocab.summary()}), {vocab.num_streams} streams")
    for name, (start, end) in vocab.ranges().items():
        print(f"  {name:<12} [{start:>8}, {end:>8})  {end - start:>8} ids")
    if args.specials:
        for i, name in enumerate(SPECIALS):
            if not name.startswith("<reserved_"):
                print(f"  {i:>4}  {name}")
    if args.save:
        print(f"saved to {vocab.save(args.save)}")


def parse_delays(text: str | None, num_streams: int) -> list[int]:
    from opuslm.interleave import check_delays, default_delays

    if text is None:
        return default_delays(num_streams)
    try:
        return check_delays([int(d) for d in text.split(",")], num_streams)
    except ValueError as error:
        raise OpusLMError(f"--delays {text!r}: {error} (give {num_streams} comma-separated integers)") from None


def _templates_show(args) -> None:
    import torch

    from opuslm.frames_view import decoded_form, frame_table
    from opuslm.interleave import delay
    from opuslm.tasks import TaskTable, read_tasks
    from opuslm.templates import SpeakerPrompts, TemplateBuilder
    from opuslm.tokenize.shards import TokenShards
    from opuslm.tokenize.text import load_text_tokenizer
    from opuslm.vocab import PAD_ID, JointVocab

    shards = TokenShards(args.tokens)
    vocab = JointVocab.from_tokens(args.tokens)
    tokenizer = load_text_tokenizer(shards.tokenizer_path("text", args.text_tokenizer))
    delays = parse_delays(args.delays, vocab.num_streams)
    index = args.index
    if args.id is not None:
        index = next((i for i in range(len(shards)) if shards.meta(i)["id"] == args.id), None)
        if index is None:
            raise OpusLMError(f"no utterance {args.id!r} in {args.tokens}")
    if not 0 <= index < len(shards):
        raise OpusLMError(f"--index {index} is outside the {len(shards)} utterances of {args.tokens}")
    rng = random.Random(args.seed)
    example = shards[index]
    prompt = None
    if args.task == "tts":
        chosen = SpeakerPrompts([shards.meta(i)["speaker"] for i in range(len(shards))]).choose(index, rng)
        prompt = shards[chosen] if chosen is not None else None
    table = TaskTable(read_tasks(args.tasks)) if args.tasks else TaskTable()
    builder = TemplateBuilder.for_model(vocab, tokenizer, delays, shards.info["frame_rate"], tasks=table)
    frames = builder.build(args.task, example.meta["text"] if args.task == "text_lm" else example, rng,
                           instruct=args.instruct, speaker_prompt=prompt)
    print(f"{args.task} of {example.meta['id']} ({example.meta['text']!r}): {frames.num_frames} frames x "
          f"{vocab.num_streams} streams, delays {delays}, target from frame {frames.target_start}")
    print(decoded_form(frames.tokens, vocab, tokenizer))
    tokens, target = frames.tokens, frames.target
    if args.delayed:
        tokens = delay(torch.from_numpy(tokens), delays, PAD_ID).numpy()
        target = delay(torch.from_numpy(target), delays, False).numpy()
    print(frame_table(tokens, vocab, tokenizer, target, args.max_frames))
