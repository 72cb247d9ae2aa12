"""Progress bars that suit where they go: tqdm's bar on a terminal; in a log file (stderr redirected,
CI), one plain line every LOG_INTERVAL seconds instead of a bar redrawn with carriage returns on a
single line (the demo's 2,000 training steps wrote 450 KB on one line)."""

from __future__ import annotations

import sys

LOG_INTERVAL = 30.0  # seconds between progress lines when stderr is not a terminal


class _Lines:
    """A file for tqdm that writes each redraw as its own line, without the carriage return."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip("\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, stream=None, **options):
    """`tqdm(iterable, **options)`, line by line every LOG_INTERVAL seconds when `stream` (default:
    stderr) is not a terminal."""
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        options = {"mininterval": LOG_INTERVAL, "maxinterval": LOG_INTERVAL, "ascii": True, **options,
                   "file": _Lines(stream)}
    else:
        options = {**options, "file": stream}
    return tqdm(iterable, **options)
