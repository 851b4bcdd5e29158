"""The blocked Gibbs form: u sampled, the model stated by the centered latent graph, and the
draws made by :mod:`bayes_lmm.gibbs_sampling` instead of NUTS.

For designs with no exact form cheap for NUTS (many levels on two crossed factors: 1,142
coefficients left after solving out the largest factor of the 73,421-row crossed design)
whose every random coefficient is its own variance component and R = σ²_e I. Its location
step costs one Cholesky of the remainder per sweep (:mod:`.gibbs_system`), so ``auto``
takes it up to :data:`GIBBS_Q_MAX` coefficients left.
"""

from __future__ import annotations

from ..design import Design
from .latent import Centered

#: the largest remainder ``auto`` hands to the Gibbs sampler: a sweep costs r³/3 (r = 1,143:
#: 23 ms per chain per sweep on one core, 100 s for 4 × 2,000 sweeps on 2 cores, measured;
#: r = 2,000 would be about 5× that by the r³ scaling, not measured)
GIBBS_Q_MAX = 2000


def remainder(design: Design) -> int:
    """Columns left to the Gibbs location step's dense Cholesky: p plus every component's
    levels except those of the largest one-level-per-row component (solved out level by level)."""
    sizes = [(b.n_levels, b.dense is None) for b in design.blocks for _ in b.components]
    eliminated = max((L for L, by_row in sizes if by_row), default=0)
    return design.p + sum(L for L, _ in sizes) - eliminated


class GibbsForm(Centered):
    """u ~ N(0, σ_c² I) per component (the centered graph), sampled by blocked Gibbs."""

    name = "gibbs"
    own_sampler = "gibbs"
    # u is drawn jointly with β given each sweep's θ, then rescaled with σ: its mixing is θ's
    u_mixes_alone = False

    @staticmethod
    def why_not(design: Design) -> str | None:
        """Why the design is outside the Gibbs steps, in words (None: inside; the priors are
        checked by :func:`bayes_lmm.gibbs_sampling.unavailable`)."""
        if not design.blocks:
            return "the model has no random effects"
        if design.residual is not None:
            return f"it is written for R = σ²_e I, not a residual structure ({design.residual.kind})"
        correlated = [b.group for b in design.blocks if b.correlated]
        if correlated:
            return (f"the random effects of {correlated[0]!r} are correlated (the Gibbs steps need one "
                    "variance component per coefficient; write (x || g) for uncorrelated ones)")
        return None

    @classmethod
    def applies(cls, design: Design) -> bool:
        return cls.why_not(design) is None

    @classmethod
    def cheap(cls, design: Design, *, q_max: int = GIBBS_Q_MAX) -> bool:
        return remainder(design) <= q_max

    @classmethod
    def cost(cls, design: Design) -> int:
        return remainder(design)

    def describe(self) -> str:
        return ("β and u drawn jointly given θ, each σ by slice sampling given u and given u/σ in turn "
                "(blocked Gibbs with interweaving)")
