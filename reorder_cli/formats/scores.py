"""Score values: the reference's ``float(value)`` rule, vectorised, with exact diagnostics.

A score is valid when it reads as a finite float64: ints, floats, numeric strings and
booleans (1/0). Missing, null, NaN, infinite and non-numeric values are invalid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from reorder_cli.config import did_you_mean

_MISSING = object()


def lookup(record: Any, dotted: str) -> Any:
    """``record['a']['b']`` for ``'a.b'``; ``_MISSING`` when any step is absent."""
    node = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def numeric_paths(record: Any, prefix: str = "") -> list[str]:
    """The dotted paths of the numbers in a JSON record (``metadata.score``), in the record's order."""
    if not isinstance(record, dict):
        return []
    out = []
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(path)
        elif isinstance(value, dict):
            out += numeric_paths(value, f"{path}.")
    return out


def field_hint(name: str, numeric: list[str]) -> str:
    """``; did you mean --score-field X?`` for a score field absent from a file: a numeric field of the
    same name nested in a struct (``metadata.score`` for ``score``), else the closest by spelling."""
    leaf = name.split(".")[-1]
    nested = [p for p in numeric if p != name and p.split(".")[-1] == leaf]
    hint = f"; did you mean {nested[0]}?" if nested else did_you_mean(name, [p for p in numeric if p != name])
    return hint.replace("did you mean ", "did you mean --score-field ") if hint else ""


def python_score(value: Any) -> tuple[float, str | None]:
    """(score, None) when valid, else (nan, a short description of what is wrong)."""
    if value is _MISSING:
        return math.nan, "missing"
    if value is None:
        return math.nan, "null"
    if isinstance(value, dict | list):
        return math.nan, f"{_short(value)} (not a number)"
    try:
        score = float(value)
    except (TypeError, ValueError):
        return math.nan, f"{_short(value)} (not a number)"
    except OverflowError:  # an integer beyond float64: as infinite as it gets
        return math.nan, f"{_short(value)} (too large for a float)"
    if math.isnan(score):
        return math.nan, f"{_short(value)} (NaN)"
    if math.isinf(score):
        return math.nan, f"{_short(value)} (infinite)"
    return score, None


def token_problem(value: Any) -> str:
    """Why ``value`` is not a token count (a non-negative integer)."""
    if value is _MISSING:
        return "missing (a token budget needs every row's token count)"
    if value is None:
        return "null (a token budget needs every row's token count)"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{_short(value)} is not an integer (a token count must be a non-negative integer)"
    if value < 0:
        return f"{value} is negative (a token count must be a non-negative integer)"
    return f"{value} does not fit a 64-bit integer"


def column_tokens(series: pl.Series, where: str, field: str) -> np.ndarray:
    """int64 token counts of a column; a one-line error (``where``: the file) at the first row that is
    not a non-negative integer (a float column must hold whole numbers)."""
    values = series.cast(pl.Int64, strict=False) if series.dtype.is_numeric() else None
    if values is None or series.dtype == pl.Boolean:
        raise ValueError(f"{where}: token field '{field}' is {series.dtype}, not integers")
    odd = values.is_null() | (values < 0)
    if series.dtype.is_float():
        odd = odd | (values.cast(pl.Float64) != series)
    bad = np.flatnonzero(odd.fill_null(True).to_numpy())
    if len(bad):
        row = int(bad[0])
        value = series[row]
        why = "null" if value is None else token_problem(int(value) if float(value).is_integer() else value)
        raise ValueError(f"{where}: row {row}: token field '{field}': {why}")
    return values.to_numpy().astype(np.int64)


def check_score_type(dtype: pl.DataType, where: str, field: str) -> None:
    """A score column holds numbers, booleans or numeric strings; a list or struct is refused."""
    if dtype.is_nested() or dtype == pl.Binary or dtype.is_temporal():
        raise ValueError(f"{where}: column '{field}' is {dtype}, not numbers; score_field must name a "
                         "number (or numeric string) column, e.g. a struct's number field as 'a.b'")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def strings_to_float(values: pl.Series) -> np.ndarray:
    """Fast path: numeric text to float64; anything else (or non-finite) becomes NaN."""
    out = values.cast(pl.Float64, strict=False).to_numpy().astype(np.float64, copy=False)
    out = np.where(np.isfinite(out), out, np.nan)
    return out


def series_scores(series: pl.Series) -> tuple[np.ndarray, dict[int, str]]:
    """Scores of a column of values (a Parquet score column, or a batch of it) by the reference's
    ``float(value)`` rule: (float64 scores, NaN where invalid; {row: what is wrong} for those).

    Numbers and numeric strings go through Polars; only invalid or unusual values reach Python."""
    if series.dtype == pl.Boolean or series.dtype.is_numeric():
        scores = series.cast(pl.Float64).to_numpy().astype(np.float64, copy=True)
        scores[~np.isfinite(scores)] = np.nan
    else:
        scores = strings_to_float(series.cast(pl.String, strict=False))
    bad: dict[int, str] = {}
    for row in np.flatnonzero(np.isnan(scores)).tolist():
        scores[row], why = python_score(series[row])
        if why is not None:
            bad[row] = why
    return scores, bad
