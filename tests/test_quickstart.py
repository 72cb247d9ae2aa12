"""The README's quick start, run as written: after a smoke-size `make demo`, every command of its
"Quick start" section in the README's own words, from a folder laid out like the repository's root.
Each output is held to the form of the output block the README shows after it, so a command that
stops working, or starts printing something else, fails here and the README cannot go stale."""

import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from opuslm.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
# The demo at smoke size (tests/test_demo.py's); stage commands run at its steps scale, so that the
# ablation starts from the pretraining the demo ran.
SMOKE_SCALE = "0.01"
SMOKE_DEMO = ["--hours", "0.03", "--codec-frames", "2000", "--llm-steps", "3", "--judge-steps", "3", "--aligner-steps", "30",
              "--steps-scale", SMOKE_SCALE, "--text-lines", "2000", "--workers", "1", "--seed", "3"]


def quick_start() -> list[tuple[list[list[str]], list[str] | None]]:
    """Each ```bash block of the README's "Quick start" as its commands, with the lines of the ```text
    block that follows it (None where none does)."""
    lines = (ROOT / "README.md").read_text().split("\n## Quick start\n", 1)[1].splitlines(keepends=True)
    fenced, section = False, ""
    for line in lines:  # up to the next heading outside a code block (an output may print one)
        if line.startswith("## ") and not fenced:
            break
        fenced ^= line.startswith("```")
        section += line
    blocks = re.findall(r"```(bash|text)\n(.*?)```", section, re.S)
    steps = []
    for i, (kind, body) in enumerate(blocks):
        if kind == "bash":
            follows = blocks[i + 1] if i + 1 < len(blocks) else None
            shown = follows[1].splitlines() if follows and follows[0] == "text" else None
            commands = [shlex.split(line, comments=True) for line in body.replace("\\\n", " ").splitlines()]
            steps.append(([c for c in commands if c], shown))
    return steps


def make_recipe(target: str) -> list[str]:
    """The command a Makefile target runs, its variables filled in from their defaults."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    variables = dict(re.findall(r"^(\w+) [?:]?= (.*)$", text, re.M))
    [recipe] = re.findall(rf"^{re.escape(target)}:.*\n\t(.*)$", text, re.M)
    while "$(" in recipe:
        recipe = re.sub(r"\$\((\w+)\)", lambda m: variables[m[1]], recipe)
    return shlex.split(recipe)


def same_form(shown: str, printed: str) -> bool:
    """A printed line has the form of the README's: the same JSON keys; the same tab-separated fields
    with the same first one (the input); the same table row name; or the same words, numbers aside."""
    if shown.startswith("{"):
        return printed.startswith("{") and json.loads(shown).keys() == json.loads(printed).keys()
    if "\t" in shown:
        fields, got = shown.split("\t"), printed.split("\t")
        return len(fields) == len(got) and fields[0] == got[0] and all(
            re.fullmatch(r"WER [\d.]+", g) for f, g in zip(fields, got) if f.startswith("WER "))
    if shown.startswith("|"):
        return printed.startswith("|") and shown.split("|")[1] == printed.split("|")[1]
    number = r"\d+(\.\d+)?"
    return re.sub(number, "N", shown) == re.sub(number, "N", printed)


@pytest.mark.parametrize("shown, printed, same", [
    ('{"input": "a.wav", "labels": ["male"]}', '{"input": "a.wav", "labels": []}', True),
    ('{"input": "a.wav", "labels": ["male"]}', '{"input": "a.wav"}', False),
    ("a.wav\tthe cat sat", "a.wav\tsome other words", True),
    ("a.wav\tthe cat sat", "b.wav\tthe cat sat", False),
    ("a.wav\tthank you\tWER 1.000", "a.wav\tzoe\tWER 0.500", True),
    ("a.wav\tthank you\tWER 1.000", "a.wav\tzoe", False),
    ("| asr_wer_test | 0.154 |", "| asr_wer_test | 1.2 |", True),
    ("| asr_wer_test | 0.154 |", "| sgc_accuracy | 0.154 |", False),
    ("corpus WER 1.000 over 1 files", "corpus WER 0.5 over 1 files", True),
    ("report: my_eval/report.md", "report: other/report.md", False),
])
def test_an_output_has_the_form_the_readme_shows(shown, printed, same):
    assert same_form(shown, printed) is same


def test_the_makefile_runs_the_demo_and_the_ablation_the_readme_names():
    assert make_recipe("demo") == [".venv/bin/opuslm", "demo", "--out", "demo_out"]
    [(ablation, _)] = [step for step in quick_start() if step[0][0][1:3] == ["stages", "ablate"]]
    assert make_recipe("demo-ablation") == ablation[0]


def run(command: list[str], capsys, monkeypatch) -> str:
    """One README command here, in this process: `.venv/bin/opuslm` is the CLI, `.venv/bin/python` a
    script; stage commands at the smoke demo's steps scale."""
    program, *args = command
    capsys.readouterr()
    if program == ".venv/bin/opuslm":
        if args[:2] in (["stages", "run"], ["stages", "ablate"]):
            args += ["--steps-scale", SMOKE_SCALE]
        assert main(args) == 0, capsys.readouterr().err[-2000:]
    elif program == ".venv/bin/python":
        monkeypatch.setattr(sys, "argv", args)
        runpy.run_path(args[0], run_name="__main__")
    else:
        raise AssertionError(f"the quick start runs {program!r}; this test knows .venv/bin/opuslm and .venv/bin/python")
    return capsys.readouterr().out


def test_every_quick_start_command_runs_as_written_on_the_demo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for recipes in ("data_recipes", "stages"):  # the paths the commands name, as in the repository's root
        (tmp_path / recipes).symlink_to(ROOT / recipes)
    assert main(["demo", "--out", "demo_out", *SMOKE_DEMO]) == 0
    steps = quick_start()
    assert len(steps) >= 6
    for commands, shown in steps:
        printed = "".join(run(command, capsys, monkeypatch) for command in commands).splitlines()
        if shown is not None:
            assert len(printed) == len(shown), (commands, printed)
            for want, got in zip(shown, printed):
                assert same_form(want, got), (commands, want, got)
    assert (tmp_path / "my_tts" / "tts-0000.wav").stat().st_size > 44
    assert json.loads((tmp_path / "my_eval" / "results.json").read_text())["metrics"]["asr_wer_test"] >= 0
    assert (tmp_path / "finetune_out" / "run" / "finetune" / "model" / "adapter").is_dir()
    assert (tmp_path / "demo_out" / "run" / "ablations" / "anneal" / "ablation.md").is_file()
