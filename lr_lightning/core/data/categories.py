"""Categorical columns: :class:`Categories` turns text (or integer) category columns into treatment-coded dummies,
the first level the reference, named as statsmodels and formulaic (or patsy) name them: ``region[T.north]``, or
``C(region)[T.north]`` for a formula's ``C(region)``.

The encoding is plain data (:attr:`Categories.spec`, JSON-able): the datamodule saves it in its hyperparameters, so it
travels in the checkpoint, and ``predict.py`` encodes new rows with the same levels, refusing a level it never saw.
:func:`parse_formula` reads ``"price ~ size + age + C(region)"`` with formulaic into the target, the input columns
and which of them are categorical. (A CSV's text columns are read by
:func:`~lr_lightning.core.data.csv_table.read_text_columns`.)

numpy and pyarrow only, no torch: ``predict.py --onnx`` may import this module.

>>> import numpy as np
>>> c = Categories.of({"size": np.array([1.0, 2.0, 3.0]), "region": np.array(["south", "east", "north"])},
...                   ["region"])
>>> c.levels, c.names
({'region': ['east', 'north', 'south']}, ['size', 'region[T.north]', 'region[T.south]'])
>>> c.encode({"size": np.array([5.0]), "region": np.array(["north"])}).tolist()
[[5.0, 1.0, 0.0]]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Level = str | int


def _default_where(row: int) -> str:
    return f"row {row + 1} (1-based)"


class Categories:
    """The inputs of a table with categorical columns: ``inputs`` (the raw columns, in order), ``levels`` (each
    categorical column's sorted levels: strings in lexicographic order, integers in numeric order; the first is the
    reference) and ``terms`` (the name each dummy is prefixed with: the column, or ``C(column)``).

    :attr:`names` are the encoded features: each numeric input as it is, each categorical one replaced, in place, by
    one dummy per level but the first.
    """

    def __init__(self, inputs: Sequence[str], levels: Mapping[str, Sequence[Level]],
                 terms: Mapping[str, str] | None = None) -> None:
        self.inputs = list(inputs)
        self.levels = {c: list(v) for c, v in levels.items()}
        self.terms = {c: (terms or {}).get(c, c) for c in self.levels}
        unknown = [c for c in self.levels if c not in self.inputs]
        if unknown:
            raise ValueError(f"categories: {', '.join(map(repr, unknown))} is not an input column")

    @classmethod
    def of(cls, columns: Mapping[str, np.ndarray], categorical: Sequence[str], terms: Mapping[str, str] | None = None,
           where: Callable[[int], str] = _default_where) -> Categories:
        """The categories of ``columns`` (name -> values, in input order): the levels of each ``categorical``
        column are the values seen in it (an empty or null value is refused, naming its row)."""
        return cls(list(columns), {c: find_levels(columns[c], c, where) for c in categorical}, terms)

    @property
    def spec(self) -> dict[str, Any]:
        """Plain data (JSON-able): ``{"inputs": [...], "levels": {column: [...]}, "terms": {column: term}}``."""
        return {"inputs": list(self.inputs), "levels": {c: list(v) for c, v in self.levels.items()},
                "terms": dict(self.terms)}

    @classmethod
    def from_spec(cls, spec: Any, what: str = "categories") -> Categories:
        """The categories a :attr:`spec` describes, checked (it may come from a file): one line naming what is wrong."""
        ok = isinstance(spec, Mapping) and isinstance(spec.get("inputs"), list) \
            and all(isinstance(c, str) for c in spec["inputs"]) and isinstance(spec.get("levels"), Mapping) \
            and isinstance(spec.get("terms", {}), Mapping)
        if ok:
            for levels in spec["levels"].values():
                ok = ok and isinstance(levels, list) and len(levels) > 0 and len(set(levels)) == len(levels) and (
                    all(isinstance(v, str) for v in levels) or all(_is_int(v) for v in levels))
        if not ok:
            raise ValueError(f"{what}: expected inputs (a list of column names) and levels (column -> list of "
                             f"distinct levels), got {spec!r:.80}")
        return cls(spec["inputs"], spec["levels"], spec.get("terms"))

    @property
    def categorical(self) -> list[str]:
        return [c for c in self.inputs if c in self.levels]

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.inputs if c not in self.levels]

    @property
    def names(self) -> list[str]:
        """The encoded feature names: ``size``, ``region[T.north]``, ... (the reference level has no column)."""
        return [n for c in self.inputs for n in self._names(c)]

    def _names(self, column: str) -> list[str]:
        if column not in self.levels:
            return [column]
        return [f"{self.terms[column]}[T.{level}]" for level in self.levels[column][1:]]

    def encode(self, columns: Mapping[str, np.ndarray], where: Callable[[int], str] = _default_where) -> np.ndarray:
        """The float64 ``(rows, len(names))`` features of ``columns`` (name -> values; categorical ones as text or
        integers). A level not among the known ones is refused: one line naming the row, the column and the level."""
        parts = []
        for c in self.inputs:
            values = np.asarray(columns[c])
            if c not in self.levels:
                parts.append(values.astype(np.float64)[:, None])
                continue
            levels = self.levels[c]
            values = _as_levels(values, levels, c, where)
            index = {v: i for i, v in enumerate(levels)}
            codes = np.fromiter((index.get(v, -1) for v in values.tolist()), dtype=np.int64, count=len(values))
            if (codes < 0).any():
                row = int(np.flatnonzero(codes < 0)[0])
                raise ValueError(f"{where(row)}, column {c!r}: level {values[row]!r} was not seen in training (the "
                                 f"levels are {', '.join(map(str, levels))})")
            parts.append((codes[:, None] == np.arange(1, len(levels))[None, :]).astype(np.float64))
        n = len(next(iter(columns.values()))) if columns else 0
        return np.hstack(parts) if parts else np.empty((n, 0))


def find_levels(values: np.ndarray, column: str, where: Callable[[int], str] = _default_where) -> list[Level]:
    """The sorted distinct values of a category column: strings lexicographic, integers numeric (as patsy and
    formulaic sort them). Empty text, None or nan is refused, naming the first such row."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ValueError(f"{where(int(np.flatnonzero(~np.isfinite(values))[0]))}, column {column!r}: empty "
                             "(null) value in a category column; fill it or drop the row")
        if (values != np.round(values)).any():
            row = int(np.flatnonzero(values != np.round(values))[0])
            raise ValueError(f"{where(row)}, column {column!r}: {values[row]} is not an integer; a numeric category "
                             "column holds integers")
        values = values.astype(np.int64)
    if values.dtype.kind in "iub":
        return [int(v) for v in np.unique(values)]
    text = values.astype(object)
    bad = [i for i, v in enumerate(text.tolist()) if v is None or (isinstance(v, str) and not v.strip())]
    if bad:
        raise ValueError(f"{where(bad[0])}, column {column!r}: empty (null) value in a category column; fill it or "
                         "drop the row")
    return order_levels({str(v) for v in text.tolist()})


