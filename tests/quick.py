"""The test suite's standard sampler settings.

Tests that need no particular settings use one of these, so that fits of one law, noise model and data shape compile
their programs once per test session: the session's persistent compilation cache (tests/conftest.py) is shared by its
xdist workers, and a fit's compiled programs depend on the law, the noise model, the data's shape and these settings,
not on the data's values (docs/performance.md, "Compilation").
"""

from __future__ import annotations

import bayescale as bs

#: Statistical tests (recovery, coverage, comparisons): 2 chains x 300 warmup + 300 draws.
QUICK = bs.NUTS(num_chains=2, num_warmup=300, num_samples=300, progress_bar=False)
#: Mechanics tests that read the shape or presence of a result, not its numbers: 2 chains x 100 + 100.
TINY = bs.NUTS(num_chains=2, num_warmup=100, num_samples=100, progress_bar=False)
