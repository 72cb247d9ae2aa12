"""Every subcommand's --help: each option explained, its default said once, required options said so."""

import argparse
import re

from opuslm.cli.main import _all_parsers, build_parser


def _commands():
    def walk(parser, path):
        yield " ".join(path), parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + [name])
    return list(walk(build_parser(), ["opuslm"]))


def test_every_option_of_every_command_has_help_and_says_its_default_once():
    problems = []
    for path, parser in _commands():
        flat = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.dest
            if not action.help:
                problems.append(f"{path} {name}: no help")
            if action.required and action.option_strings and "required" not in parser.format_help():
                problems.append(f"{path} {name}: required but not said")
        problems += [f"{path}: {m.group(0)}" for m in re.finditer(r"\(default: [^)]*\)\s*\(default: [^)]*\)", flat)]
        problems += [f"{path}: says (default: None)" for _ in re.finditer(r"\(default: None\)", flat)]
    assert problems == []
    assert len(_commands()) == len(list(_all_parsers(build_parser()))) > 30


def test_a_required_option_says_required_and_a_default_shows_once():
    parsers = dict(_commands())
    text = " ".join(parsers["opuslm generate"].format_help().split())
    assert "--model MODEL OpusLM model folder (required)" in text
    assert text.count("(default: 8)") == 1 and "--json" in text and "(default: False)" not in text
