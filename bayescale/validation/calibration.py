"""Simulation-based calibration (SBC): does the fit recover its own prior, and could the check have failed?

For s = 1..S: draw θ_s from the prior, simulate a run table at θ_s on a fixed design, fit it, and record the rank of each
true parameter among the L posterior draws. If the sampler and the model are right, every rank is uniform on 0..L
(Talts et al. 2018). The check uses the model that :func:`bayescale.fit` uses (:func:`bayescale.infer.model.build_model` with
the law file's priors, the noise priors and any noise structure: ``"iid"``, ``"hetero"``, ``"run+ou"``, ...), the same
NUTS settings (dense mass, median init, target acceptance), and fixed data statistics, so that a prior like
``Uniform(0, min_loss)`` is the same distribution for the draw and the fit.

A verdict has three parts, all in the returned table:

- **Uniform ranks.** A chi-square test per parameter on the ranks binned into ``num_bins`` bins; a parameter passes when
  its p-value is at least ``alpha / n_parameters`` (Bonferroni).
- **Contraction.** Uniform ranks alone cannot tell a correct sampler from one that ignores the data: fresh prior draws
  have uniform ranks too. Per parameter, ``contraction`` is the median over simulations of the posterior's spread over
  the prior's, both measured in prior-quantile units: every draw is mapped through the prior's CDF (estimated from
  many prior draws), and the posterior's interquartile range there is divided by the prior's, 0.5. For a Normal prior
  and posterior this is close to the sd ratio; unlike the sd ratio it does not depend on how heavy the prior's tails
  are (an sd of LogNormal(·, 2.5) draws is dominated by a few of them) and it is 1 for a sampler that returns the prior,
  whatever the prior. A verdict requires the mean contraction of the law's parameters and σ to be below
  ``max_contraction``. Per parameter, ``informative`` marks a contraction below it: a parameter that the design barely
  informs (E of hoffmann2022 on 6 curves, 0.8-0.9; the tail index ν, 0.85-0.9) passes its rank test almost whatever the
  sampler does, so its uniform ranks are weak evidence, and the verdict names it.
- **Power.** What the test could have detected with these settings: :func:`sbc_power` simulates the same test (same
  simulations, draws, bins and Bonferroni level, one faulty parameter) against posteriors 30% too narrow, 30% too wide
  and shifted by half a posterior sd, and the table reports the share of simulated studies that fail.

Negative controls (``misspecify``), each of which must fail:

- ``"prior"``: a sampler that ignores the data (every posterior replaced by fresh prior draws; no fit is run). Its
  ranks are uniform, so only the contraction check can catch it.
- ``"narrow"``: a wrong posterior: the fitted draws shrunk by ``distortion`` (default 0.5) around their mean.
- ``"law"``: a simulator from a different law: the mean is the law with every input x replaced by x^γ
  (γ = ``distortion``, default 1.25), the noise as drawn; the fitted law is unchanged. For a pure power law this is
  the same family with every exponent γ times larger, so the fitted exponents are biased and their truths rank low.
- ``"sigma"``: residuals ``distortion`` (default 3) times larger than the drawn σ says. Residuals 3σ·ε are what the
  model produces with σ' = 3σ, so this control records a wrong σ only; it says nothing about the law's parameters.

References
----------
Talts, Betancourt, Simpson, Vehtari, Gelman 2018, "Validating Bayesian Inference Algorithms with Simulation-Based
Calibration", arXiv:1804.06788.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer import Predictive

from bayescale.data import load_runs
from bayescale.infer.fit import run_nuts, sampler_record
from bayescale.laws.catalogue import Law, load_law
from bayescale.infer.model import ModelSpec, build_model, mass_structure, resolve_priors
from bayescale.infer.noise import Noise, curve_structure
from bayescale.infer.settings import INITS, NUTS, check_positive_ints, start_settings

__all__ = ["check_calibration", "check_calibration_fit", "FIT_MISSPECIFICATIONS", "default_design", "sbc_power",
           "simulations_for_power", "MISSPECIFICATIONS", "MAX_CONTRACTION", "MAX_DIVERGENT_SHARE",
           "MAX_STALLED_SHARE", "MIN_ESS_SHARE", "POWER_SCENARIOS", "SBC_SAMPLER", "format_verdict",
           "verdict_trusted"]

#: ``None``: the positive control (simulate from the model that is fitted). The others are negative controls (module
#: docstring): ``"prior"`` (data ignored), ``"narrow"`` (posterior draws shrunk), ``"law"`` (data from another law),
#: ``"sigma"`` (residuals inflated: a wrong σ only).
MISSPECIFICATIONS = (None, "prior", "narrow", "law", "sigma")

#: Default strength of each negative control: the shrink factor of the draws, the exponent γ of the inputs, the
#: inflation of the residuals.
DEFAULT_DISTORTION = {"narrow": 0.5, "law": 1.25, "sigma": 3.0}

#: A parameter whose median contraction (posterior IQR / prior IQR in prior-quantile units) is at or above this has not
#: contracted, and a verdict fails when the mean over the law's parameters and σ is. Under a sampler that returns prior
#: draws, one simulation's ratio is the IQR of L uniform draws
#: over 0.5, with sd 1/sqrt(L) = 0.1 at L = 100 (variance of the IQR of uniforms: 0.25/L); its median over S
#: simulations has sd ≈ 1.25 · 0.1 / sqrt(S): 0.04 at S = 10, 0.018 at S = 50. By simulation (2,000 studies), with the
#: sample IQR's 2% low bias, the median of 10 such ratios falls below 0.9 in 2% of studies, of 16 in 0.6%, of 50 in
#: none; the mean over k ≥ 3 parameters is tighter still. The real fits of the SBC designs have mean contractions of
#: 0.09-0.49 (kaplan2020_n iid, kaplan2020_nd hetero, hoffmann2022 run+ou; docs/validation.md), below 0.9.
MAX_CONTRACTION = 0.9

#: Above this share of divergent draws (over every simulated fit) a verdict is not trusted either way: the fits may not
#: have explored their posteriors, so their ranks test the sampler's settings, not the model. The studies of
#: docs/validation.md that passed had 0-0.7% (hoffmann2022: 325 of 45,000); steplaw2025 with 300 warmup had 9.2% (147 of
#: 1,600) and failed on a parameter whose chains had stopped moving, and passed with 1,000 warmup and none.
MAX_DIVERGENT_SHARE = 0.01

#: A simulated fit has stalled when some parameter's bulk effective sample size (over the fit's draws before thinning)
#: is below this share of the draws: a chain whose step size collapsed, or that stopped adapting, creeps in tiny steps
#: and its draws sit near one point, so the truth's rank among them says nothing. Measured (smallest share over a fit's
#: parameters): healthy fits 0.08-1 (kaplan2020_n's design at 150 + 150 draws, tests/test_calibration.py; the one
#: healthy fit of the steplaw2025 study below, 0.12), stalled steplaw2025 fits at the default 300 warmup 0.007-0.008
#: (an ESS of 1.4 of 200 draws; 7 of 8 fits, docs/validation.md).
MIN_ESS_SHARE = 0.03

#: A verdict counts as evidence only when at most this share of its fits stalled (:data:`MIN_ESS_SHARE`).
MAX_STALLED_SHARE = 0.05

#: Distorted posteriors that :func:`sbc_power` reports the test's power against: (name, scale, shift) of the reported
#: posterior relative to the true one, in units of the true posterior sd.
POWER_SCENARIOS = (("narrow_30", 0.7, 0.0), ("wide_30", 1.3, 0.0), ("shift_0.5", 1.0, 0.5))

#: Data statistics used by data-dependent priors during SBC: a typical final loss range of language models
#: (Chinchilla's 240 points span 2.08-5.01 nats/token, CARD.md). Fixed, not read from each simulated table.
SBC_STATISTICS = {"min_loss": 2.0, "max_loss": 4.0}

#: Default sampler of one simulated fit: one chain of 300 warmup + 200 draws from the prior median, the kernel of
#: :func:`bayescale.fit` otherwise (dense mass, target acceptance 0.9). One chain: SBC reads ranks, not R-hat, and a
#: study of S simulations is S fits.
SBC_SAMPLER = NUTS(num_warmup=300, num_samples=200, num_chains=1, init="median", progress_bar=False)


def default_design(law: Law, noise: str | Noise = "iid") -> dict[str, np.ndarray]:
    """The design of ``tests/test_recovery.py``: a 6 × 6 log grid of N ∈ [5e7, 5e9], D ∈ [1e9, 1e11] (36 points along
    the axis for one-input laws); other inputs get 6 log-spaced values in [1, 100].

    For a noise model with run effects or correlated residuals the same grid is read as training curves: every
    combination of the inputs other than D is one run (key ``"run"``), observed at the 6 values of D as checkpoints
    (6 runs × 6 checkpoints for a law of (N, D)).
    """
    noise = Noise.parse(noise)
    ranges = {"N": (5e7, 5e9), "D": (1e9, 1e11)}
    per_axis = 6 if len(law.input_names) > 1 else 36
    axes = [np.geomspace(*ranges.get(n, (1.0, 100.0)), per_axis) for n in law.input_names]
    mesh = np.meshgrid(*axes, indexing="ij")
    design = {n: m.ravel() for n, m in zip(law.input_names, mesh)}
    if noise.run_effect or noise.correlation:
        if noise.axis not in law.input_names or len(law.input_names) < 2:
            raise ValueError(f"noise {noise.spec!r} needs curves along {noise.axis!r}, and law {law.id!r} has inputs "
                             f"{list(law.input_names)}: give a design with a 'run' key, or use noise='iid'")
        others = [n for n in law.input_names if n != noise.axis]
        keys = np.stack([design[n] for n in others], axis=1)
        _, run_idx = np.unique(keys, axis=0, return_inverse=True)
        design["run"] = np.array([f"r{i}" for i in run_idx.ravel()])
    return design


def _chi2_uniform(ranks: np.ndarray, n_draws: int, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square statistic and p-value of ranks in 0..n_draws against the discrete uniform, in ``num_bins`` bins;
    ``ranks`` is (..., S): one test per leading index."""
    import scipy.stats  # on first use: about 0.4 s that import bayescale need not pay
    bins = np.floor(np.asarray(ranks) * num_bins / (n_draws + 1)).astype(int)
    observed = (bins[..., None] == np.arange(num_bins)).sum(axis=-2)
    # Expected share per bin counted exactly over the integer ranks (bins need not hold equal numbers of ranks).
    share = np.bincount(np.floor(np.arange(n_draws + 1) * num_bins / (n_draws + 1)).astype(int), minlength=num_bins)
    expected = share / share.sum() * bins.shape[-1]
    stat = np.sum((observed - expected) ** 2 / expected, axis=-1)
    return stat, scipy.stats.chi2.sf(stat, num_bins - 1)


