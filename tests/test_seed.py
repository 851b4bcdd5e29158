"""One recorded seed per fit: fit.random_seed reproduces every draw, and survives save/load."""

import numpy as np
import pandas as pd
from conftest import FAST, quiet_fit

import bayes_lmm as bl
from bayes_lmm.seeds import STREAMS, Seed


def test_streams_are_distinct_and_reproducible():
    seed = Seed(123)
    firsts = {s: seed.rng(s).standard_normal() for s in STREAMS}
    assert len(set(firsts.values())) == len(STREAMS)
    assert firsts == {s: Seed(123).rng(s).standard_normal() for s in STREAMS}
    assert seed.rng("prediction", 5).standard_normal() == np.random.default_rng(5).standard_normal()
    assert Seed.resolve(None).value != Seed.resolve(None).value
    assert Seed.resolve(7) == Seed(7)


def test_a_fit_without_seed_is_reproduced_by_its_recorded_seed(dyestuff, tmp_path):
    kw = dict(FAST, draws=100, tune=100)
    a = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, **kw)
    assert isinstance(a.random_seed, int) and a.options.random_seed is None
    b = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, random_seed=a.random_seed, **kw)
    assert a.parameterization == "marginal"  # β and u drawn after sampling, from the seed's streams
    assert set(a.idata.posterior.data_vars) >= {"beta", "sigma", "u"}
    for name in a.idata.posterior.data_vars:
        np.testing.assert_array_equal(a.draws(name), b.draws(name))
    other = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, **kw)
    assert other.random_seed != a.random_seed and not np.array_equal(other.draws("u"), a.draws("u"))
    # predictions, replications and prior draws come from streams of the same seed
    new = pd.DataFrame({"Batch": ["A", "new"]})
    pd.testing.assert_frame_equal(a.predict(new, kind="response"), b.predict(new, kind="response"))
    pd.testing.assert_frame_equal(a.check(), b.check())
    path = a.save(tmp_path / "fit.nc")
    loaded = bl.load(path)
    assert loaded.random_seed == a.random_seed
    pd.testing.assert_frame_equal(loaded.predict(new, kind="response"), a.predict(new, kind="response"))
