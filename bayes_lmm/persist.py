"""Save a fit to one NetCDF file and load it back without refitting.

The file is the InferenceData plus what is needed to rebuild the design exactly: the spec
(formula, coding, factors, priors, options) and the training data (formula fits) or y, X
and the Z blocks (matrix fits). Nothing is unpickled, so a foreign file cannot run code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import arviz as az
import pandas as pd
import xarray as xr

from .errors import BayesLMMError

FORMAT = "bayes_lmm-fit-1"


class FileFormatError(BayesLMMError):
    """A file is not a bayes_lmm fit, or it is damaged (raised by :func:`load`).

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> try:
    ...     bl.load("notes.txt")
    ... except bl.FileFormatError as err:
    ...     print(err)  # doctest: +SKIP
    """


def save(fit, path: str | Path) -> Path:
    """Write ``fit`` to ``path`` (NetCDF). Returns the path."""
    path = Path(path)
    spec = fit.spec
    meta = {
        "format": FORMAT,
        "formula": spec.formula, "coding": spec.coding, "factors": list(spec.factors),
        "priors": {k: {"dist": p.family, **dict(p.params)} for k, p in spec.priors},
        "parameterization": fit.parameterization, "requested_parameterization": spec.parameterization,
        "form_reason": fit.form.reason, "sampler": fit.sampler,
        "target_accept": fit.target_accept,
        "options": {"draws": fit.options.draws, "tune": fit.options.tune, "chains": fit.options.chains,
                    "random_seed": fit.options.random_seed},
        # the seed every stream was spawned from (drawn when options.random_seed is None)
        "seed": fit.random_seed,
        "residual": residual_meta(fit.design.residual),
    }
    design = fit.design
    if spec.formula is not None:
        meta["data"] = design.data.to_json(orient="split", date_format="iso")
        meta["categories"] = {c: [str(v) for v in design.data[c].cat.categories]
                              for c in design.data.columns
                              if isinstance(design.data[c].dtype, pd.CategoricalDtype)}
        constant = xr.Dataset()
    else:
        meta["x_names"] = list(design.x_names)
        meta["blocks"] = [{"name": b.group, "levels": list(b.levels)} for b in design.blocks]
        constant = xr.Dataset({"y": (("obs",), design.y), "X": (("obs", "coef"), design.X)})
        for i, b in enumerate(design.blocks):
            constant[f"Z_{i}"] = (("obs", f"z{i}"), b.z_matrix())
    idata = fit.idata.copy()
    idata.posterior.attrs["bayes_lmm"] = json.dumps(meta)
    if "constant_data" in idata.groups():
        del idata.constant_data
    if constant.data_vars:
        idata.add_groups(constant_data=constant)
    idata.to_netcdf(str(path))
    return path


def residual_meta(res) -> dict | None:
    """The residual structure as JSON: its class name and arguments (None for σ²_e I)."""
    if res is None:
        return None
    src = res.source
    args = {f.name: getattr(src, f.name) for f in dataclasses.fields(src)}
    return {"structure": type(src).__name__,
            "args": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}}


def residual_from_meta(meta: dict | None):
    """The structure written by :func:`residual_meta` (only the library's own classes)."""
    from . import residual as _residual

    if meta is None:
        return None
    classes = {cls.__name__: cls for cls in _residual.STRUCTURES}
    if meta.get("structure") not in classes:
        raise KeyError(f"unknown residual structure {meta.get('structure')!r}")
    return classes[meta["structure"]](**meta["args"])


def load(path: str | Path):
    """Read a fit written by :meth:`Fit.save`.

    Parameters
    ----------
    path : str or Path
        A file written by :meth:`Fit.save` (or ``idata.nc`` of ``bayes-lmm fit --out``).

    Returns
    -------
    Fit

    Examples
    --------
    >>> fit.save("fit.nc")  # doctest: +SKIP
    >>> again = bl.load("fit.nc")  # doctest: +SKIP

    Raises
    ------
    FileFormatError
        If the file cannot be read, is not a bayes_lmm fit, or its contents do not fit together.
    """
    from .design import design_from_formula, design_from_matrices
    from .priors import resolve_priors
    from .residual_draws import attach_residual
    from .results import Fit
    from .seeds import Seed
    from .spec import ModelSpec, SamplerOptions, normalize_priors

    path = Path(path)
    try:
        idata = az.from_netcdf(str(path))
        meta = json.loads(idata.posterior.attrs["bayes_lmm"])
    except FileNotFoundError:
        raise FileFormatError(f"no file {str(path)!r}") from None
    except Exception as exc:
        raise FileFormatError(f"{str(path)!r} is not a bayes_lmm fit file ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise FileFormatError(f"{str(path)!r} has format {meta.get('format')!r}, expected {FORMAT!r}")
    try:
        priors = normalize_priors(meta["priors"])
        if meta["formula"] is not None:
            from io import StringIO

            data = pd.read_json(StringIO(meta["data"]), orient="split")
            for col, cats in meta.get("categories", {}).items():
                values = data[col].astype(str)
                data[col] = pd.Categorical(values, categories=cats)
            design = design_from_formula(meta["formula"], data, coding=meta["coding"], factors=meta["factors"])
        else:
            cd = idata.constant_data
            Z = {b["name"]: pd.DataFrame(cd[f"Z_{i}"].values, columns=b["levels"])
                 for i, b in enumerate(meta["blocks"])}
            design = design_from_matrices(cd["y"].values, cd["X"].values, Z, x_names=meta["x_names"])
        design = attach_residual(design, residual_from_meta(meta.get("residual")))
        spec = ModelSpec(formula=meta["formula"], coding=meta["coding"], priors=priors,
                         parameterization=meta.get("requested_parameterization", meta["parameterization"]),
                         factors=tuple(meta["factors"]))
        opts = meta["options"]
        options = SamplerOptions(sampler=meta["sampler"], draws=opts["draws"], tune=opts["tune"],
                                 chains=opts["chains"], random_seed=opts["random_seed"])
        prior_set = resolve_priors(spec.prior_overrides, design)
    except BayesLMMError as exc:
        raise FileFormatError(f"{str(path)!r}: the saved model cannot be rebuilt: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{str(path)!r} is damaged: {type(exc).__name__}: {exc}") from None
    post = idata.posterior
    if post.sizes.get("coef") != design.p or ("u_index" in post.dims and post.sizes["u_index"] != len(design.u_labels)):
        raise FileFormatError(f"{str(path)!r}: the posterior does not match the saved design")
    idata.posterior.attrs.pop("bayes_lmm", None)
    seed = Seed(int(meta["seed"])) if meta.get("seed") is not None else None
    fit = Fit(spec=spec, options=options, design=design, prior_set=prior_set, idata=idata,
              parameterization=meta["parameterization"], sampler=meta["sampler"],
              target_accept=float(meta["target_accept"]), seed=seed)
    fit.form.reason = meta.get("form_reason", fit.form.reason)
    return fit