def merge_levels(*found: Sequence[Level]) -> list[Level]:
    """The sorted union of levels found in several files or row groups (one pass over each)."""
    return order_levels(set().union(*map(set, found)))


def order_levels(levels: Any) -> list[Level]:
    """Levels sorted as patsy and formulaic sort them: integers and text that is all numbers (a CSV's ``9.0``,
    ``12.0``) by value, other text lexicographically. The first is the reference level.

    >>> order_levels({"12.0", "9.0", "20.5"}), order_levels({"b", "a10", "a9"})
    (['9.0', '12.0', '20.5'], ['a10', 'a9', 'b'])
    """
    numbers = _numbers(levels)
    return sorted(levels, key=numbers.__getitem__) if numbers is not None else sorted(levels)


def _numbers(levels: Any) -> dict[str, float] | None:
    """Each text level's number, when every level is text that reads as a finite number; else None."""
    if not levels or not all(isinstance(v, str) for v in levels):
        return None
    try:
        numbers = {v: float(v) for v in levels}
    except ValueError:
        return None
    return numbers if all(math.isfinite(x) for x in numbers.values()) else None


def _as_levels(values: np.ndarray, levels: list[Level], column: str, where: Callable[[int], str]) -> np.ndarray:
    """``values`` in the levels' type: integer levels read from text (a CSV at predict time) become integers."""
    if levels and isinstance(levels[0], int) and values.dtype.kind not in "iu":
        try:
            return np.array([int(str(v).strip()) for v in values.tolist()], dtype=np.int64)
        except ValueError:
            row = next(i for i, v in enumerate(values.tolist()) if not _is_int_text(str(v)))
            raise ValueError(f"{where(row)}, column {column!r}: level {values[row]!r} was not seen in training "
                             f"(the levels are {', '.join(map(str, levels))})") from None
    if levels and isinstance(levels[0], str):
        text = [str(v).strip() for v in values.tolist()]
        numbers = _numbers(levels)
        if numbers is not None:  # levels of numbers: 9 is the level 9.0 (as patsy reads both as the number 9.0)
            by_value = {x: v for v, x in numbers.items()}
            text = [by_value.get(_number(v), v) for v in text]
        return np.array(text, dtype=object)
    return values


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_int_text(text: str) -> bool:
    try:
        int(text.strip())
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------- formulas
_C = re.compile(r"^C\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)$")


