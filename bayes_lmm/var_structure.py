"""The symbolic ``Var(y) = ZGZ' + R`` of a design, entry by entry, as the notes write it."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .validate import row_selection


def var_y_structure(design, rows: Sequence[int] | slice | None = None) -> pd.DataFrame:
    """The symbolic block of ``Var(y) = ZGZ' + R`` for the chosen rows of ``design``.

    Entries read like the notes' tables, e.g. ``σ²_litter + σ²_litter:animal + σ²_e``.
    For correlated random slopes, covariances appear as ``σ_(1,Days)|Subject`` and
    covariate values as factors. R's entries follow :func:`residual_term`.
    """
    idx = row_selection(rows, design.n)
    names = [design.row_labels[i] if design.row_labels else str(i) for i in idx]
    table = pd.DataFrame("", index=names, columns=names, dtype=object)
    zs = {b.group: b.z_matrix() for b in design.blocks}
    for a_pos, a in enumerate(idx):
        for b_pos, b in enumerate(idx):
            terms: list[str] = []
            for blk in design.blocks:
                z = zs[blk.group]
                k = blk.n_coefs
                za = z[a].reshape(-1, k) if blk.dense is None else None
                zb = z[b].reshape(-1, k) if blk.dense is None else None
                if blk.dense is not None:
                    coef = float(z[a] @ z[b])
                    if coef != 0:
                        terms.append(_scaled(coef, f"σ²_{_sym(blk.components[0], blk)}"))
                    continue
                for c1 in range(k):
                    for c2 in range(c1, k):
                        if c1 != c2 and not blk.correlated:
                            continue
                        coef = float(za[:, c1] @ zb[:, c2])
                        if c1 != c2:
                            # σ_(c1,c2) multiplies both halves: sum them before testing for
                            # zero, or [a, b] and [b, a] differ when only one half vanishes
                            coef += float(za[:, c2] @ zb[:, c1])
                        if coef == 0:
                            continue
                        if c1 == c2:
                            terms.append(_scaled(coef, f"σ²_{_sym(blk.components[c1], blk)}"))
                        else:
                            pair = f"σ_({blk.coef_names[c1]},{blk.coef_names[c2]})|{blk.group}"
                            terms.append(_scaled(coef, pair))
            r_term = residual_term(design.residual, a, b)
            if r_term:
                terms.append(r_term)
            table.iloc[a_pos, b_pos] = " + ".join(terms) if terms else "0"
    return table


def _sd_symbol(label: str) -> str:
    # "Residual" → σ_e, "Residual[F]" → σ_e[F]
    return "σ_e" + label[len("Residual"):]


def residual_term(res, a: int, b: int) -> str:
    """Entry (a, b) of R in symbols: ``σ²_e`` (σ²_e I), the known variance (KnownSD), ``σ²_e[F]``
    (HeteroSD), ``σ²_e·ρ^2`` (AR1 at lag 2), ``σ²_e·ρ`` (CS), ``σ_e[1]·σ_e[2]·ρ(1,2)`` (UN);
    empty where R is 0."""
    if res is None:
        return "σ²_e" if a == b else ""
    if a != b and (not res.correlated or res.group[a] != res.group[b]):
        return ""
    if res.known_sd is not None:
        return f"{res.known_sd[a] ** 2:g}"
    sa, sb = (_sd_symbol(res.sd_labels[res.stratum[i]]) for i in (a, b))
    scale = f"σ²{sa[1:]}" if sa == sb else f"{sa}·{sb}"
    if a == b:
        return scale
    if res.kind == "ar1":
        lag = abs(int(res.time[a]) - int(res.time[b]))
        return f"{scale}·ρ" + (f"^{lag}" if lag != 1 else "")
    if res.kind == "cs":
        return f"{scale}·ρ"
    ta, tb = sorted((int(res.time[a]), int(res.time[b])))
    return f"{scale}·ρ({res.time_labels[ta]},{res.time_labels[tb]})"


def _sym(component: str, blk) -> str:
    # "1|pot" reads as σ²_pot, as in the notes; slopes keep their term name
    if component.startswith("1|"):
        return component[2:]
    return component


def _scaled(coef: float, symbol: str) -> str:
    if coef == 1:
        return symbol
    return f"{coef:g}·{symbol}"
