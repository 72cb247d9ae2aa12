"""Human-readable views of frames, for `opuslm templates show`, reviews and golden tests.

`decoded_form` folds a template's frames into one line:

    <sos> <task:asr> <audio_start> [audio x30] <pad>x2 <text_start> "what is nine" <eos> <pad>x2

`frame_table` prints one row per frame and one column per stream (`.` is pad, `s17` a semantic id,
`c3:45` code 45 of codebook 3, text as the tokenizer's token string); it reads delayed frames too.
"""

from __future__ import annotations

import numpy as np

from opuslm.vocab import MODALITIES, PAD_ID, JointVocab


# what a frame is, by the modality of its stream-0 id (a codebook id there is not a frame of any template)
_FRAME_KINDS = {"special": "special", "semantic": "audio", "codec": "other", "text": "text"}


def _column_kind(column: np.ndarray, vocab: JointVocab) -> str:
    if (column == PAD_ID).all():
        return "pad"
    return _FRAME_KINDS[MODALITIES[int(vocab.modality(column[0]))]]


def decoded_form(tokens: np.ndarray, vocab: JointVocab, tokenizer) -> str:
    """One line for undelayed frames `[N, T]`: specials by name, runs of audio frames and pads counted,
    runs of text decoded by the text tokenizer."""
    tokens = np.asarray(tokens)
    parts: list[str] = []
    t = 0
    while t < tokens.shape[1]:
        kind = _column_kind(tokens[:, t], vocab)
        run = t + 1
        while kind != "special" and run < tokens.shape[1] and _column_kind(tokens[:, run], vocab) == kind:
            run += 1
        if kind == "pad":
            parts.append(f"<pad>x{run - t}")
        elif kind == "audio":
            parts.append(f"[audio x{run - t}]")
        elif kind == "text":
            parts.append('"' + tokenizer.decode(vocab.to_text(tokens[0, t:run]).tolist(), skip_special_tokens=False) + '"')
        elif kind == "special":
            parts.append(vocab.describe(tokens[0, t]))
        else:
            parts.append("[" + " ".join(vocab.describe(i) for i in tokens[:, t]) + "]")
        t = run
    return " ".join(parts)


def cell_name(joint_id: int, vocab: JointVocab, tokenizer) -> str:
    if joint_id == PAD_ID:
        return "."
    if MODALITIES[int(vocab.modality(joint_id))] == "text":
        return repr(tokenizer.convert_ids_to_tokens(int(vocab.to_text(joint_id))))
    return vocab.describe(joint_id)


def frame_table(tokens: np.ndarray, vocab: JointVocab, tokenizer, target: np.ndarray | None = None,
                max_frames: int | None = None) -> str:
    """A frame per row, a stream per column; `*` marks a cell that carries target loss."""
    tokens = np.asarray(tokens)
    shown = tokens.shape[1] if max_frames is None else min(max_frames, tokens.shape[1])
    rows = [["frame"] + [f"stream{n}" for n in range(tokens.shape[0])]]
    for t in range(shown):
        cells = []
        for n in range(tokens.shape[0]):
            name = cell_name(int(tokens[n, t]), vocab, tokenizer)
            cells.append(name + ("*" if target is not None and target[n, t] else ""))
        rows.append([str(t)] + cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    if shown < tokens.shape[1]:
        lines.append(f"... {tokens.shape[1] - shown} more frames (--max-frames)")
    return "\n".join(lines)
