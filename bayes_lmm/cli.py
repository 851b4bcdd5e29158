"""The ``bayes-lmm`` console script: run a model card, print tables, write results.

Exit codes: 0 success; 2 bad card or data (one line on stderr, no traceback); 1 internal
error. Diagnostics problems are printed as warnings and do not change the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import pandas as pd

from .errors import BayesLMMError


def _sampling_args(p: argparse.ArgumentParser) -> None:
    """Options that override a card's [sampler] table."""
    p.add_argument("--draws", type=int)
    p.add_argument("--tune", type=int)
    p.add_argument("--chains", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--sampler", choices=["pymc", "nutpie", "numpyro", "gibbs", "auto"])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bayes-lmm", description="Bayesian linear mixed models from model cards")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="sample the posterior of a card's model and write results")
    f.add_argument("card")
    f.add_argument("--out", default=None, help="directory for idata.nc, CSV tables, summary.json, plots")
    _sampling_args(f)
    f.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    r = sub.add_parser("reml", help="REML estimates and GLS contrasts (no sampling)")
    r.add_argument("card")
    c = sub.add_parser("check", help="posterior predictive checks (p-values per statistic and grouping)")
    c.add_argument("card")
    c.add_argument("--groups", default=None, help="comma-separated grouping columns (default: the model's factors)")
    _sampling_args(c)
    c.add_argument("--out", default=None, help="directory for check.csv and check.png")
    m = sub.add_parser("simulate", help="simulate a data set from the card's model with given parameters")
    m.add_argument("card")
    m.add_argument("--params", required=True,
                   help='JSON, e.g. \'{"beta": {"Intercept": 10}, "sd": {"pot": 1}, "Residual": 0.5}\' or @file.json')
    m.add_argument("--seed", type=int, default=None)
    m.add_argument("--out", default=None, help="CSV file to write (default: print to stdout)")
    fm = sub.add_parser("fit-many", help="fit the card's model to many responses on Dask (one posterior each)")
    fm.add_argument("card")
    fm.add_argument("--responses-file", required=True,
                    help="CSV with one response per column (rows aligned with the card's data), or a "
                         ".txt file naming columns of the card's data, one per line")
    fm.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a local cluster)")
    fm.add_argument("--out", default=None, help="directory for variance_fractions.csv, fixed_effects.csv, "
                                                 "diagnostics.csv, failures.csv (and contrasts.csv)")
    fm.add_argument("--save-fits", action="store_true", help="also keep each response's InferenceData in OUT/fits/")
    _sampling_args(fm)
    s = sub.add_parser("show", help="print y, X, Z, G, R and the symbolic Var(y) for the first rows")
    s.add_argument("card")
    s.add_argument("--rows", type=int, default=6)
    return p


def _design(card):
    from .design import design_from_formula, design_from_matrices
    from .residual_draws import attach_residual

    data = card.load_data()
    if card.formula is not None:
        return attach_residual(design_from_formula(card.formula, data, coding=card.coding, factors=card.factors),
                               card.residual, data)
    y, X, Z = card.matrices_from(data)
    return attach_residual(design_from_matrices(y, X, Z), card.residual, data)


def _print(title: str, table: pd.DataFrame) -> None:
    print(f"\n{title}")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.round(4).to_string())


def _preflight(card, *, sampler: str, draws: int, tune: int, chains: int, target_accept) -> None:
    """Check every field of the card against its data before anything is compiled or sampled.

    The design is built (columns, factors, formula), the priors are resolved against its
    parameters, the contrasts against the columns of X (and their estimability), and the
    sampler settings and the sampler's availability are checked, so that a typo costs a
    one-line error rather than a compile and a full sampling run.
    """
    from .contrasts import check_estimable, contrast_matrix
    from .priors import resolve_priors
    from .sampling import resolve_sampler
    from .spec import ModelSpec, SamplerOptions, normalize_priors

    SamplerOptions(sampler=sampler, draws=draws, tune=tune, chains=chains, target_accept=target_accept)
    resolve_sampler(sampler)
    ModelSpec(formula=card.formula, coding=card.coding, priors=normalize_priors(card.priors),
              parameterization=card.parameterization, factors=card.factors)
    design = _design(card)
    resolve_priors(dict(normalize_priors(card.priors)), design)
    if card.contrasts:
        try:
            labels, C = contrast_matrix(card.contrasts, design.x_names)
            check_estimable(labels, C, design.X, design.x_names)
        except BayesLMMError as exc:
            raise type(exc)(f"card {card.path.name}: [contrasts]: {str(exc).splitlines()[0]}") from None


