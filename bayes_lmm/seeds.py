"""One seed per fit: every random stream of a fit comes from it.

``numpy.random.SeedSequence(seed)`` spawns one child per stream (the exact β and u draws,
predictions, replications, prior predictive draws), so they are independent of each other
and all reproduced by the one integer ``fit.random_seed``. The chains take the integer
itself: PyMC and nutpie spawn their per-chain streams from it, and a seed that was given
keeps drawing what it drew before this module existed (the tests' seeded fits included).
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
            # 31 bits: every sampler takes it (JAX's keys included)
            random_seed = int(np.random.SeedSequence().entropy % 2**31)
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
        """An integer seed for ``stream`` (for PyMC's draws): the seed itself for the chains,
        a 32-bit one from the stream's child otherwise."""
        if override is not None:
            return int(override)
        if stream == "chains":
            return self.value
        return int(self._child(stream).generate_state(1, np.uint32)[0])
