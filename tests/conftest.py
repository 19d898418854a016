"""Shared fixtures. The Chinchilla golden fit runs once per session (about 30 s on 2 CPU cores)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.datasets import load_chinchilla


@pytest.fixture(scope="session")
def chinchilla_fit():
    """The golden fit: hoffmann2022 on Besiroglu et al.'s 240 points, 4 chains x 1000 warmup + 1000 draws."""
    return bs.fit("hoffmann2022", load_chinchilla(), rng_key=0, num_chains=4, num_warmup=1000, num_samples=1000)


def simulate_table(law_id: str, truth: dict, *, sigma: float = 0.01, seed: int = 0, n_sizes: int = 6, n_tokens: int = 6):
    """Losses from a law at known constants on a (N x D) grid, with log-normal noise of scale ``sigma``."""
    law = bs.load_law(law_id)
    rng = np.random.default_rng(seed)
    if len(law.input_names) == 1:  # as many points along the one axis as the two-input grid has in all
        n_sizes = n_tokens = n_sizes * n_tokens
    grid = {"N": np.geomspace(5e7, 5e9, n_sizes), "D": np.geomspace(1e9, 1e11, n_tokens)}
    mesh = np.meshgrid(*(grid[n] for n in law.input_names), indexing="ij")
    inputs = {n: m.ravel() for n, m in zip(law.input_names, mesh)}
    mean = np.asarray(law.predict(truth, **inputs))
    loss = mean * np.exp(sigma * rng.standard_normal(mean.size))
    return pd.DataFrame({**inputs, "loss": loss})
