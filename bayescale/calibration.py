"""Simulation-based calibration (SBC): does the fit recover its own prior?

For s = 1..S: draw θ_s from the prior, simulate a run table at θ_s on a fixed design, fit it, and record the rank of each
true parameter among the L posterior draws. If the sampler and the model are right, every rank is uniform on 0..L
(Talts et al. 2018). The check uses the model that :func:`bayescale.fit` uses (:func:`bayescale.model.build_model` with
the law file's priors and the noise priors), the same NUTS settings (dense mass, median init, target acceptance), and
fixed data statistics, so that a prior like ``Uniform(0, min_loss)`` is the same distribution for the draw and the fit.

Uniformity is tested per parameter with a chi-square test on the ranks binned into ``num_bins`` equal bins; a law
passes when no parameter's p-value is below ``alpha / n_parameters`` (Bonferroni).

A **negative control** must fail: with ``misspecify="noise"`` the data are simulated with residuals ``inflation`` times
larger than the drawn ``sigma`` says (a simulator the model cannot reproduce), so the posterior of ``sigma`` sits above
the truth and its ranks pile up at 0.

References
----------
Talts, Betancourt, Simpson, Vehtari, Gelman 2018, "Validating Bayesian Inference Algorithms with Simulation-Based
Calibration", arXiv:1804.06788.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.stats
from numpyro.infer import MCMC, NUTS, Predictive, init_to_median

from bayescale.data import load_runs
from bayescale.inference import check_positive_ints, release_compiled
from bayescale.laws import Law, load_law
from bayescale.model import ModelSpec, build_model, resolve_priors

__all__ = ["check_calibration", "default_design", "MISSPECIFICATIONS"]

#: ``None``: the positive control (simulate from the model that is fitted). ``"noise"``: residuals inflated by
#: ``inflation`` (the negative control).
MISSPECIFICATIONS = (None, "noise")

#: Data statistics used by data-dependent priors during SBC: a typical final loss range of language models
#: (Chinchilla's 240 points span 2.08-5.01 nats/token, CARD.md). Fixed, not read from each simulated table.
SBC_STATISTICS = {"min_loss": 2.0, "max_loss": 4.0}



def default_design(law: Law) -> dict[str, np.ndarray]:
    """The design of ``tests/test_recovery.py``: a 6 × 6 log grid of N ∈ [5e7, 5e9], D ∈ [1e9, 1e11] (36 points along
    the axis for one-input laws); other inputs get 6 log-spaced values in [1, 100]."""
    ranges = {"N": (5e7, 5e9), "D": (1e9, 1e11)}
    per_axis = 6 if len(law.input_names) > 1 else 36
    axes = [np.geomspace(*ranges.get(n, (1.0, 100.0)), per_axis) for n in law.input_names]
    mesh = np.meshgrid(*axes, indexing="ij")
    return {n: m.ravel() for n, m in zip(law.input_names, mesh)}


def _chi2_uniform(ranks: np.ndarray, n_draws: int, num_bins: int) -> tuple[float, float]:
    """Chi-square statistic and p-value of ranks in 0..n_draws against the discrete uniform, in ``num_bins`` bins."""
    bins = np.floor(ranks * num_bins / (n_draws + 1)).astype(int)
    observed = np.bincount(bins, minlength=num_bins)
    # Expected share per bin counted exactly over the integer ranks (bins need not hold equal numbers of ranks).
    share = np.bincount(np.floor(np.arange(n_draws + 1) * num_bins / (n_draws + 1)).astype(int), minlength=num_bins)
    expected = share / share.sum() * ranks.size
    stat, p = scipy.stats.chisquare(observed, expected)
    return float(stat), float(p)


def _posterior_draws(law, spec, x, log_inputs, losses, key, batched, likelihood, stats, num_warmup, num_samples):
    """Posterior draws (one chain) of every simulated table, from one batched run or a loop; and the divergences."""
    if batched:
        from bayescale.batch import fit_batch

        tables = [load_runs({**x, "loss": loss}, inputs=law.input_names, check_units=False) for loss in losses]
        with warnings.catch_warnings():  # per-fit R-hat needs 2 chains; SBC reads ranks, not diagnostics
            warnings.simplefilter("ignore")
            result = fit_batch(law, tables, rng_key=key, num_chains=1, num_warmup=num_warmup,
                               num_samples=num_samples, likelihood=likelihood, statistics=stats,
                               require_identifiable=False)
        post = result.posterior.to_dataset()
        draws = [{n: post[n].values[s, 0] for n in spec.sampled_names} for s in range(len(losses))]
        return draws, int(result.sample_stats["diverging"].sum())
    kernel = NUTS(build_model(spec), dense_mass=True, target_accept_prob=0.9, init_strategy=init_to_median)
    # One MCMC object with jit_model_args: the model is compiled once and reused for every simulated table.
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=1, progress_bar=False,
                jit_model_args=True)
    draws, divergences = [], 0
    for s, k in enumerate(jax.random.split(key, len(losses))):
        mcmc.run(k, log_inputs, loss=jnp.asarray(losses[s]), extra_fields=("diverging",))
        divergences += int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
        draws.append({n: np.asarray(v) for n, v in mcmc.get_samples().items()})
        release_compiled()  # each run re-jits numpyro's sampling loop; see bayescale.inference.release_compiled
    return draws, divergences


def check_calibration(
    law: Law | str,
    *,
    num_simulations: int = 100,
    num_warmup: int = 300,
    num_samples: int = 200,
    thin: int = 2,
    num_bins: int = 5,
    likelihood: str = "student_t",
    design: Mapping[str, Any] | None = None,
    statistics: Mapping[str, float] | None = None,
    misspecify: str | None = None,
    inflation: float = 3.0,
    alpha: float = 0.01,
    rng_key: int = 0,
    batched: bool = True,
) -> pd.DataFrame:
    """Simulation-based calibration of a law's fit: rank statistics of the true parameters and a uniformity test.

    Parameters
    ----------
    law
        Law, catalogue id or law-file path.
    num_simulations
        Prior draws, each simulated and fitted once (one chain).
    num_warmup, num_samples, thin
        NUTS settings per fit; every ``thin``-th draw is kept (to cut autocorrelation, which makes ranks non-uniform
        even for a correct sampler), giving ``L = num_samples // thin`` draws and ranks in 0..L.
    num_bins
        Bins of the chi-square test (keep ``num_simulations / num_bins`` ≥ 5 for the chi-square approximation).
    design
        Inputs of the simulated table (default :func:`default_design`).
    statistics
        Values of the data statistics in the priors (default :data:`SBC_STATISTICS`).
    misspecify
        One of :data:`MISSPECIFICATIONS`; ``"noise"`` is the negative control.
    alpha
        Family-wise level: a parameter fails when its p-value is below ``alpha / n_parameters``.
    batched
        Fit every simulated table in one vectorised run (:func:`bayescale.batch.fit_batch`, compiled once); ``False``
        fits them one after another with one reused MCMC object (the same model and sampler settings).

    Returns
    -------
    pandas.DataFrame
        Per parameter: ``chi2``, ``p_value``, ``mean_rank`` (normalised to [0, 1]; 0.5 if calibrated), ``passes``.
        ``attrs``: ``ranks`` (simulations × parameters), ``passes`` (all parameters pass), settings, ``divergences``.
    """
    law = law if isinstance(law, Law) else load_law(law)
    if misspecify not in MISSPECIFICATIONS:
        raise ValueError(f"misspecify {misspecify!r}: must be one of {list(MISSPECIFICATIONS)}")
    check_positive_ints(num_simulations=num_simulations, num_warmup=num_warmup, num_samples=num_samples, thin=thin,
                        num_bins=num_bins)
    n_draws = num_samples // thin
    if n_draws + 1 < num_bins:
        raise ValueError(f"num_samples // thin = {n_draws} draws give too few rank values for {num_bins} bins")
    stats = dict(SBC_STATISTICS if statistics is None else statistics)
    spec = ModelSpec(law=law, priors=resolve_priors(law, likelihood, None), statistics=stats, likelihood=likelihood)
    model = build_model(spec)
    x = default_design(law) if design is None else {n: np.asarray(design[n], dtype=float) for n in law.input_names}
    log_inputs = {n: jnp.asarray(np.log(v)) for n, v in x.items()}
    key = jax.random.PRNGKey(rng_key)
    k_prior, k_fit = jax.random.split(key)
    # Draw extra prior samples and keep the first num_simulations whose simulated losses are finite and positive in
    # float64: the wide amplitude priors occasionally give log-losses beyond ±709 (overflow to inf or 0), which no fit
    # can start from. This conditions the prior on representable data; the rejected share is recorded in
    # attrs["rejected"] (a few percent at most for the catalogue priors, all far outside real losses).
    prior = Predictive(model, num_samples=2 * num_simulations + 10)(k_prior, log_inputs)
    loss_all = np.asarray(prior["loss"])
    ok = np.all(np.isfinite(loss_all) & (loss_all > 0) & np.isfinite(np.log(np.where(loss_all > 0, loss_all, 1.0))), axis=1)
    keep = np.flatnonzero(ok)[:num_simulations]
    if keep.size < num_simulations:
        raise ValueError(f"only {keep.size} of {loss_all.shape[0]} prior draws of law {law.id!r} give finite losses on this design")
    rejected = int(np.flatnonzero(~ok)[np.flatnonzero(~ok) < keep[-1]].size)
    names = list(spec.sampled_names)
    truth = {n: np.asarray(prior[n])[keep] for n in names}
    log_loss = np.log(loss_all[keep])
    if misspecify == "noise":
        mu = np.asarray(jax.vmap(lambda p: law.log_fn(p, log_inputs))({n: jnp.asarray(truth[n]) for n in law.parameter_names}))
        log_loss = mu + inflation * (log_loss - mu)

    all_draws, divergences = _posterior_draws(law, spec, x, log_inputs, np.exp(log_loss), k_fit, batched, likelihood,
                                              stats, num_warmup, num_samples)
    ranks = np.zeros((num_simulations, len(names)), dtype=int)
    for s, draws in enumerate(all_draws):
        for j, n in enumerate(names):
            kept = np.asarray(draws[n])[::thin][:n_draws]
            ranks[s, j] = int(np.sum(kept < truth[n][s]))
    rows = []
    for j, n in enumerate(names):
        stat, p = _chi2_uniform(ranks[:, j], n_draws, num_bins)
        rows.append({"parameter": n, "chi2": stat, "p_value": p, "mean_rank": float(np.mean(ranks[:, j]) / n_draws),
                     "passes": p >= alpha / len(names)})
    table = pd.DataFrame(rows).set_index("parameter")
    table.attrs.update(
        law=law.id, misspecify=misspecify, inflation=inflation if misspecify else None, ranks=ranks, n_draws=n_draws,
        num_simulations=num_simulations, num_bins=num_bins, alpha=alpha, passes=bool(table["passes"].all()),
        divergences=divergences, rejected=rejected, settings=dict(num_warmup=num_warmup, num_samples=num_samples, thin=thin,
                                               likelihood=likelihood, statistics=stats, rng_key=rng_key,
                                               batched=batched),
    )
    return table
