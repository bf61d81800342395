"""The tidy tables every analysis function takes, and their validating constructors.

The Django loader (``evalsite/dashboard/loader.py``) and the simulator (``simulate.py``) both go
through :func:`make_ratings` / :func:`make_responses`, so the analysis sees one shape whatever the
source. One row of the ratings table is one rater's verdict on one comparison; "A" and "B" name the
two responses of the comparison (fixed per comparison), while ``left_side`` records which of them
the rater saw on the left (randomised per assignment).

Extra columns pass through untouched; the agreement module reads Likert style aspects from
``aspect_<name>_a`` / ``aspect_<name>_b`` (scores 1-5, missing allowed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

WINNERS = ("A", "B", "tie", "both_bad")
SIDES = ("A", "B")
VERDICTS = ("correct", "error", "unsure")

# Required columns: no sensible default exists for them.
RATING_REQUIRED = (
    "rating_id",
    "comparison_id",
    "prompt_id",
    "rater_id",
    "model_a",
    "model_b",
    "winner",
    "left_side",
)

# Optional columns and the value a missing column is filled with.
RATING_DEFAULTS: dict[str, Any] = {
    "category": "default",
    "is_expert": False,
    "role_a": "other",
    "role_b": "other",
    "strength": np.nan,
    "correct_a": None,
    "correct_b": None,
    "error_spans_a": 0,
    "error_spans_b": 0,
    "text_a": "",
    "text_b": "",
    "response_id_a": None,
    "response_id_b": None,
    "is_attention_check": False,
    # For attention checks: the answer a careful rater gives ("A", "B", "tie" or "both_bad").
    "expected_winner": None,
    "flagged": False,
    "time_on_task_s": np.nan,
}

RATING_COLUMNS = RATING_REQUIRED + tuple(RATING_DEFAULTS)

RESPONSE_REQUIRED = ("response_id", "prompt_id", "model", "text")
RESPONSE_DEFAULTS: dict[str, Any] = {
    "role": "other",
    "category": "default",
    "reference_answers": None,
}
RESPONSE_COLUMNS = RESPONSE_REQUIRED + tuple(RESPONSE_DEFAULTS)


class SchemaError(ValueError):
    """The input table does not have the shape the analysis needs; the message says what to fix."""


def _as_frame(data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data.copy()
    return pd.DataFrame(list(data))


def _check_required(df: pd.DataFrame, required: tuple[str, ...], table: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SchemaError(f"{table} table lacks required column(s) {missing}; present: {list(df.columns)}")


def _check_values(series: pd.Series, allowed: tuple[str, ...], column: str, nullable: bool) -> None:
    values = series.dropna() if nullable else series
    bad = ~values.isin(allowed)
    if bad.any():
        examples = sorted({repr(v) for v in values[bad].head(5)})
        raise SchemaError(f"column {column!r} has value(s) {examples}; allowed: {list(allowed)}")


def _null_mask(series: pd.Series) -> np.ndarray:
    """Missing values of an id column: None, NaN, pd.NA, or the empty string (vectorised)."""
    mask = series.isna().to_numpy().copy()
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        mask |= (series == "").to_numpy(dtype=bool)
    return mask


def check_not_null(df: pd.DataFrame, columns: Iterable[str], table: str = "ratings") -> None:
    """Raise :class:`SchemaError` naming the first column in ``columns`` with a missing value.

    Ids become strings later, and ``str(None)`` is the perfectly valid-looking id ``"None"``: a
    null id must be refused before that, not discovered as a crash inside a fit.
    """
    for column in columns:
        if column not in df.columns:
            raise SchemaError(f"{table} table lacks required column {column!r}; present: {list(df.columns)}")
        mask = _null_mask(df[column])
        if mask.any():
            rows = [str(i) for i in df.index[mask][:5]]
            raise SchemaError(
                f"column {column!r} of the {table} table has {int(mask.sum())} missing value(s) "
                f"(None, NaN or empty), e.g. in row(s) {', '.join(rows)}; every rating needs one"
            )


def require_ratings(ratings: pd.DataFrame, columns: Iterable[str], where: str, nullable: Iterable[str] = ()) -> None:
    """Check, before any fit, that ``ratings`` has ``columns`` without missing values (and the
    ``nullable`` columns, which may have them).

    For tables that did not come through :func:`make_ratings` (the analysis functions are public):
    ``where`` names the caller in the message.
    """
    columns = list(columns)
    nullable = list(nullable)
    if not isinstance(ratings, pd.DataFrame):
        kind = type(ratings).__name__
        raise SchemaError(f"{where}: ratings must be a pandas DataFrame (see make_ratings), not {kind}")
    missing = [c for c in columns + nullable if c not in ratings.columns]
    if missing:
        raise SchemaError(f"{where}: ratings table lacks column(s) {missing}; build it with make_ratings")
    check_not_null(ratings, columns, "ratings")


def model_codes(ratings: pd.DataFrame, models: list[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(models, code of model_a, code of model_b) per rating; -1 where a model is not in ``models``.

    Built with one hash pass (``pd.factorize``) or categorical codes instead of Python sets and
    ``Series.map`` over the rows: about ten times faster on a million string rows. Without
    ``models``, they are the sorted names that occur in a comparison of two different models
    (attention checks pairing a model with itself do not count). With ``models``, a name absent
    from the table raises :class:`SchemaError`: its rating would be invented, not estimated.
    """
    n = len(ratings)
    codes, uniques = pd.factorize(pd.concat([ratings["model_a"], ratings["model_b"]], ignore_index=True), sort=True)
    names = [str(u) for u in uniques]
    a_codes, b_codes = codes[:n].astype(np.int64), codes[n:].astype(np.int64)
    if models is None:
        used = np.zeros(len(names), dtype=bool)
        distinct = a_codes != b_codes
        used[a_codes[distinct]] = True
        used[b_codes[distinct]] = True
        models = [name for name, u in zip(names, used, strict=True) if u]
    else:
        models = [str(m) for m in models]
        if len(set(models)) != len(models):
            raise SchemaError(f"models lists a name twice: {models}")
        unknown = sorted(set(models) - set(names))
        if unknown:
            raise SchemaError(f"model(s) {unknown} do not occur in columns 'model_a' / 'model_b' of the ratings")
    position = {m: i for i, m in enumerate(models)}
    # Unique names -> index in ``models`` (-1: not analysed), then one take per column.
    lookup = np.array([position.get(name, -1) for name in names] + [-1], dtype=np.int64)
    a_codes, b_codes = lookup[a_codes], lookup[b_codes]  # code -1 (a missing value) takes the last entry
    return models, a_codes, b_codes


