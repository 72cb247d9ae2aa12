"""YAML files onto typed models: an unknown or mistyped key fails before any work, naming the key and
the file. The stage and schedule files (`train/config.py`), the plan (`plan.py`) and task declarations
(`tasks.py`) are all read this way."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from opuslm.errors import OpusLMError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise OpusLMError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise OpusLMError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise OpusLMError(f"{path} must hold a mapping of keys")
    return data


def validate(model: type[BaseModel], data: dict, where: str):
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors())
        raise OpusLMError(f"{where}: {problems}") from None
