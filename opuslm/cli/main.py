"""`opuslm` entry point: builds the subcommand tree and turns errors into one clear line."""

from __future__ import annotations

import argparse
import os
import sys

from opuslm import __version__
from opuslm.cli import assets, data, demo, evaluate, help_formatter, layout, model, stages, tokenizers
from opuslm.errors import OpusLMError

# Each module contributes its subcommands through `register(subparsers)` and sets `func` on them.
COMMAND_MODULES = (data, tokenizers, layout, model, stages, evaluate, demo, assets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opuslm",
        description="Unified speech-text language models: build a corpus, tokenize it, train in "
        "stages from a text LLM, generate and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"opuslm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    for command in _all_parsers(parser):  # one formatter everywhere: defaults once, required said
        command.formatter_class = help_formatter
    return parser


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def main(argv: list[str] | None = None) -> int:
    # transformers' per-file "Loading weights" bars drown our own progress; HF_HUB_DISABLE_PROGRESS_BARS=0 restores them
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except OpusLMError as error:
        if args.debug:
            raise
        print(f"opuslm: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error; keep Python's exit flush quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("opuslm: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug, not a user error: say so, keep the traceback one flag away
        if args.debug:
            raise
        print(
            f"opuslm: internal error: {type(error).__name__}: {error} "
            "(re-run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