def _sample_card(card, args):
    from . import api

    data = card.load_data()
    opts = dict(card.sampler)
    seed = args.seed if args.seed is not None else opts.get("seed")
    kwargs = dict(
        priors=card.priors, parameterization=card.parameterization,
        sampler=args.sampler or opts.get("sampler", "auto"),
        draws=args.draws or opts.get("draws", 1000), tune=args.tune if args.tune is not None else opts.get("tune", 1000),
        chains=args.chains or opts.get("chains", 4), random_seed=seed,
        target_accept=opts.get("target_accept"), progressbar=sys.stderr.isatty(), residual=card.residual,
    )
    _preflight(card, sampler=kwargs["sampler"], draws=kwargs["draws"], tune=kwargs["tune"],
               chains=kwargs["chains"], target_accept=kwargs["target_accept"])
    # diagnostics warnings are printed once, in the summary, rather than as Python warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if card.formula is not None:
            return api.fit(card.formula, data, coding=card.coding, factors=card.factors, **kwargs)
        if card.residual is None:
            return api.fit_matrices(*card.matrices_from(data), **kwargs)
        # a structure names columns of the card's data, which fit_matrices does not see
        from .spec import ModelSpec, SamplerOptions, normalize_priors

        spec = ModelSpec(formula=None, coding="full", priors=normalize_priors(card.priors),
                         parameterization=card.parameterization)
        options = SamplerOptions(**{k: kwargs[k] for k in ("sampler", "draws", "tune", "chains", "random_seed",
                                                           "target_accept", "progressbar")})
        return api.run_design(spec, _design(card), options)


