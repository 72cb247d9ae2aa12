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
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}{_did_you_mean(model, e)}"
                             for e in error.errors())
        raise OpusLMError(f"{where}: {problems}") from None


def _did_you_mean(model: type[BaseModel], error: dict) -> str:
    """For an unknown key, the closest key the model (or the nested model at that place) knows."""
    from difflib import get_close_matches

    if error["type"] != "extra_forbidden":
        return ""
    known = _fields_at(model, error["loc"][:-1])
    close = get_close_matches(str(error["loc"][-1]), known, 1, 0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _fields_at(model, path) -> list[str]:
    """The keys the nested model at `path` of `model` accepts (its fields and aliases); [] when unknown."""
    import typing

    for step in path:
        field = model.model_fields.get(step) if isinstance(step, str) else None
        if field is None:
            if isinstance(step, int):  # a list item: the list's element type, kept from the step before
                continue
            return []
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        candidates += [a for c in candidates for a in typing.get_args(c)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return [*model.model_fields, *(f.alias for f in model.model_fields.values() if f.alias)]