def sbc_power(
    num_simulations: int,
    n_draws: int,
    num_bins: int,
    *,
    n_parameters: int,
    alpha: float = 0.01,
    scale: float = 1.0,
    shift: float = 0.0,
    num_trials: int = 2000,
    seed: int = 0,
) -> float:
    """Power of the SBC rank test against a distorted posterior, by simulating the test itself (no refits).

    In the coordinates where the true posterior is N(0, 1), the truth is a draw z ~ N(0, 1) and the reported
    posterior is N(shift, scale²). The rank of the truth among ``n_draws`` independent reported draws is then
    Binomial(n_draws, Φ((z − shift) / scale)). Each trial draws ``num_simulations`` ranks, bins them as
    :func:`check_calibration` does and applies its chi-square test at the Bonferroni level ``alpha / n_parameters``
    (one faulty parameter among ``n_parameters``). Returns the share of ``num_trials`` trials that fail. With
    ``scale=1, shift=0`` it is the test's false-alarm rate (at most ``alpha / n_parameters``).

    The Gaussian shape is an approximation of real posteriors; independent draws is what thinning aims at (residual
    autocorrelation makes real ranks slightly over-dispersed, which adds false alarms, not power).
    """
    import scipy.stats  # on first use: about 0.4 s that import bayescale need not pay
    check_positive_ints(num_simulations=num_simulations, n_draws=n_draws, num_bins=num_bins, n_parameters=n_parameters,
                        num_trials=num_trials)
    if not scale > 0:
        raise ValueError(f"scale must be > 0 (the reported posterior sd over the true one), got {scale!r}")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((num_trials, num_simulations))
    ranks = rng.binomial(n_draws, scipy.stats.norm.cdf((z - shift) / scale))
    _, p = _chi2_uniform(ranks, n_draws, num_bins)
    return float(np.mean(p < alpha / n_parameters))


