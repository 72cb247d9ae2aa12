"""The `opuslm` command line: one entry point, one module per group of subcommands."""

import argparse


def help_formatter(prog):
    """`--help` shows every option's default."""
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


def positive(kind):
    """An argparse type: a number of `kind` greater than 0 (a limit of 0 would generate nothing)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse
