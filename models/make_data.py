"""Simulate the shipped data sets of the notes' two examples (run once; output is committed).

Example 1 (seedling dry weight): y_ijk = μ + γ_i + p_ij + e_ijk, 2 genotypes, 4 pots holding
3 + 2 seedlings of genotype 1 and 3 + 2 of genotype 2.
True values: μ + γ1 = 12, μ + γ2 = 9 (so γ1 − γ2 = 3), σ_p = 1.0, σ_e = 0.8.

Example 2 (litters): y_ijk = μ + τ_i + ℓ_j + a_ij + e_ijk, 4 litters × 4 treatments × 2 muscle
samples, rows ordered as the notes' y (litter, then treatment, then sample), so that
X = 1_4 ⊗ [1_8, I_4 ⊗ 1_2] and Z = [I_4 ⊗ 1_8, I_16 ⊗ 1_2].
True values: μ + τ_i = 50, 52, 54, 49; σ_ℓ = 3, σ_a = 2, σ_e = 1.

Usage: python models/make_data.py
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent / "data"

SEEDLING_TRUTH = {"cell_means": {1: 12.0, 2: 9.0}, "sd_pot": 1.0, "sd_residual": 0.8}
LITTER_TRUTH = {"cell_means": {1: 50.0, 2: 52.0, 3: 54.0, 4: 49.0}, "sd_litter": 3.0,
                "sd_animal": 2.0, "sd_residual": 1.0}


def seedling(seed: int = 20261127) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for genotype in (1, 2):
        for pot_in_genotype, size in ((1, 3), (2, 2)):
            p = rng.normal(0, SEEDLING_TRUTH["sd_pot"])
            for k in range(1, size + 1):
                y = SEEDLING_TRUTH["cell_means"][genotype] + p + rng.normal(0, SEEDLING_TRUTH["sd_residual"])
                rows.append({"genotype": genotype, "pot": f"{genotype}{pot_in_genotype}",
                             "seedling": k, "weight": round(y, 3)})
    return pd.DataFrame(rows)


def litter(seed: int = 20261128) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(1, 5):
        lj = rng.normal(0, LITTER_TRUTH["sd_litter"])
        for i in range(1, 5):
            a = rng.normal(0, LITTER_TRUTH["sd_animal"])
            for k in (1, 2):
                y = LITTER_TRUTH["cell_means"][i] + lj + a + rng.normal(0, LITTER_TRUTH["sd_residual"])
                rows.append({"litter": j, "treatment": i, "animal": f"a{i}{j}", "sample": k,
                             "response": round(y, 3)})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    seedling().to_csv(HERE / "seedling.csv", index=False)
    litter().to_csv(HERE / "litter.csv", index=False)
    print(f"wrote {HERE / 'seedling.csv'} and {HERE / 'litter.csv'}")