def simulations_for_power(
    target: float = 0.9,
    *,
    n_draws: int,
    num_bins: int,
    n_parameters: int,
    alpha: float = 0.01,
    scale: float = 0.7,
    shift: float = 0.0,
    step: int = 25,
    maximum: int = 5000,
) -> int:
    """The smallest number of simulations (a multiple of ``step``) at which :func:`sbc_power` reaches ``target``
    against the given distortion (default: a posterior 30% too narrow)."""
    for s in range(step, maximum + 1, step):
        if sbc_power(s, n_draws, num_bins, n_parameters=n_parameters, alpha=alpha, scale=scale, shift=shift) >= target:
            return s
    raise ValueError(f"power {target} against scale {scale}, shift {shift} needs more than {maximum} simulations")


def _study_settings(sampler, options, caller: str, num_simulations: int, thin: int, num_bins: int,
                    inits: tuple[str, ...] = INITS) -> tuple[NUTS, int]:
    """The sampler settings of a study's fits (default :data:`SBC_SAMPLER`, median starts; ``inits``: the starts its
    fits can make) and the number of draws kept per fit, ``num_chains · num_samples // thin``, checked against the
    study's sizes."""
    settings = start_settings(sampler, options, caller, SBC_SAMPLER, inits)
    check_positive_ints(num_simulations=num_simulations, thin=thin, num_bins=num_bins)
    n_draws = settings.num_chains * settings.num_samples // thin
    if n_draws + 1 < num_bins:
        raise ValueError(f"num_chains * num_samples // thin = {n_draws} draws give too few rank values for "
                         f"{num_bins} bins")
    return settings, n_draws


def _fit_draws(law, spec, design, structure, log_inputs, losses, key, batched, settings: NUTS):
    """Posterior draws of every simulated table as {name: (S, chains × draws)} (chains one after another), and the
    divergences."""
    names = spec.sampled_names
    if batched:
        from bayescale.infer.batch import fit_batch

        cols = {n: design[n] for n in law.input_names}
        if "run" in design:
            cols["run"] = design["run"]
        tables = [load_runs({**cols, "loss": loss}, inputs=law.input_names, check_units=False) for loss in losses]
        with warnings.catch_warnings():  # per-fit R-hat needs 2 chains; SBC reads ranks, not diagnostics
            warnings.simplefilter("ignore")
            result = fit_batch(law, tables, rng_key=key, sampler=settings, likelihood=spec.likelihood,
                               noise=spec.noise, statistics=spec.statistics, require_identifiable=False)
        post = result.posterior.to_dataset()
        flat = {n: post[n].values.reshape(post.sizes["fit"], -1) for n in names}
        return flat, int(result.sample_stats["diverging"].sum())
    model = build_model(spec, structure)
    # One MCMC object whose model arguments are traced: built by the first table's run_nuts (which sets its mass
    # matrix up from the model's dimensions), it is compiled once and reused for every table.
    mcmc = None
    draws, divergences = {n: [] for n in names}, 0
    for s, k in enumerate(jax.random.split(key, len(losses))):
        mcmc = run_nuts(model, log_inputs, rng_key=k, sampler=settings, mass=mass_structure(settings.dense_mass, spec),
                        traced_args=True, mcmc=mcmc, loss=jnp.asarray(losses[s]))
        divergences += int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
        for n, v in mcmc.get_samples().items():
            if n in draws:
                draws[n].append(np.asarray(v))
    return {n: np.stack(v) for n, v in draws.items()}, divergences


