"""Progress in a log file is lines, not a bar redrawn on one line."""

import io

from opuslm.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_into_a_file_is_a_few_whole_lines_and_a_terminal_keeps_tqdms_bar():
    log = io.StringIO()
    for _ in progress_bar(range(2000), stream=log, desc="pretrain", unit="step"):
        pass
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("pretrain: 100%") and "2000/2000" in lines[-1]
    terminal = _Terminal()
    for _ in progress_bar(range(3), stream=terminal, desc="x", mininterval=0):
        pass
    assert "\r" in terminal.getvalue()
