"""One seed per fit: every random stream of a fit is spawned from it.

``numpy.random.SeedSequence(seed)`` spawns one child per stream, so the chains, the exact β
and u draws, predictions, replications and prior predictive draws are independent of each
other and all reproduced by the one integer ``fit.random_seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the streams, in spawn order (append new ones at the end: earlier children stay the same)
STREAMS = ("chains", "beta", "u", "prediction", "replication", "prior_predictive")


@dataclass(frozen=True)
class Seed:
    """The integer a fit was made with, and its streams."""

    value: int

    @classmethod
    def resolve(cls, random_seed: int | None) -> Seed:
        """``random_seed``, or fresh entropy (recorded) when it is None."""
        if random_seed is None:
            random_seed = int(np.random.SeedSequence().entropy % 2**63)
        return cls(int(random_seed))

    def _child(self, stream: str) -> np.random.SeedSequence:
        if stream not in STREAMS:
            raise ValueError(f"unknown random stream {stream!r}; streams are {STREAMS}")
        return np.random.SeedSequence(self.value).spawn(len(STREAMS))[STREAMS.index(stream)]

    def rng(self, stream: str, override: int | None = None) -> np.random.Generator:
        """A generator for ``stream``; an explicit ``override`` seed (a query's own
        ``random_seed``) takes its place."""
        if override is not None:
            return np.random.default_rng(override)
        return np.random.default_rng(self._child(stream))

    def integer(self, stream: str, override: int | None = None) -> int:
        """A 32-bit integer seed for ``stream`` (for the samplers and PyMC's draws)."""
        if override is not None:
            return int(override)
        return int(self._child(stream).generate_state(1, np.uint32)[0])
