"""Model cards: declarative TOML files in ``models/`` describing one analysis.

A card names its data (a CSV next to it), the model (a formula, or for the notes' examples
how X and Z are built from indicator columns), coding, priors, named contrasts and sampler
settings. Every key is checked; an unknown key or a bad value raises
:class:`SpecificationError` naming it. Formulas may call only the safe transforms of
:mod:`bayes_lmm.formula`, so a card cannot run code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, SpecificationError
from .spec import CODINGS, PARAMETERIZATIONS, SAMPLERS, Prior

_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "model": {"name": str, "description": str, "data": str, "formula": str, "coding": str,
              "factors": list, "parameterization": str},
    "matrices": {"response": str, "intercept": bool, "indicators": list, "covariates": list,
                 "random": list},
    "priors": {},
    "contrasts": {},
    "sampler": {"sampler": str, "draws": int, "tune": int, "chains": int, "seed": int,
                "target_accept": (float, int)},
    "residual": {},
}


@dataclass(frozen=True)
class Card:
    """A validated model card."""

    path: Path
    name: str
    description: str
    data_path: Path
    formula: str | None
    coding: str
    factors: tuple[str, ...]
    parameterization: str
    matrices: dict[str, Any] | None
    priors: dict[str, Prior]
    contrasts: dict[str, str]
    sampler: dict[str, Any] = field(default_factory=dict)
    #: the residual structure of a ``[residual]`` table (``structure = "AR1"`` and its
    #: arguments as keys: ``time``, ``group``, ``sd_by``, ``by``, ``column``), or None
    residual: Any = None

    def load_data(self) -> pd.DataFrame:
        try:
            return pd.read_csv(self.data_path)
        except FileNotFoundError:
            raise DataError(f"card {self.path.name}: data file {str(self.data_path)!r} not found") from None
        except Exception as exc:
            raise DataError(f"card {self.path.name}: cannot read {str(self.data_path)!r}: {exc}") from None

    def matrices_from(self, data: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame, dict[str, pd.DataFrame]]:
        """y, X and Z blocks built from indicator columns, as the notes build them.

        X = [1, indicators of each level of each ``indicators`` column, ``covariates``];
        Z_j = indicators of the levels of random column j (Kronecker forms of the notes
        when rows are in the notes' order).
        """
        m = self.matrices or {}
        cols = [m["response"], *m.get("indicators", []), *m.get("covariates", []), *m.get("random", [])]
        missing = [c for c in cols if c not in data.columns]
        if missing:
            raise DataError(f"card {self.path.name}: columns {missing} are not in {self.data_path.name}")
        y = data[m["response"]].to_numpy(dtype=float)
        parts = []
        if m.get("intercept", True):
            parts.append(pd.DataFrame({"Intercept": np.ones(len(data))}, index=data.index))
        for col in m.get("indicators", []):
            dummies = pd.get_dummies(data[col].astype(str), dtype=float)
            dummies.columns = [f"{col}[{c}]" for c in dummies.columns]
            parts.append(dummies)
        for col in m.get("covariates", []):
            parts.append(data[[col]].astype(float))
        X = pd.concat(parts, axis=1)
        Z = {}
        for col in m.get("random", []):
            Z[col] = pd.get_dummies(data[col].astype(str), dtype=float)
        return y, X, Z


def _check_types(section: str, table: dict[str, Any], path: Path) -> None:
    schema = _SCHEMA[section]
    for key, value in table.items():
        if key not in schema:
            raise SpecificationError(
                f"card {path.name}: unknown key '{section}.{key}'; allowed keys in [{section}] are {sorted(schema)}"
            )
        want = schema[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise SpecificationError(
                f"card {path.name}: key '{section}.{key}' has a bad value {value!r} "
                f"(expected {getattr(want, '__name__', want)})"
            )


def _residual(table: dict[str, Any], path: Path):
    """The residual structure of a ``[residual]`` table, every key checked."""
    from dataclasses import fields

    from . import residual as _structures

    classes = {cls.__name__: cls for cls in _structures.STRUCTURES}
    name = table.get("structure")
    if name not in classes:
        raise SpecificationError(f"card {path.name}: key 'residual.structure' must be one of {sorted(classes)}, "
                                 f"got {name!r}")
    allowed = [f.name for f in fields(classes[name])]
    args = {k: v for k, v in table.items() if k != "structure"}
    unknown = [k for k in args if k not in allowed]
    if unknown:
        raise SpecificationError(f"card {path.name}: [residual] {name} takes keys {allowed}; unknown {unknown}")
    for key, value in args.items():
        if not isinstance(value, str):
            raise SpecificationError(f"card {path.name}: key 'residual.{key}' must be a column name (a string)")
    try:
        return classes[name](**args)
    except TypeError as exc:
        raise SpecificationError(f"card {path.name}: [residual] {name}: {exc}") from None


def load_card(path: str | Path) -> Card:
    """Read and validate a model card.

    Raises
    ------
    SpecificationError
        For TOML syntax errors, unknown sections or keys, values of the wrong type or out of
        range, a card with neither or both of ``model.formula`` and ``[matrices]``.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecificationError(f"model card {str(path)!r} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecificationError(f"card {path.name} is not valid TOML: {exc}") from None
    for section in raw:
        if section not in _SCHEMA:
            raise SpecificationError(
                f"card {path.name}: unknown section [{section}]; allowed sections are {sorted(_SCHEMA)}"
            )
        if not isinstance(raw[section], dict):
            raise SpecificationError(f"card {path.name}: '{section}' must be a table")
        if section not in ("priors", "contrasts", "residual"):
            _check_types(section, raw[section], path)
    model = raw.get("model", {})
    if "data" not in model:
        raise SpecificationError(f"card {path.name}: key 'model.data' (the CSV file) is required")
    matrices = raw.get("matrices")
    formula = model.get("formula")
    if (formula is None) == (matrices is None):
        raise SpecificationError(f"card {path.name}: give exactly one of 'model.formula' and a [matrices] table")
    if matrices is not None and "response" not in matrices:
        raise SpecificationError(f"card {path.name}: key 'matrices.response' is required")
    coding = model.get("coding", "treatment")
    if coding not in CODINGS:
        raise SpecificationError(f"card {path.name}: key 'model.coding' must be one of {CODINGS}, got {coding!r}")
    param = model.get("parameterization", "auto")
    if param not in PARAMETERIZATIONS:
        raise SpecificationError(
            f"card {path.name}: key 'model.parameterization' must be one of {PARAMETERIZATIONS}, got {param!r}"
        )
    sampler = raw.get("sampler", {})
    if "sampler" in sampler and sampler["sampler"] not in SAMPLERS:
        raise SpecificationError(
            f"card {path.name}: key 'sampler.sampler' must be one of {SAMPLERS}, got {sampler['sampler']!r}"
        )
    for key in ("draws", "tune", "chains"):
        if key in sampler and sampler[key] < (0 if key == "tune" else 1):
            raise SpecificationError(f"card {path.name}: key 'sampler.{key}' must be positive, got {sampler[key]!r}")
    priors = {}
    for key, value in raw.get("priors", {}).items():
        try:
            priors[key] = Prior.from_value(value, key=key)
        except SpecificationError as exc:
            raise SpecificationError(f"card {path.name}: key 'priors.{key}': {exc}") from None
    contrasts = raw.get("contrasts", {})
    for key, value in contrasts.items():
        if not isinstance(value, str):
            raise SpecificationError(f"card {path.name}: key 'contrasts.{key}' must be a string such as 'a - b'")
    for key in ("factors",):
        if not all(isinstance(v, str) for v in model.get(key, [])):
            raise SpecificationError(f"card {path.name}: key 'model.{key}' must be a list of column names")
    residual = _residual(raw["residual"], path) if "residual" in raw else None
    return Card(
        residual=residual, path=path, name=model.get("name", path.stem), description=model.get("description", ""),
        data_path=(path.parent / model["data"]).resolve(), formula=formula, coding=coding,
        factors=tuple(model.get("factors", [])), parameterization=param, matrices=matrices,
        priors=priors, contrasts=dict(contrasts), sampler=dict(sampler),
    )