def _ess_share(draws: Mapping[str, np.ndarray], num_chains: int) -> np.ndarray:
    """Bulk effective sample size over the number of draws, per simulation and parameter (simulations x parameters);
    ``draws``: {name: (S, chains × draws)}, chains one after another."""
    from bayescale.infer.diagnostics import azs
    import xarray as xr

    ds = xr.Dataset({n: (("simulation", "chain", "draw"), v.reshape(v.shape[0], num_chains, -1))
                     for n, v in draws.items()})
    ess = azs().ess(ds, method="bulk")
    total = next(iter(draws.values())).shape[1]
    return np.stack([np.nan_to_num(np.asarray(ess[n].values, dtype=float), nan=0.0) for n in draws], axis=1) / total


def _contraction(draws: np.ndarray, prior_sorted: np.ndarray) -> np.ndarray:
    """Per simulation (rows of ``draws``): the IQR of the draws in prior-quantile units over the prior's, 0.5."""
    u = np.searchsorted(prior_sorted, draws) / prior_sorted.size
    q75, q25 = np.quantile(u, [0.75, 0.25], axis=1)
    return (q75 - q25) / 0.5

#: Noise parameters left out of the mean contraction a verdict requires: the tail index and the noise structure's
#: parameters, which the SBC designs barely inform (their contraction is reported per parameter).
_NUISANCE = ("nu", "tau", "ell", "kappa")


