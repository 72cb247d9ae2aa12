"""The `opuslm` command line: one entry point, one module per group of subcommands."""

import argparse


def help_formatter(prog):
    """`--help` shows every option's default."""
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)