def _check(args) -> int:
    from .cards import load_card

    card = load_card(args.card)
    fit = _sample_card(card, args)
    groups = args.groups.split(",") if args.groups else None
    table = fit.check(groups=groups, random_seed=args.seed)
    _print("Posterior predictive checks (p = Pr(T(y_rep) >= T(y)); near 0 or 1 flags a misfit):", table.set_index(["statistic", "group"]))
    for p in fit.diagnostics().problems():
        print(f"WARNING: {p}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "check.csv", index=False)
        import matplotlib

        matplotlib.use("Agg")
        fit.plot_check(statistics=["sd_group_means"], groups=groups, random_seed=args.seed).savefig(out / "check.png", dpi=100)
        print(f"\nwrote results to {out}/")
    return 0


def _simulate(args) -> int:
    from . import api
    from .cards import load_card
    from .errors import SpecificationError

    card = load_card(args.card)
    text = args.params
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecificationError(f"--params is not valid JSON: {exc}") from None
    data = card.load_data()
    if card.formula is not None:
        sim = api.simulate(card.formula, params, random_seed=args.seed, data=data, coding=card.coding,
                           factors=card.factors, residual=card.residual)
    else:
        y, X, Z = card.matrices_from(data)
        sim = data.copy()
        sim[card.matrices["response"]] = api.simulate((X, Z), params, random_seed=args.seed)["y"].to_numpy()
    if args.out:
        sim.to_csv(args.out, index=False)
        print(f"wrote {len(sim)} simulated rows to {args.out}")
    else:
        print(sim.to_csv(index=False), end="")
    return 0


def _read_responses(path_text: str, data: pd.DataFrame):
    from .errors import DataError, SpecificationError

    path = Path(path_text)
    if not path.is_file():
        raise DataError(f"responses file {path_text!r} not found")
    if path.suffix == ".txt":
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not names:
            raise SpecificationError(f"responses file {path_text!r} names no columns")
        return names
    try:
        wide = pd.read_csv(path)
    except Exception as exc:
        raise DataError(f"cannot read responses file {path_text!r}: {exc}") from None
    if len(wide) != len(data):
        raise DataError(f"responses file {path_text!r} has {len(wide)} rows; the card's data has {len(data)}")
    return wide


def _fit_many(args) -> int:
    from .cards import load_card
    from .errors import SpecificationError
    from .many import fit_many

    card = load_card(args.card)
    if card.formula is None:
        raise SpecificationError(f"card {card.path.name}: fit-many needs a [model] formula card")
    data = card.load_data()
    responses = _read_responses(args.responses_file, data)
    opts = dict(card.sampler)
    out = Path(args.out) if args.out else None
    many = fit_many(
        card.formula, data, responses, client=args.scheduler, coding=card.coding, factors=card.factors,
        priors=card.priors, parameterization=card.parameterization,
        sampler=args.sampler or opts.get("sampler", "auto"), draws=args.draws or opts.get("draws", 1000),
        tune=args.tune if args.tune is not None else opts.get("tune", 1000),
        chains=args.chains or opts.get("chains", 4),
        random_seed=args.seed if args.seed is not None else opts.get("seed"),
        target_accept=opts.get("target_accept"), save_dir=(out / "fits") if (out and args.save_fits) else None,
        progressbar=sys.stderr.isatty(), residual=card.residual,
    )
    print(repr(many))
    fractions = many.variance_fractions()
    _print("Fractions of variance (posterior medians; intervals in variance_fractions.csv):",
           fractions.pivot(index="response", columns="component", values="median"))
    diag = many.diagnostics()
    bad = diag.loc[~diag["ok"], "response"].tolist() if len(diag) else []
    if bad:
        print(f"WARNING: {len(bad)} response(s) have convergence problems: {bad[:10]}")
    if len(many.failures):
        _print("Failed responses:", many.failures.set_index("response"))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fractions.to_csv(out / "variance_fractions.csv", index=False)
        many.fixed_effects().to_csv(out / "fixed_effects.csv", index=False)
        diag.to_csv(out / "diagnostics.csv", index=False)
        many.failures.to_csv(out / "failures.csv", index=False)
        if card.contrasts:
            many.contrast(card.contrasts).to_csv(out / "contrasts.csv", index=False)
        print(f"\nwrote results to {out}/")
    return 0


def _fit(args) -> int:
    from .cards import load_card

    card = load_card(args.card)
    fit = _sample_card(card, args)
    print(f"{card.name}: {card.description}".rstrip(": "))
    print(fit.summary())  # its tables include the random-effect correlations, if any
    contrasts = fit.contrast(card.contrasts) if card.contrasts else None
    if contrasts is not None:
        _print("Contrasts (95% intervals):", contrasts)
    problems = fit.diagnostics().problems()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        # the fit file of Fit.save (ArviZ still reads it): bl.load(out / "idata.nc") rebuilds the fit
        fit.save(out / "idata.nc")
        fit.fixed_effects().to_csv(out / "fixed_effects.csv")
        fit.variance_components().to_csv(out / "variance_components.csv")
        correlations = (fit.random_effect_correlations() if "correlation" in fit.idata.posterior
                        else None)
        if correlations is not None:
            correlations.to_csv(out / "correlations.csv")
        residual = fit.residual_structure() if "residual_correlation" in fit.idata.posterior else None
        if residual is not None:
            residual.to_csv(out / "residual_structure.csv")
        if contrasts is not None:
            contrasts.to_csv(out / "contrasts.csv")
        summary = {
            "card": str(card.path), "name": card.name, "model": card.formula or "matrices",
            "sampler": fit.sampler, "parameterization": fit.parameterization,
            "diagnostics": fit.diagnostics().as_dict(), "warnings": problems,
            "fixed_effects": fit.fixed_effects()[["mean", "median", "lower", "upper"]].to_dict("index"),
            "variance_components": fit.variance_components()[["sd_median", "sd_lower", "sd_upper"]].to_dict("index"),
            "correlations": None if correlations is None
            else correlations[["mean", "median", "lower", "upper"]].to_dict("index"),
            "contrasts": None if contrasts is None else contrasts[["mean", "lower", "upper"]].to_dict("index"),
            "residual_structure": None if residual is None
            else residual[["mean", "median", "lower", "upper"]].to_dict("index"),
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
        if not args.no_plots:
            _plots(fit, out)
        print(f"\nwrote results to {out}/")
    return 0


def _plots(fit, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .plots import plot_trace

    fit.plot_forest(sigma=True).savefig(out / "forest.png", dpi=100)
    plot_trace(fit, beta=False).savefig(out / "trace_sigma.png", dpi=100)


def _reml(args) -> int:
    from .api import reml
    from .cards import load_card

    card = load_card(args.card)
    r = reml(_design(card))  # with the card's [residual] structure, if any
    _print("REML fixed effects (GLS):", r.fixed_effects)
    _print("REML variance components:", r.variance_components)
    if len(r.correlations):
        _print("Correlations:", r.correlations)
    if len(r.residual_structure):
        _print("Residual structure:", r.residual_structure)
    if card.contrasts:
        _print("GLS contrasts:", r.contrast(card.contrasts))
    print(f"\nREML log-likelihood: {r.loglik:.4f}")
    return 0


def _show(args) -> int:
    from .cards import load_card

    card = load_card(args.card)
    d = _design(card)
    rows = list(range(min(args.rows, d.n)))
    print(f"y (first {len(rows)} of {d.n}):")
    print(pd.Series(d.y[rows], index=rows).to_string())
    _print("X:", pd.DataFrame(d.X[rows], columns=d.x_names, index=rows))
    _print("Z:", pd.DataFrame(d.Z[rows], columns=d.u_labels, index=rows))
    print("\nG = Var(u): block-diagonal, " + ", ".join(
        f"σ²_{b.group}·I_{b.n_levels}" if not b.correlated else f"I_{b.n_levels} ⊗ G_{b.group} ({b.n_coefs}×{b.n_coefs})"
        for b in d.blocks))
    print(f"R = Var(e) = σ²_e·I_{d.n}")
    print("\nVar(y) = ZGZ' + R for these rows:")
    print(d.var_y_structure(rows=rows).to_string())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayes-lmm`` console script."""
    args = _parser().parse_args(argv)
    handlers = {"fit": _fit, "fit-many": _fit_many, "reml": _reml, "show": _show, "check": _check, "simulate": _simulate}
    try:
        return handlers[args.command](args)
    except BayesLMMError as exc:
        print(f"bayes-lmm: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an internal error: say so, briefly
        print(f"bayes-lmm: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