def check_calibration(
    law: Law | str,
    *,
    num_simulations: int = 100,
    sampler: NUTS | Mapping[str, Any] | None = None,
    thin: int = 2,
    num_bins: int = 5,
    likelihood: str = "student_t",
    noise: str | Noise = "iid",
    design: Mapping[str, Any] | None = None,
    statistics: Mapping[str, float] | None = None,
    misspecify: str | None = None,
    distortion: float | None = None,
    alpha: float = 0.01,
    max_contraction: float = MAX_CONTRACTION,
    rng_key: int = 0,
    batched: bool = True,
    **sampler_options: Any,
) -> pd.DataFrame:
    """Simulation-based calibration of a law's fit: rank uniformity, posterior contraction and the test's power.

    Parameters
    ----------
    law
        Law, catalogue id or law-file path.
    num_simulations
        Prior draws, each simulated and fitted once.
    sampler, **sampler_options
        The sampler settings of every simulated fit: a :class:`bayescale.NUTS` value (or a dict of its fields;
        ``None``: :data:`SBC_SAMPLER`, one chain of 300 warmup + 200 draws), with any of its fields as keywords on
        top (``num_warmup=150, num_samples=150``). Chains start at the prior median; ``init="map"`` (around a
        multi-start MAP) needs ``batched=False``, since :func:`bayescale.fit_batch` refuses it; several chains are pooled. Recorded in ``attrs["settings"]["sampler"]``.
    thin
        Every ``thin``-th draw is kept (to cut autocorrelation, which makes ranks non-uniform even for a correct
        sampler), giving ``L = num_chains · num_samples // thin`` draws and ranks in 0..L.
    num_bins
        Bins of the chi-square test (keep ``num_simulations / num_bins`` ≥ 5 for the chi-square approximation).
    likelihood, noise
        The noise model simulated and fitted (as in :func:`bayescale.fit`; ``noise`` may not be ``"auto"``).
    design
        Inputs of the simulated table, plus ``"run"`` labels for curve noise (default :func:`default_design`).
    statistics
        Values of the data statistics in the priors (default :data:`SBC_STATISTICS`).
    misspecify
        One of :data:`MISSPECIFICATIONS`; ``None`` is the positive control, the others are negative controls.
    distortion
        Strength of the negative control (default :data:`DEFAULT_DISTORTION` of its kind).
    alpha
        Family-wise level: a parameter fails when its p-value is below ``alpha / n_parameters``.
    max_contraction
        The verdict fails when the mean contraction of the law's parameters and σ is at or above this.
    batched
        Fit every simulated table in one vectorised run (:func:`bayescale.infer.batch.fit_batch`, compiled once); ``False``
        fits them one after another with one reused MCMC object (the same model and sampler settings).

    Returns
    -------
    pandas.DataFrame
        Per parameter: ``chi2``, ``p_value``, ``mean_rank`` (normalised to [0, 1]; 0.5 if calibrated), ``uniform``
        (p-value at or above the Bonferroni level), ``contraction`` (median posterior IQR / prior IQR in
        prior-quantile units), ``informative`` (contraction below ``max_contraction``). ``attrs``: ``passes`` (every
        parameter's ranks are uniform and ``mean_contraction`` over the law's parameters and σ is below
        ``max_contraction``), ``uniform``, ``contracts``, ``uninformative`` (parameters whose ranks test little),
        ``power`` (the test's power against each of :data:`POWER_SCENARIOS`), ``ranks``
        (simulations × parameters), ``contractions`` (per simulation), settings, ``divergences``, ``rejected``,
        ``divergent_share`` (divergent draws over all draws of the fits; above :data:`MAX_DIVERGENT_SHARE`
        :func:`format_verdict` says the verdict is not to be trusted, pass or fail).
    """
    law = law if isinstance(law, Law) else load_law(law)
    if misspecify not in MISSPECIFICATIONS:
        raise ValueError(f"misspecify {misspecify!r}: must be one of {list(MISSPECIFICATIONS)}")
    settings, n_draws = _study_settings(sampler, sampler_options, "check_calibration (batched: fit_batch)" if batched
                                        else "check_calibration", num_simulations, thin, num_bins,
                                        ("median",) if batched else INITS)
    if isinstance(noise, str) and noise.strip() == "auto":
        raise ValueError("noise='auto' depends on the data; give the noise model to check, e.g. 'iid' or 'run+ou'")
    noise = Noise.parse(noise)
    if distortion is None:
        distortion = DEFAULT_DISTORTION.get(misspecify)
    stats = dict(SBC_STATISTICS if statistics is None else statistics)
    spec = ModelSpec(law=law, priors=resolve_priors(law, likelihood, None, noise), statistics=stats,
                     likelihood=likelihood, noise=noise)
    if design is None:
        x = default_design(law, noise)
    else:
        missing = [n for n in (*law.input_names, *(("run",) if noise.names else ())) if n not in design]
        if missing:
            raise ValueError(f"design lacks {missing}: it needs every input of law {law.id!r}"
                             + (" and run labels for curve noise" if noise.names else ""))
        x = {n: np.asarray(design[n], dtype=float) for n in law.input_names}
        if "run" in design:
            x["run"] = np.asarray(design["run"])
    size = x[law.input_names[0]].size
    table = load_runs({**x, "loss": np.ones(size)}, inputs=law.input_names, check_units=False)
    structure = curve_structure(table, noise)
    model = build_model(spec, structure)
    log_inputs = {n: jnp.asarray(np.log(x[n])) for n in law.input_names}
    names = list(spec.sampled_names)
    key = jax.random.PRNGKey(rng_key)
    k_prior, k_fit, k_fresh = jax.random.split(key, 3)
    # Draw extra prior samples and keep the first num_simulations whose simulated losses are finite and positive in
    # float64: the wide amplitude priors occasionally give log-losses beyond ±709 (overflow to inf or 0), which no fit
    # can start from. This conditions the prior on representable data; the rejected share is recorded in
    # attrs["rejected"] (a few percent at most for the catalogue priors, all far outside real losses).
    prior = Predictive(model, num_samples=2 * num_simulations + 10)(k_prior, log_inputs)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_loss_all = np.log(np.asarray(prior["loss"]))
        if misspecify in ("sigma", "law"):
            params = {n: jnp.asarray(prior[n]) for n in law.parameter_names}
            mu = np.asarray(jax.vmap(lambda p: law.log_fn(p, log_inputs))(params))
            if misspecify == "sigma":
                log_loss_all = mu + distortion * (log_loss_all - mu)
            else:
                warped = {n: distortion * v for n, v in log_inputs.items()}
                log_loss_all = log_loss_all - mu + np.asarray(jax.vmap(lambda p: law.log_fn(p, warped))(params))
    ok = np.all(np.isfinite(log_loss_all) & (np.abs(log_loss_all) < 700), axis=1)
    keep = np.flatnonzero(ok)[:num_simulations]
    if keep.size < num_simulations:
        raise ValueError(f"only {keep.size} of {ok.size} prior draws of law {law.id!r} give finite losses on this design")
    rejected = int(np.sum(~ok[: keep[-1]]))
    truth = {n: np.asarray(prior[n])[keep] for n in names}

    # The prior's CDF per parameter from many prior draws (4000: its quartiles to ±0.01), which also serve the
    # "prior" control.
    n_fresh = max(4000, num_simulations * n_draws)
    fresh = Predictive(model, num_samples=n_fresh, return_sites=names)(k_fresh, log_inputs)
    if misspecify == "prior":  # no fit: each simulation's "posterior" is L fresh prior draws
        kept = {n: np.asarray(fresh[n])[: num_simulations * n_draws].reshape(num_simulations, n_draws) for n in names}
        divergences, ess_share = 0, np.ones((num_simulations, len(names)))
    else:
        draws, divergences = _fit_draws(law, spec, x, structure, log_inputs, np.exp(log_loss_all[keep]), k_fit,
                                        batched, settings)
        ess_share = _ess_share(draws, settings.num_chains)
        kept = {n: draws[n][:, ::thin][:, :n_draws] for n in names}
        if misspecify == "narrow":
            kept = _shrunk(kept, distortion)
    return _verdict(
        names, truth, kept, {n: np.asarray(fresh[n]) for n in names}, n_draws=n_draws, num_bins=num_bins, alpha=alpha,
        max_contraction=max_contraction, divergences=divergences,
        draws_per_fit=settings.num_chains * settings.num_samples, ess_share=ess_share,
        law=law.id, noise=noise.spec, likelihood=likelihood, misspecify=misspecify,
        distortion=distortion if misspecify else None, rejected=rejected,
        settings=dict(num_warmup=settings.num_warmup, num_samples=settings.num_samples, thin=thin,
                      likelihood=likelihood, noise=noise.spec, statistics=stats, rng_key=rng_key, batched=batched,
                      sampler=json.loads(sampler_record(settings, rng_key))),
    )