def _fill_defaults(df: pd.DataFrame, defaults: Mapping[str, Any]) -> None:
    for column, default in defaults.items():
        if column not in df.columns:
            df[column] = pd.Series([default] * len(df), index=df.index, dtype=object)
        elif default is not None and not (isinstance(default, float) and np.isnan(default)):
            df[column] = df[column].where(df[column].notna(), default)


def make_ratings(data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Validate and normalise a ratings table (a DataFrame or an iterable of dicts).

    Fills optional columns with their defaults, coerces dtypes (booleans, nullable integer
    strength, integer error-span counts, string ids) and checks the categorical columns. Raises
    :class:`SchemaError` (a ``ValueError``) with a message that names the offending column and
    values; a missing id (None, NaN, empty) in a required column is refused before ids become
    strings.
    """
    df = _as_frame(data)
    if df.empty:
        df = pd.DataFrame({c: pd.Series(dtype=object) for c in RATING_COLUMNS})
    _check_required(df, RATING_REQUIRED, "ratings")
    check_not_null(df, RATING_REQUIRED, "ratings")
    _fill_defaults(df, RATING_DEFAULTS)
    _check_values(df["winner"], WINNERS, "winner", nullable=False)
    _check_values(df["left_side"], SIDES, "left_side", nullable=False)
    _check_values(df["expected_winner"], WINNERS, "expected_winner", nullable=True)
    for column in ("correct_a", "correct_b"):
        df[column] = df[column].astype(object).where(df[column].notna(), None)
        _check_values(df[column], VERDICTS, column, nullable=True)
    for column in ("is_expert", "is_attention_check", "flagged"):
        df[column] = df[column].astype(bool)
    for column in ("error_spans_a", "error_spans_b"):
        df[column] = pd.to_numeric(df[column]).fillna(0).astype(np.int64)
    df["strength"] = pd.to_numeric(df["strength"]).astype("Float64")
    bad_strength = df["strength"].notna() & ~df["strength"].isin([1, 2, 3, 4, 5])
    if bad_strength.any():
        raise SchemaError("column 'strength' must be an integer 1-5 or missing")
    df["time_on_task_s"] = pd.to_numeric(df["time_on_task_s"]).astype(float)
    # Ids become strings so that ids from the database and from the simulator compare alike.
    for column in ("rating_id", "comparison_id", "prompt_id", "rater_id", "model_a", "model_b"):
        df[column] = df[column].astype(str)
    for column in ("text_a", "text_b", "category", "role_a", "role_b"):
        df[column] = df[column].fillna("").astype(str)
    if df["rating_id"].duplicated().any():
        raise SchemaError("column 'rating_id' must be unique")
    same = df["model_a"] == df["model_b"]
    if same.any() and not df.loc[same, "is_attention_check"].all():
        raise SchemaError("a non-attention-check comparison has the same model on both sides")
    return df[list(RATING_COLUMNS) + [c for c in df.columns if c not in RATING_COLUMNS]].reset_index(drop=True)


def make_responses(data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Validate and normalise a responses table: one row per generated answer.

    ``reference_answers`` becomes a list of strings (empty when the prompt has none), so the
    factuality check can tell "no reference" from "wrong".
    """
    df = _as_frame(data)
    if df.empty:
        df = pd.DataFrame({c: pd.Series(dtype=object) for c in RESPONSE_COLUMNS})
    _check_required(df, RESPONSE_REQUIRED, "responses")
    check_not_null(df, ("response_id", "prompt_id", "model"), "responses")
    _fill_defaults(df, RESPONSE_DEFAULTS)

    def as_list(value: Any) -> list[str]:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return []
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value]

    df["reference_answers"] = [as_list(v) for v in df["reference_answers"]]
    for column in ("response_id", "prompt_id", "model"):
        df[column] = df[column].astype(str)
    for column in ("text", "role", "category"):
        df[column] = df[column].fillna("").astype(str)
    if df["response_id"].duplicated().any():
        raise SchemaError("column 'response_id' must be unique")
    return df[list(RESPONSE_COLUMNS) + [c for c in df.columns if c not in RESPONSE_COLUMNS]].reset_index(drop=True)


