"""Simulated training curves with known truth: the noise model of :mod:`bayescale.infer.noise`, run by run.

:func:`simulate_curves` evaluates any law along each run's checkpoints and adds a run effect ``u_r ~ N(0, tau)`` and an
Ornstein-Uhlenbeck residual along ln(tokens) (correlation ``exp(−Δ ln D / ell)``, scale ``sigma``), the generative
model that ``bayescale.fit(..., noise="run+ou")`` inverts. :func:`ouro_curves` makes Ouro-like curves (Zhu et al. 2025,
App. D.2): 5 sizes × T_m ∈ {2, 4, 8}, 0-20B tokens, losses from ~11 down to ~2.6-3.1, because the paper's runs are
not public.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale.laws.catalogue import Law, load_law
from bayescale.infer.noise import linear_recurrence

__all__ = ["simulate_curves", "ouro_curves", "OURO_TRUTH", "OURO_SIZES", "OURO_LOOPS", "checkpoint_tokens"]

#: Constants of the Ouro-like simulator (ouro2025 law). Chosen, not published (the paper gives R² only): a curve
#: starts at ~10.9 nats (≈ ln of a 50k vocabulary) at 1M tokens and ends at 2.6-3.1 nats at 20B tokens; doubling T_m
#: lowers the loss by 0.03-0.06 nats, larger T_m is better (γ > 0), as the paper reports.
OURO_TRUTH = dict(E=1.6, A=60.0, alpha=0.25, t1=1e6, B=24650.0, beta=0.45, t2=5e7, C=0.5, gamma=0.7, t3=1.0)
#: Ouro's five sizes (53M-1.364B parameters) and loop counts.
OURO_SIZES = (53e6, 134e6, 374e6, 778e6, 1.364e9)
OURO_LOOPS = (2, 4, 8)


def checkpoint_tokens(max_tokens: float = 20e9, checkpoints: int = 40, first: float = 1e6, early: int = 6) -> np.ndarray:
    """Checkpoint token counts: ``early`` log-spaced ones from ``first`` (the steep start of a curve), then evenly
    spaced up to ``max_tokens`` (as logged every k steps)."""
    linear = np.linspace(max_tokens / checkpoints, max_tokens, checkpoints)
    return np.r_[np.geomspace(first, linear[0], early + 1)[:-1], linear]


def simulate_curves(
    law: Law | str,
    truth: Mapping[str, float],
    runs: pd.DataFrame,
    tokens: Sequence[float],
    *,
    sigma: float = 0.01,
    tau: float = 0.005,
    ell: float = 0.3,
    nu: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Loss curves: one row per (run, checkpoint).

    Parameters
    ----------
    law, truth
        The law and its constants.
    runs
        One row per run: a ``run`` column and every law input except ``D`` (e.g. ``N``, ``T_m``).
    tokens
        Checkpoint token counts ``D`` (shared by every run).
    sigma, tau, ell, nu
        Residual scale on log-loss, run-effect spread, correlation length in ln(tokens), Student-t degrees of freedom
        of the innovations (``None``: Normal).
    """
    law = law if isinstance(law, Law) else load_law(law)
    rng = np.random.default_rng(seed)
    d = np.asarray(tokens, dtype=float)
    gap = np.r_[np.inf, np.diff(np.log(d))]
    phi = np.exp(-gap / ell)  # 0 at the first checkpoint (gap = inf)
    root = np.sqrt(1 - phi**2)
    rows = []
    for run in runs.itertuples(index=False):
        inputs = {n: np.full(d.size, getattr(run, n), dtype=float) for n in law.input_names if n != "D"}
        mu = np.log(np.asarray(law.predict(truth, D=d, **inputs)))
        eps = rng.standard_t(nu, d.size) if nu else rng.standard_normal(d.size)
        w = np.asarray(linear_recurrence(jnp.asarray(phi), jnp.asarray(root * eps)))  # the model's own recurrence
        log_y = mu + tau * rng.standard_normal() + sigma * w
        rows.append(pd.DataFrame({"run": run.run, **inputs, "D": d, "loss": np.exp(log_y)}))
    return pd.concat(rows, ignore_index=True)


def ouro_curves(
    *,
    sizes: Sequence[float] = OURO_SIZES,
    loops: Sequence[int] = OURO_LOOPS,
    max_tokens: float = 20e9,
    checkpoints: int = 40,
    truth: Mapping[str, float] = OURO_TRUTH,
    sigma: float = 0.01,
    tau: float = 0.005,
    ell: float = 0.3,
    seed: int = 0,
) -> pd.DataFrame:
    """Ouro-like training curves (15 runs by default): columns ``run, N, T_m, D, loss``.

    Noise: 1% residual scale on log-loss (training-loss noise between checkpoints), 0.5% run effect (seed spread of
    final losses, LAWS.md "practice"), residual correlation length 0.3 in ln(tokens) (checkpoints 0.5B apart at 10B
    tokens correlate at 0.85).
    """
    runs = pd.DataFrame(
        [{"run": f"N{n / 1e6:.0f}M-T{t}", "N": n, "T_m": t} for t in loops for n in sizes]
    )
    tokens = checkpoint_tokens(max_tokens, checkpoints)
    return simulate_curves("ouro2025", truth, runs, tokens, sigma=sigma, tau=tau, ell=ell, seed=seed)