#: Negative controls of :func:`check_calibration_fit`, which knows no law formula: the prior-returning sampler and
#: the shrunk posterior.
FIT_MISSPECIFICATIONS = (None, "prior", "narrow")


def check_calibration_fit(
    fit: Callable[..., Any],
    table: pd.DataFrame,
    *,
    column: str = "loss",
    num_simulations: int = 50,
    sampler: NUTS | Mapping[str, Any] | None = None,
    thin: int = 2,
    num_bins: int = 5,
    misspecify: str | None = None,
    distortion: float | None = None,
    alpha: float = 0.01,
    max_contraction: float = MAX_CONTRACTION,
    rng_key: int = 0,
    fit_kwargs: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Simulation-based calibration of any fit function of the result contract, through the function itself.

    :func:`check_calibration` builds a law's model; the declared models (per-token loss, shape, critical batch,
    loss-to-steps, schedule laws) have their own fit functions, and this check runs them as a user does. A first fit
    of ``table`` (the design: every input as given) supplies, from its ``prior`` and ``prior_predictive`` groups
    (joint draws of the parameters and of the observed values, :func:`bayescale.infer.fit.draw_groups`), the truths
    and the simulated data. Each simulated table is ``table`` with ``column`` replaced by one prior-predictive draw of
    the observed variable (which must be ``column`` itself or its log, as for the critical batch's ``log_S`` and
    column ``S``), fitted by ``fit(simulated, sampler=..., rng_key=..., **fit_kwargs)`` with its own key, and the
    truths are ranked among the posterior draws of every scalar parameter that has prior draws. The verdict, its
    power and its trust rules are those of :func:`check_calibration` (same table and attrs).

    The prior must not depend on the simulated values (SBC needs the same prior for the draw and the fit). This is
    checked, not assumed: the first simulated table is also fitted with the design fit's key, and its prior draws and
    prior-predictive draws must equal the design fit's. A prior that reads the observed column (``Uniform(0,
    min_loss)``) raises :class:`ValueError` naming the parameter; override it with a fixed prior in
    ``fit_kwargs["priors"]``.

    Parameters
    ----------
    fit
        A fit function taking a table first and ``sampler=``, ``rng_key=`` (``bs.fit_per_token``, ``bs.fit_shape``,
        ``bs.fit_critical_batch``, or ``functools.partial(bs.schedules.fit_schedule, law)`` with the schedules bound).
    table
        The design: a table the function fits. Its ``column`` is replaced in every simulation.
    num_simulations, thin, num_bins, alpha, max_contraction, rng_key
        As in :func:`check_calibration`. At most the number of prior draws the fit function keeps (500 for the
        declared models).
    sampler
        Settings of every fit (default :data:`SBC_SAMPLER`, one chain of 300 warmup + 200 draws from the prior median).
    misspecify, distortion
        One of :data:`FIT_MISSPECIFICATIONS`: ``"prior"`` (each posterior replaced by prior draws of the design fit,
        none of them the truth; no fit run) or ``"narrow"`` (posterior draws shrunk by ``distortion``, default 0.5).
    fit_kwargs
        Further keywords of ``fit`` (``priors``, ``noise``, ...), the same for the design fit and every simulation.
    progress
        Called as ``progress(done, total)`` after each fit.
    """
    if misspecify not in FIT_MISSPECIFICATIONS:
        raise ValueError(f"misspecify {misspecify!r}: must be one of {list(FIT_MISSPECIFICATIONS)} (the controls "
                         "that break a law's formula need check_calibration)")
    if not isinstance(table, pd.DataFrame) or column not in table.columns:
        raise ValueError(f"table must be a pandas DataFrame with column {column!r}")
    settings, n_draws = _study_settings(sampler, {}, "check_calibration_fit", num_simulations, thin, num_bins)
    if distortion is None:
        distortion = DEFAULT_DISTORTION.get(misspecify)
    kwargs = dict(fit_kwargs or {})
    key = jax.random.PRNGKey(rng_key)
    k_design, k_fits, k_prior_control = jax.random.split(key, 3)

    def run(data: pd.DataFrame, k: jax.Array) -> Any:
        with warnings.catch_warnings():  # one chain: no R-hat; SBC reads ranks, and counts stalls and divergences
            warnings.simplefilter("ignore")
            return fit(data, sampler=settings, rng_key=k, **kwargs)

    design = run(table, k_design)
    for group in ("prior", "prior_predictive", "observed_data", "posterior"):
        if group not in design.children:
            raise ValueError(f"the result of {getattr(fit, '__name__', fit)!r} has no {group!r} group: SBC needs joint "
                             "prior and prior-predictive draws")
    observed = [str(v) for v in design["observed_data"].data_vars]
    named = [v for v in (column, f"log_{column}") if v in observed and v in design["prior_predictive"]]
    if not named and len(observed) != 1:
        raise ValueError(f"none of the result's observed variables {observed} is {column!r} or its log")
    var = named[0] if named else observed[0]
    y = np.asarray(design["observed_data"][var].values, dtype=float)
    col = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
    if y.shape == col.shape and np.allclose(y, col, rtol=1e-12, atol=0):
        to_column = lambda v: v  # noqa: E731
    elif y.shape == col.shape and np.all(col > 0) and np.allclose(y, np.log(col), rtol=1e-12, atol=1e-12):
        to_column = np.exp
    else:
        raise ValueError(f"the observed variable {var!r} is neither column {column!r} of the table nor its log: "
                         "give the column the fit observes")
    prior, post = design["prior"].to_dataset(), design["posterior"].to_dataset()
    names = [str(n) for n in prior.data_vars if n in post and prior[n].dims == ("chain", "draw")]
    if not names:
        raise ValueError("the result has no scalar parameter with prior draws to rank")
    sims = np.asarray(design["prior_predictive"][var].values, dtype=float).reshape(-1, y.size)
    with np.errstate(over="ignore", invalid="ignore"):
        values = to_column(sims)
    ok = np.all(np.isfinite(values), axis=1)
    if to_column is np.exp:  # a log beyond ±700 overflows to inf or underflows to 0 in float64
        ok &= np.all(np.abs(sims) < 700, axis=1)
    keep = np.flatnonzero(ok)[:num_simulations]
    if keep.size < num_simulations:
        raise ValueError(f"only {keep.size} of {ok.size} prior-predictive draws are finite: ask for fewer simulations "
                         "or keep more prior draws")
    rejected = int(np.sum(~ok[: keep[-1]]))
    prior_draws = {n: np.asarray(prior[n].values).reshape(-1) for n in names}
    truth = {n: prior_draws[n][keep] for n in names}

    def simulated(s: int) -> pd.DataFrame:
        out = table.copy()
        out[column] = values[keep[s]]
        return out

    # the prior does not read the simulated values: same key, same prior draws
    probe = run(simulated(0), k_design)
    same = {n: (probe["prior"][n], prior[n]) for n in prior.data_vars}
    same[f"prior predictive {var}"] = (probe["prior_predictive"][var], design["prior_predictive"][var])
    for n, (a, b) in same.items():
        if not np.array_equal(np.asarray(a.values), np.asarray(b.values), equal_nan=True):
            fix = (f"fix it with fit_kwargs={{'priors': {{{n!r}: ...}}}}" if n in prior.data_vars else
                   "a prior the result does not list reads the data")
            raise ValueError(f"the prior of {n!r} changed with the simulated {column!r} (a data-dependent prior): SBC "
                             f"needs one prior for the draw and the fit; {fix}")
    if misspecify == "prior":
        idx = np.asarray(jax.random.choice(k_prior_control, prior_draws[names[0]].size - 1,
                                           (num_simulations, n_draws)))
        idx = idx + (idx >= keep[:, None])  # every draw but the truth's own
        kept = {n: prior_draws[n][idx] for n in names}
        divergences, ess_share, draws_per_fit = 0, np.ones((num_simulations, len(names))), 1
    else:
        draws, divergences = {n: [] for n in names}, 0
        for s, k in enumerate(jax.random.split(k_fits, num_simulations)):
            res = run(simulated(s), k)
            for n in names:
                draws[n].append(np.asarray(res["posterior"][n].values).reshape(-1))
            divergences += int(np.asarray(res["sample_stats"]["diverging"].values).sum())
            if progress is not None:
                progress(s + 1, num_simulations)
        draws = {n: np.stack(v) for n, v in draws.items()}
        ess_share = _ess_share(draws, settings.num_chains)
        kept = {n: draws[n][:, ::thin][:, :n_draws] for n in names}
        if misspecify == "narrow":
            kept = _shrunk(kept, distortion)
        draws_per_fit = settings.num_chains * settings.num_samples
    kind = design.attrs.get("result_kind", "")
    return _verdict(
        names, truth, kept, prior_draws, n_draws=n_draws, num_bins=num_bins, alpha=alpha,
        max_contraction=max_contraction, divergences=divergences, draws_per_fit=draws_per_fit, ess_share=ess_share,
        law=design.attrs.get("law_id", kind), noise=_noise_spec(design.attrs.get("noise")),
        likelihood=design.attrs.get("likelihood", ""), misspecify=misspecify,
        distortion=distortion if misspecify else None, rejected=rejected, result_kind=kind, column=column,
        observed=var, settings=dict(num_warmup=settings.num_warmup, num_samples=settings.num_samples, thin=thin,
                                    rng_key=rng_key, sampler=json.loads(sampler_record(settings, rng_key)),
                                    fit=getattr(fit, "__name__", repr(fit)), fit_kwargs=repr(kwargs)),
    )


def _shrunk(kept: Mapping[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    """The ``"narrow"`` control: each simulation's draws (rows) shrunk by ``factor`` around their mean."""
    return {n: v.mean(axis=1, keepdims=True) + factor * (v - v.mean(axis=1, keepdims=True)) for n, v in kept.items()}


