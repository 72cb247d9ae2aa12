"""`opuslm demo`: `opuslm.demo.run_demo` behind argparse, one option per field of `DemoConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from opuslm.cli import help_formatter


def _option_type(hint):
    """The argparse `type` of a field: its annotation, without the None of an optional one."""
    if isinstance(hint, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def register(subparsers) -> None:
    from opuslm.demo import DemoConfig

    demo = subparsers.add_parser(
        "demo", formatter_class=help_formatter, help="run the whole pipeline on the embedded default (CPU, minutes)",
        description="Run the main job on the embedded default: synthesise the corpus and run every pipeline "
        "step after it. Re-running resumes: finished steps are skipped.",
    )
    defaults, hints = DemoConfig(), typing.get_type_hints(DemoConfig)
    for spec in dataclasses.fields(DemoConfig):
        kind = _option_type(hints[spec.name])
        how = {"action": argparse.BooleanOptionalAction} if kind is bool else {"type": kind}  # --x and --no-x
        demo.add_argument(f"--{spec.name.replace('_', '-')}", default=getattr(defaults, spec.name), **how, **spec.metadata)
    demo.set_defaults(func=_run)


def _run(args) -> None:
    from opuslm.demo import DemoConfig, run_demo

    run_demo(DemoConfig(**{spec.name: getattr(args, spec.name) for spec in dataclasses.fields(DemoConfig)}))
