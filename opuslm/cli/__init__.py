"""The `opuslm` command line: one entry point, one module per group of subcommands."""

import argparse


def help_formatter(prog):
    """`--help` shows every option's default once, and which options are required (`_HelpFormatter`)."""
    return _HelpFormatter(prog, max_help_position=32)


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


def require_device(device: str) -> None:
    """Refuse a torch device this machine does not have, naming the ones it has."""
    import torch

    from opuslm.errors import OpusLMError

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise OpusLMError(f"--device {device!r} is not a torch device; use cpu or cuda (cuda:N)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise OpusLMError(f"--device {device}: this machine has no CUDA device (torch.cuda.is_available() is False); "
                          "use --device cpu")
    if kind == "cuda" and torch.device(device).index is not None and torch.device(device).index >= torch.cuda.device_count():
        raise OpusLMError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default once: not when its help already says it, not for a default of None (the help
    says what happens then) or an off switch; a required option says it is required instead."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required and action.option_strings:
            return text if "required" in text else f"{text} (required)"
        if "(default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)