def select_ratings(
    ratings: pd.DataFrame, *, include_flagged: bool = False, include_attention: bool = False
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The ratings an analysis uses by default, and how many were left out and why.

    Attention checks and ratings by flagged/blocked raters are excluded unless asked for.
    """
    keep = np.ones(len(ratings), dtype=bool)
    excluded = {"attention_checks": 0, "flagged_raters": 0}
    if not include_attention:
        attention = ratings["is_attention_check"].to_numpy(bool)
        excluded["attention_checks"] = int(attention.sum())
        keep &= ~attention
    if not include_flagged:
        flagged = ratings["flagged"].to_numpy(bool) & keep
        excluded["flagged_raters"] = int(flagged.sum())
        keep &= ~flagged
    excluded["total"] = excluded["attention_checks"] + excluded["flagged_raters"]
    return ratings.loc[keep].reset_index(drop=True), excluded


def teacher_model(ratings: pd.DataFrame) -> str | None:
    """The alias of the teacher model (role ``teacher``), or None when the study has none."""
    names = pd.concat(
        [
            ratings.loc[ratings["role_a"] == "teacher", "model_a"],
            ratings.loc[ratings["role_b"] == "teacher", "model_b"],
        ]
    ).unique()
    if len(names) == 0:
        return None
    # More than one teacher is unusual; the most-rated one is the reference.
    counts = pd.concat([ratings["model_a"], ratings["model_b"]]).value_counts()
    return str(max(names, key=lambda n: counts.get(n, 0)))
