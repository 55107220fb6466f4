"""A trial's values: sampled define-by-run from a search's params, written as Hydra overrides;
and the corners and grid of a search space."""

from __future__ import annotations

import json
import math
from typing import Any

import optuna

from xferlab.tune._space import Param


def suggest(trial: optuna.Trial, params: dict[str, Param]) -> dict[str, Any]:
    """The trial's value of each param whose `when` holds, in file order (define-by-run)."""
    values: dict[str, Any] = {}
    for key, p in params.items():
        if all(k in values and values[k] == v for k, v in p.when.items()):
            values[key] = _suggest(trial, key, p)
    return values


def _suggest(trial: optuna.Trial, key: str, p: Param) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(key, p.choices)
    if p.type == "int":
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)


def as_overrides(values: dict[str, Any]) -> list[str]:
    """Hydra overrides giving each config key (or group) its value, floats in full precision."""
    return [f"{key}={_hydra_value(value)}" for key, value in values.items()]


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # true, false, null
    return repr(value) if isinstance(value, float) else str(value)


def corners(params: dict[str, Param]) -> list[list[str]]:
    """Override lists that set each param to both ends of its range and to each of its choices,
    under its `when`: composing them all checks the whole space before any trial runs."""
    out = []
    for key, p in params.items():
        ends = p.choices if p.type == "categorical" else [p.low, p.high]
        ends = [int(v) for v in ends] if p.type == "int" else ends
        out += [as_overrides({**p.when, key: value}) for value in ends]
    return out


def grid(params: dict[str, Param]) -> dict[str, list[Any]]:
    """Every value of each param, for the grid sampler (floats need a step)."""
    values = {}
    for key, p in params.items():
        if p.type == "categorical":
            values[key] = list(p.choices)
        elif p.type == "int":
            values[key] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        else:
            count = math.floor((p.high - p.low) / p.step + 1e-9) + 1
            values[key] = [round(p.low + i * p.step, 12) for i in range(count)]
    return values