def _noise_spec(recorded: Any) -> str:
    """The noise model a result records (JSON of :class:`Noise`, or nothing for the declared models' fixed noise)."""
    if recorded is None:
        return "declared"
    try:
        return str(json.loads(recorded)["spec"])
    except (TypeError, ValueError, KeyError):
        return str(recorded)


def _verdict(
    names: list[str],
    truth: Mapping[str, np.ndarray],
    kept: Mapping[str, np.ndarray],
    prior_draws: Mapping[str, np.ndarray],
    *,
    n_draws: int,
    num_bins: int,
    alpha: float,
    max_contraction: float,
    divergences: int,
    draws_per_fit: int,
    ess_share: np.ndarray,
    **attrs: Any,
) -> pd.DataFrame:
    """The verdict table of a study, shared by :func:`check_calibration` and :func:`check_calibration_fit`: ranks of the
    truths (``truth``: {name: (S,)}) among the kept posterior draws (``kept``: {name: (S, n_draws)}), their chi-square
    tests, the contraction against ``prior_draws`` ({name: many prior draws}) and the power; ``attrs`` are added to
    the table's attrs (law, noise, likelihood, misspecify, distortion, rejected, settings)."""
    num_simulations = next(iter(truth.values())).shape[0]
    ranks = np.stack([np.sum(kept[n] < truth[n][:, None], axis=1) for n in names], axis=1)
    contractions = np.stack([_contraction(kept[n], np.sort(prior_draws[n])) for n in names], axis=1)
    chi2, p = _chi2_uniform(ranks.T, n_draws, num_bins)
    level = alpha / len(names)
    table = pd.DataFrame({
        "parameter": names, "chi2": chi2, "p_value": p, "mean_rank": ranks.mean(axis=0) / n_draws,
        "uniform": p >= level, "contraction": np.median(contractions, axis=0),
    }).set_index("parameter")
    table["informative"] = table["contraction"] < max_contraction
    required = ~table.index.isin(_NUISANCE)
    mean_contraction = float(table.loc[required, "contraction"].mean())
    uniform, contracts = bool(table["uniform"].all()), mean_contraction < max_contraction
    power = {name: sbc_power(num_simulations, n_draws, num_bins, n_parameters=len(names), alpha=alpha, scale=sc,
                             shift=sh) for name, sc, sh in POWER_SCENARIOS}
    table.attrs.update(
        ranks=ranks, contractions=contractions, n_draws=n_draws,
        num_simulations=num_simulations, num_bins=num_bins, alpha=alpha, threshold=level,
        max_contraction=max_contraction, power=power, uniform=uniform, mean_contraction=mean_contraction,
        contracts=contracts, passes=uniform and contracts,
        uninformative=[str(n) for n in table.index[~table["informative"]]],
        divergences=divergences,
        divergent_share=divergences / (num_simulations * draws_per_fit),
        ess_share=ess_share, stalled_share=float(np.mean(ess_share.min(axis=1) < MIN_ESS_SHARE)),
        **attrs,
    )
    return table