def parse_formula(formula: str) -> tuple[str, list[str], dict[str, str], bool]:
    """``"price ~ size + age + C(region)"`` read by formulaic: ``(target, inputs, categorical, intercept)``, where
    ``categorical`` maps each ``C(column)`` to its term name and ``intercept`` is False for ``- 1`` or ``+ 0``. Terms
    beyond column names, ``C(column)`` and ``+`` are refused in one line, and so is the target on the right side
    (``y ~ a + y``, which statsmodels fits perfectly).

    >>> parse_formula("price ~ size + age + C(region)")
    ('price', ['size', 'age', 'region'], {'region': 'C(region)'}, True)
    """
    try:
        import formulaic
    except ImportError:
        raise ValueError("formula: needs formulaic (pip install -e '.[formula]' in the clone)") from None
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula: expected 'target ~ column + column + C(column)', got {formula!r}")
    try:
        parsed = formulaic.Formula(formula)
    except Exception as e:  # noqa: BLE001 - formulaic's parse errors have many classes
        raise ValueError(f"formula {formula!r}: cannot parse it ({str(e).splitlines()[0]})") from None
    lhs = [t for t in parsed.lhs]
    if len(lhs) != 1 or len(lhs[0].factors) != 1 or lhs[0].factors[0].eval_method.value != "lookup":
        raise ValueError(f"formula {formula!r}: the left side must be one target column")
    target = lhs[0].factors[0].expr
    inputs: list[str] = []
    categorical: dict[str, str] = {}
    intercept = False
    for term in parsed.rhs:
        factors = term.factors
        if len(factors) == 1 and factors[0].eval_method.value == "literal" and factors[0].expr == "1":
            intercept = True
            continue
        match = _C.match(factors[0].expr) if len(factors) == 1 else None
        if len(factors) == 1 and factors[0].eval_method.value == "lookup":
            column = factors[0].expr
        elif match and factors[0].eval_method.value == "python":
            column = match.group(1)
            categorical[column] = f"C({column})"
        else:
            raise ValueError(f"formula {formula!r}: the term {str(term)!r} is not supported; use column names, "
                             "C(column) and +")
        if column in inputs:
            raise ValueError(f"formula {formula!r}: the column {column!r} appears twice")
        inputs.append(column)
    if not inputs:
        raise ValueError(f"formula {formula!r}: no input columns on the right side")
    if target in inputs:  # statsmodels fits it, perfectly: never what was meant
        raise ValueError(f"formula {formula!r}: the target {target!r} is also on the right-hand side")
    return target, inputs, categorical, intercept


def formula_columns(formula: str, target: str | None, categorical: Sequence[str] | None,
                    kwargs: dict[str, Any]) -> tuple[str, list[str], dict[str, str], list[str]]:
    """A file source's ``formula`` (:func:`parse_formula`) with its other arguments: ``(target, inputs, terms,
    categorical)``; ``kwargs`` (the datamodule's) gets ``bias=False`` for ``- 1``. A weight or cluster column that is
    also a term of the formula is refused in one line naming both roles (it is a column beside the formula's).

    >>> formula_columns("y ~ a + C(g)", None, None, {"weights": "w"})
    ('y', ['a', 'g'], {'g': 'C(g)'}, ['g'])
    """
    formula_target, inputs, terms, intercept = parse_formula(formula)
    if target is not None and target != formula_target:
        raise ValueError(f"target={target!r} but the formula's target is {formula_target!r}; give one")
    categorical = [*terms, *(c for c in categorical or () if c not in terms)]
    for argument, role in (("weights", "the weights"), ("clusters", "a cluster column")):
        given = kwargs.get(argument)
        names = [given] if isinstance(given, str) else given if isinstance(given, (list, tuple)) else []
        both = next((c for c in names if c in inputs), None)
        if both is not None:
            raise ValueError(f"formula {formula!r}: column {both!r} is an input of the formula and {role} "
                             f"({argument}=); a {argument.rstrip('s')} column is no feature: drop it from one")
    if not intercept:
        if categorical:
            raise ValueError(f"formula {formula!r}: no intercept (- 1, + 0) with a categorical column is not "
                             "supported; keep the intercept")
        kwargs["bias"] = False
    return formula_target, inputs, terms, categorical


__all__ = ["Categories", "find_levels", "formula_columns", "merge_levels", "parse_formula"]
