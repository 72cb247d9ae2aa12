"""Training checkpoints: everything a resumed run needs to continue bit for bit.

`step-NNNNNNNN/` holds `state.pt` (model and optimiser state as full, unsharded tensors; scheduler;
RNG states) and `trainer.json` (step, data-loader state, vocabulary hash, config), written last.
The folder is written under a temporary name and renamed, so a kill at any moment leaves every
folder that has the final name complete; older ones beyond `keep_last` are removed after a new one
lands. Full state dicts make a checkpoint loadable by any number of ranks, DDP or FSDP2. (The
Megatron backend writes its model and optimiser as a distributed checkpoint in `distributed/`.)
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from opuslm.errors import OpusLMError
from opuslm.json_files import write_json

PREFIX = "step-"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def staging_path(folder: Path, step: int) -> Path:
    """Where checkpoint `step` is written before it gets its final name (the same on every rank)."""
    return folder / f".{PREFIX}{step:08d}.tmp"


def staging(folder: Path, step: int) -> Path:
    """The empty temporary folder checkpoint `step` is written into (on one rank; others wait)."""
    tmp = staging_path(folder, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, folder: Path, step: int, info: dict, keep_last: int) -> Path:
    """Write `trainer.json` last, give the folder its final name, and keep the newest `keep_last`."""
    final = folder / f"{PREFIX}{step:08d}"
    write_json(tmp / "trainer.json", {**info, "step": step}, indent=1)
    if final.exists():  # a re-run that reached the same step: replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in complete(folder)[:-keep_last]:
        shutil.rmtree(old)
    return final


def save(folder: Path, step: int, state: dict, info: dict, keep_last: int) -> Path:
    """Write checkpoint `step` under `folder` atomically; keep the newest `keep_last`."""
    tmp = staging(folder, step)
    torch.save(state, tmp / "state.pt")
    return commit(tmp, folder, step, info, keep_last)


def complete(folder: Path) -> list[Path]:
    """Finished checkpoints, oldest first (leftover temporary folders are ignored)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and (p / "trainer.json").is_file())


def latest(folder: Path) -> Path | None:
    found = complete(folder)
    return found[-1] if found else None


def read_info(path: Path, vocab_hash: str) -> dict:
    info = json.loads((path / "trainer.json").read_text())
    if info.get("vocab_hash") != vocab_hash:
        raise OpusLMError(f"checkpoint {path} was made with joint vocabulary {info.get('vocab_hash')}, this run uses "
                          f"{vocab_hash}; resume with the data and tokenizers it was trained on")
    return info


def load(path: Path, vocab_hash: str) -> tuple[dict, dict]:
    info = read_info(path, vocab_hash)
    state = torch.load(path / "state.pt", weights_only=False)
    return state, info


class Checkpointer:
    """A stage's checkpoints: when one is due, taking it through the backend (which keeps the newest
    `keep_last`), and resuming from the newest. A checkpoint holds the model, optimiser, scheduler,
    RNG and data-stream state, so a resumed stage continues bit for bit."""

    def __init__(self, folder: Path, backend, every: int, keep_last: int, final_step: int):
        self.folder, self.backend = Path(folder), backend
        self.every, self.keep_last, self.final_step = every, keep_last, final_step

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.final_step

    def save(self, step: int, model, optimizer, scheduler, stream, info: dict) -> None:
        """`info`: what trainer.json records beside the step and the data stream's state."""
        self.backend.save(self.folder, step, model, optimizer, {"scheduler": scheduler.state_dict(), "rng": rng_state()},
                          {"data": stream.state(), **info}, self.keep_last)

    def resume(self, model, optimizer, scheduler, stream, vocab_hash: str) -> int | None:
        """Restore everything from the newest checkpoint; its step, or None when there is none."""
        found = latest(self.folder)
        if found is None:
            return None
        state, info = self.backend.restore(found, model, optimizer, vocab_hash)
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        stream.load_state(info["data"])
        return info["step"]