def verdict_trusted(table: pd.DataFrame) -> bool:
    """Whether a :func:`check_calibration` verdict, pass or fail, can be read as evidence: at most
    :data:`MAX_DIVERGENT_SHARE` of its fits' draws were divergent and at most :data:`MAX_STALLED_SHARE` of its fits
    stalled (:data:`MIN_ESS_SHARE`)."""
    return (table.attrs.get("divergent_share", 0.0) <= MAX_DIVERGENT_SHARE
            and table.attrs.get("stalled_share", 0.0) <= MAX_STALLED_SHARE)


def format_verdict(table: pd.DataFrame) -> str:
    """One line: the verdict of a :func:`check_calibration` table with its power and weakest parameters."""
    a = table.attrs
    worst = table["p_value"].idxmin()
    weak = f"; uninformative: {', '.join(a['uninformative'])}" if a["uninformative"] else ""
    power = ", ".join(f"{k} {v:.0%}" for k, v in a["power"].items())
    why = []
    if a.get("divergent_share", 0.0) > MAX_DIVERGENT_SHARE:
        why.append(f"{a['divergent_share']:.1%} of draws divergent (more than {MAX_DIVERGENT_SHARE:.0%})")
    if a.get("stalled_share", 0.0) > MAX_STALLED_SHARE:
        why.append(f"{a['stalled_share']:.1%} of fits stalled (effective sample size below {MIN_ESS_SHARE:.0%} of the "
                   f"draws; more than {MAX_STALLED_SHARE:.0%})")
    diverged = (f"; NOT TRUSTED: {' and '.join(why)}: the fits may not have explored; run more warmup"
                if not verdict_trusted(table) else "")
    return (f"{a['law']} [{a['likelihood']}, {a['noise']}] {a['misspecify'] or 'positive'}: "
            f"{'PASSES' if a['passes'] else 'FAILS'} ({a['num_simulations']} simulations, {a['num_bins']} bins; "
            f"smallest p {table.loc[worst, 'p_value']:.2g} ({worst}) vs {a['threshold']:.2g}; "
            f"mean contraction {a['mean_contraction']:.2f} vs {a['max_contraction']:g}{weak}; "
            f"power: {power}){diverged}")
