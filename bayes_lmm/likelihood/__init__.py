"""The likelihood forms of ``y = Xβ + Zu + e``: one module per form, one registry.

Write G = ΛΛ' with Λ = blockdiag(I_L ⊗ Λ_b), Λ_b = diag(σ_b) · chol(R_b), and u = Λv with
v ~ N(0, I). With r = y − Xβ and M = I + Λ'Z'ZΛ / σ_e², the matrix determinant lemma and
Woodbury give

    log p(y | β, θ) = −½ [ n log 2π + n log σ_e² + log|M| + (r'r − b'M⁻¹b / σ_e²) / σ_e² ],

b = Λ'Z'r. Everything is a function of the sufficient statistics X'X, X'y, y'y, Z'Z, Z'X and
Z'y, so after a one-off pass over the rows the cost per gradient does not depend on n. The
exact forms differ in how they exploit the structure of Z'Z:

* :mod:`.grouped`: one random block, L independent k×k systems;
* :mod:`.nested`: nested random intercepts, Sherman–Morrison level by level;
* :mod:`.crossed`: one intercept factor solved out, a Cholesky of the rest;
* :mod:`.dense`: a q×q Cholesky of M (any design, moderate q).

After sampling, u is drawn for every posterior draw from its exact Gaussian conditional
``v | y, β, θ ~ N(M⁻¹b/σ_e², M⁻¹)``, ``u = Λv`` (and β, when it was integrated out too, from
``β | y, θ``). :mod:`.latent` holds the latent parameterizations (non-centered, centered),
the fallback behind the same choice. Every form implements :class:`.base.Form`;
:mod:`.registry` is the only list of them and :func:`.registry.choose` the only place one is
picked (once per fit).
"""

from .base import DENSE_Q_MAX, GRAM_NUMBERS_MAX, ExactForm, Form, GraphInputs
from .registry import EXACT_FORMS, LATENT_FORMS, choose, exact_form, form_of

__all__ = ["Form", "ExactForm", "GraphInputs", "choose", "exact_form", "form_of", "EXACT_FORMS", "LATENT_FORMS",
           "DENSE_Q_MAX", "GRAM_NUMBERS_MAX"]
