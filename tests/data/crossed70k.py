"""The 73,421-row crossed design of issue 19 (the shape of lme4's InstEval): 2,972 students s
× 1,128 instructors d, 14 departments (each instructor in one), a binary ``service``; the lme4
REML values of ``y ~ 1 + service + (1|s) + (1|d) + (1|dept)`` on it are in crossed70k_lme4.json
(made by crossed70k_lme4.R from the CSV this module writes). NumPy's PCG64 stream is stable, so
the data are the same on every machine."""

import numpy as np
import pandas as pd

TRUTH = {"s": 0.33, "d": 0.51, "dept": 0.08, "Residual": 1.18}


def simulate(seed: int = 0, n: int = 73_421, n_s: int = 2972, n_d: int = 1128, n_dept: int = 14) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_s, n)
    w = rng.gamma(2.0, 1.0, n_d)  # some instructors have many more ratings than others
    d = rng.choice(n_d, n, p=w / w.sum())
    dept_of_d = rng.integers(0, n_dept, n_d)
    service = rng.integers(0, 2, n)
    y = (3.2 - 0.07 * service + rng.normal(0, TRUTH["s"], n_s)[s] + rng.normal(0, TRUTH["d"], n_d)[d]
         + rng.normal(0, TRUTH["dept"], n_dept)[dept_of_d[d]] + rng.normal(0, TRUTH["Residual"], n))
    return pd.DataFrame({"y": y, "service": service, "s": [f"s{i}" for i in s], "d": [f"d{i}" for i in d],
                         "dept": [f"dp{dept_of_d[i]}" for i in d]})


if __name__ == "__main__":
    simulate().to_csv("crossed70k.csv", index=False)  # for crossed70k_lme4.R; not kept in the repository
