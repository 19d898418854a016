"""Held-out validation: fit on part of the runs, predict the rest, score the predictions.

The check the literature agrees on (LAWS.md, "practice"): extrapolate to runs the fit did not see and report whether
the interval covered them. Splits are built from the data (:func:`make_splits`), each training part is fitted with
:func:`bayescale.fit` (and, when asked, the classic baseline :func:`bayescale.validation.baseline.fit_baseline`), the held-out
points are predicted with :func:`bayescale.results.predict` and scored:

- ``abs_rel_err``: mean over held-out points of ``|median − y| / |y|`` (median of the posterior predictive);
- ``r2``: 1 − Σ(y − median)² / Σ(y − ȳ)² over the held-out points (the R² that Ouro reports);
- ``lpd``: mean log predictive density, ``log (1/S) Σ_s p(y | θ_s)`` with the fitted noise model (nats per point;
  higher is better; a density of the loss itself, so comparable across laws and methods);
- ``crps``: mean continuous ranked probability score of the predictive sample of the *log*-loss (lower is better;
  0.01 is about a 1% error). Not on the loss scale: the model's Student-t noise lives on log-loss, and exp of a
  Student-t variable has no mean for any ν, so a loss-scale CRPS is infinite in theory and, from a sample, set by its
  few largest draws (it read 1.5e+24 on a real table whose posterior admitted ν < 1). On log-loss it is finite
  whenever ν > 1; ``crps_dominated`` flags a fold whose score still rests on its most extreme draws: the mean CRPS
  moves by more than :data:`CRPS_TRIM_TOLERANCE` when the 0.5% most extreme draws each side of every point are
  dropped (with a finite mean they move it by a few percent);
- ``cover50``, ``cover90``: share of held-out points inside the central 50% / 90% predictive interval;
- ``cover90_law``: share inside the 90% interval of the law curve alone (parameter uncertainty only; for the bootstrap
  this is the classic "bootstrap interval" of the prediction);
- ``width90``: mean width of the 90% predictive interval relative to the absolute value of its median.

References
----------
Gneiting & Raftery 2007, "Strictly Proper Scoring Rules, Prediction, and Estimation", JASA 102 (CRPS, log score).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd
import scipy.special
import xarray as xr

from bayescale.data import load_runs, round_sig
from bayescale.infer.diagnostics import convergence
from bayescale.laws.catalogue import Law, load_law

__all__ = ["SPLITS", "DEFAULT_BY", "METHODS", "Split", "make_splits", "validate", "validate_laws", "LawValidation",
           "Draws", "predictive_draws", "score", "crps_sample", "crps_score", "plot_validation"]

#: ``largest``: leave the ``holdout`` largest values of ``by`` out (one fold). ``rollout``: fit on the smallest k values
#: of ``by`` and predict the next one, for the last ``max_folds`` k. ``leave_one_out``: hold out each value of ``by``
#: (a compute budget, a covariate such as ``T_m``) in turn, or only those in ``values``.
#: ``prefix``: fit on the first ``fraction`` of every run's curve (checkpoints with ``by`` ≤ fraction × the run's last
#: ``by``), predict the rest, one fold per fraction.
SPLITS = ("largest", "rollout", "leave_one_out", "prefix")
#: The variable a split runs along when ``by`` is not given.
DEFAULT_BY = {"largest": "N", "rollout": "N", "leave_one_out": "C", "prefix": "D"}
#: ``bayes``: :func:`bayescale.fit`; ``baseline``: Huber + L-BFGS + bootstrap (:mod:`bayescale.validation.baseline`).
METHODS = ("bayes", "baseline")
_COMPUTE = "C"


class Split(NamedTuple):
    """One fold: boolean masks over the dataset's points and a description of what is held out."""

    name: str
    train: np.ndarray
    test: np.ndarray
    held_out: str


def _keys(ds: xr.Dataset, by: str, flops_per_param_token: float) -> np.ndarray:
    allowed = [str(v) for v in ds.data_vars if v != "loss"]
    if {"N", "D"} <= set(allowed):
        allowed.append(_COMPUTE)
    if by not in allowed:
        raise ValueError(f"by {by!r}: must be one of {allowed}")
    if by == _COMPUTE and _COMPUTE not in ds:
        return round_sig(flops_per_param_token * ds["N"].values * ds["D"].values)
    return round_sig(ds[by].values)


def make_splits(
    data: xr.Dataset,
    split: str = "largest",
    *,
    by: str | None = None,
    holdout: int = 1,
    min_train: int = 3,
    max_folds: int = 3,
    values: Sequence[float] | None = None,
    fractions: Sequence[float] = (0.25, 0.5, 0.75),
    flops_per_param_token: float = 6.0,
) -> list[Split]:
    """Build held-out folds over the distinct values of ``by`` (rounded to 2 significant digits).

    Parameters
    ----------
    data
        A dataset from :func:`~bayescale.data.load_runs`.
    split
        One of :data:`SPLITS`.
    by
        The variable the split runs along: a law input (``N``, ``D``), ``C`` (compute, ``flops_per_param_token·N·D``)
        or any covariate column of the dataset (``T_m``, ``batch_size``). Default per split: :data:`DEFAULT_BY`.
    holdout
        ``largest``: how many of the largest distinct values to hold out.
    min_train
        ``rollout``: the fewest distinct values to fit on.
    max_folds
        ``rollout``: keep only the last ``max_folds`` folds (the longest training sets); ``leave_one_out``: ignored.
    values
        ``leave_one_out``: hold out only these values (matched after rounding); default all.
    fractions
        ``prefix``: the shares of each curve to fit on, one fold each.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: must be one of {list(SPLITS)}")
    by = by or DEFAULT_BY[split]
    if split == "prefix":
        return _prefix_splits(data, by, fractions)
    keys = _keys(data, by, flops_per_param_token)
    distinct = np.unique(keys)
    folds: list[Split] = []
    if split == "largest":
        if not isinstance(holdout, (int, np.integer)) or not 1 <= holdout < distinct.size:
            raise ValueError(f"holdout must be an integer in [1, {distinct.size - 1}] (distinct {by} values), got {holdout!r}")
        cut = distinct[-holdout]
        test = keys >= cut
        folds.append(Split(f"largest {by}", ~test, test, f"{by} >= {cut:.3g} ({holdout} largest)"))
    elif split == "rollout":
        if not isinstance(min_train, (int, np.integer)) or not 1 <= min_train < distinct.size:
            raise ValueError(f"min_train must be an integer in [1, {distinct.size - 1}] (distinct {by} values), got {min_train!r}")
        for k in range(max(min_train, distinct.size - max_folds), distinct.size):
            train, test = keys <= distinct[k - 1], keys == distinct[k]
            folds.append(Split(f"rollout {by} k={k}", train, test, f"{by} = {distinct[k]:.3g} from the {k} smallest"))
    else:
        chosen = distinct if values is None else np.unique(round_sig(np.asarray(values, dtype=float)))
        unknown = [v for v in chosen if v not in distinct]
        if unknown:
            raise ValueError(f"values {[float(v) for v in unknown]}: must be among {[float(v) for v in distinct]}")
        for v in chosen:
            test = keys == v
            folds.append(Split(f"leave {by}={v:.3g} out", ~test, test, f"{by} = {v:.3g}"))
    return folds


def _prefix_splits(data: xr.Dataset, by: str, fractions: Sequence[float]) -> list[Split]:
    if by not in data:
        raise ValueError(f"split 'prefix' runs along {by!r}, which the data do not have")
    bad = [f for f in fractions if not 0 < f < 1]
    if bad or not len(fractions):
        raise ValueError(f"fractions must lie strictly between 0 and 1, got {list(fractions)}")
    t = data[by].values
    last = pd.Series(t).groupby(data["run"].values).transform("max").values
    folds = []
    for f in fractions:
        train = t <= f * last
        if not train.any() or train.all():
            raise ValueError(f"prefix {f:g}: no point on one side of the cut; each run needs checkpoints on both sides")
        folds.append(Split(f"first {f:.0%} of each curve", train, ~train, f"{by} > {f:g} x each run's last {by}"))
    return folds


#: Relative change of the mean CRPS, when each point's 0.5% most extreme draws on either side are dropped, beyond
#: which a score is flagged as dominated by a few draws (``crps_dominated``). Measured on 4000 draws x 20 points of
#: a scaled Student-t (5 seeds): Normal 1.4%, ν = 3 1.9%, ν = 1.5 3%, ν = 1 6%, ν = 0.8 12-24%, ν = 0.5 280% or more;
#: 10% separates a sample with a mean from one without.
CRPS_TRIM_TOLERANCE = 0.10


def crps_trimmed(draws: np.ndarray, y: np.ndarray, tail: float = 0.005) -> np.ndarray:
    """:func:`crps_sample` of each point's draws without the ``tail`` share of smallest and largest ones."""
    x = np.sort(np.asarray(draws, dtype=float), axis=0)
    k = int(np.floor(tail * x.shape[0]))
    return crps_sample(x[k:x.shape[0] - k] if k else x, y)


def crps_score(draws: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
    """Mean CRPS over points of a predictive sample (samples, points) and whether a few draws dominate it: the mean
    moves by more than :data:`CRPS_TRIM_TOLERANCE` without each point's 0.5% most extreme draws on either side."""
    full = float(np.mean(crps_sample(draws, y)))
    core = float(np.mean(crps_trimmed(draws, y)))
    return full, not (np.isfinite(full) and abs(full - core) <= CRPS_TRIM_TOLERANCE * core)


def crps_sample(draws: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of a predictive sample, per point: ``E|X − y| − ½ E|X − X'|``.

    ``draws`` has shape (samples, points). ``E|X − X'|`` is computed from the sorted sample in O(S log S):
    ``(2/S²) Σ_i (2i − S − 1) x_(i)`` (the "PWM" form; Zamo & Naveau 2018, Math. Geosci. 50).
    """
    x = np.sort(np.asarray(draws, dtype=float), axis=0)
    s = x.shape[0]
    term1 = np.mean(np.abs(x - y[None, :]), axis=0)
    i = np.arange(1, s + 1)[:, None]
    spread = 2.0 / s**2 * np.sum((2 * i - s - 1) * x, axis=0)
    return term1 - 0.5 * spread


class Draws(NamedTuple):
    """Predictive draws of one fit at held-out points: the values, the law curve (parameter uncertainty only), the
    predictive on the likelihood's (link) scale and the pointwise log predictive density of the observed values."""

    y: np.ndarray
    pred: np.ndarray
    curve: np.ndarray
    link_pred: np.ndarray
    lpd: np.ndarray


def predictive_draws(result: xr.DataTree, test: xr.Dataset, law: Law, *, rng_key: int = 0) -> Draws:
    """Posterior predictive draws (samples, points) of ``result`` at the points of ``test`` and their pointwise LPD."""
    from bayescale.results.predict import draw_noise, draws_log_law, log_density, noise_terms

    inputs = {n: test[n].values for n in law.input_names}
    y = test["loss"].values
    post = result["posterior"].to_dataset()
    log_curve = draws_log_law(law, {n: post[n].values.reshape(-1) for n in law.parameter_names}, inputs)
    # Runs seen in the fit (a curve's held-out tail) keep their run effect and continue from their last checkpoint.
    terms = noise_terms(result, law, log_curve, inputs, run=test["run"].values)
    link_pred = log_curve + draw_noise(terms, jax.random.PRNGKey(rng_key))
    with np.errstate(over="ignore"):  # a Student-t draw far out overflows the loss scale; link_pred stays exact
        pred = law.target.inverse(link_pred)
    lp = log_density(terms, log_curve, y, law.target)
    lpd = scipy.special.logsumexp(lp, axis=0) - np.log(lp.shape[0])
    return Draws(y, pred, law.target.inverse(log_curve), link_pred, lpd)


def _metrics(draws: Draws, link_y: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The metrics of this module from predictive draws, and the per-point columns they rest on."""
    y, pred = draws.y, draws.pred
    q05, q25, q50, q75, q95 = np.quantile(pred, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    l05, l95 = np.quantile(draws.curve, [0.05, 0.95], axis=0)
    # CRPS on the link scale (log-loss for a loss): see the module docstring for why not on the loss itself.
    crps_mean, dominated = crps_score(draws.link_pred, link_y)
    columns = {"loss": y, "median": q50, "q05": q05, "q95": q95, "law_q05": l05, "law_q95": l95, "lpd": draws.lpd,
               "crps": crps_sample(draws.link_pred, link_y)}
    metrics = {
        "abs_rel_err": float(np.mean(np.abs(q50 - y) / np.abs(y))),  # |y|: a real target may be negative
        "r2": float(1 - np.sum((y - q50) ** 2) / np.sum((y - y.mean()) ** 2)) if y.size > 1 else np.nan,
        "lpd": float(np.mean(draws.lpd)),
        "crps": crps_mean,
        "crps_dominated": bool(dominated),
        "cover50": float(np.mean((y >= q25) & (y <= q75))),
        "cover90": float(np.mean((y >= q05) & (y <= q95))),
        "cover90_law": float(np.mean((y >= l05) & (y <= l95))),
        "width90": float(np.mean((q95 - q05) / np.abs(q50))),
    }
    return metrics, columns


def score(result: xr.DataTree, test: xr.Dataset, law: Law, *, rng_key: int = 0) -> tuple[dict[str, float], pd.DataFrame]:
    """Score a fit (or baseline) on held-out points: the metrics of this module and a per-point table."""
    draws = predictive_draws(result, test, law, rng_key=rng_key)
    metrics, columns = _metrics(draws, law.target.link(draws.y))
    inputs = {n: test[n].values for n in law.input_names}
    points = pd.DataFrame({"point": test["point"].values, "run": test["run"].values, **inputs, **columns})
    return metrics, points


def validate(
    law: Law | str,
    data: Any,
    split: str = "largest",
    *,
    by: str | None = None,
    holdout: int = 1,
    min_train: int = 3,
    max_folds: int = 3,
    values: Sequence[float] | None = None,
    fractions: Sequence[float] = (0.25, 0.5, 0.75),
    methods: Sequence[str] = ("bayes",),
    fit_kwargs: Mapping[str, Any] | None = None,
    baseline_kwargs: Mapping[str, Any] | None = None,
    rng_key: int = 0,
    columns: Mapping[str, str] | None = None,
    flops_per_param_token: float = 6.0,
    on_fold: Any = None,
) -> pd.DataFrame:
    """Held-out validation of a law on a run table: one row per (fold, method) with the metrics of this module.

    Parameters
    ----------
    law
        Law, catalogue id or law-file path.
    data
        A dataset from :func:`~bayescale.data.load_runs` or anything it accepts.
    split, by, holdout, min_train, max_folds, values, fractions
        The folds; see :func:`make_splits` and :data:`SPLITS`.
    methods
        Any of :data:`METHODS`: ``"bayes"`` (:func:`bayescale.fit`) and ``"baseline"`` (Huber + bootstrap).
    fit_kwargs, baseline_kwargs
        Passed to :func:`bayescale.fit` and :func:`bayescale.validation.baseline.fit_baseline` (e.g. ``num_samples``,
        ``num_bootstrap``). The Bayesian fits leave out their in-sample per-point groups (``pointwise=False``) unless
        ``on_fold`` is given or ``fit_kwargs`` sets ``pointwise``.
    rng_key
        Seed of the fits and of the predictive draws.
    on_fold
        Called as ``on_fold(split, method, result, train, test)`` after each fit (to plot or save it).

    Returns
    -------
    pandas.DataFrame
        Columns ``fold``, ``held_out``, ``method``, ``n_train``, ``n_test``, ``extrapolation`` (decades beyond the
        training range of ``by`` when it is an input, else NaN), then the metrics. ``table.attrs["points"]`` holds the
        per-point predictions (for :func:`plot_validation`), ``table.attrs["split"]`` the split settings.

    Examples
    --------
    >>> table = validate("hoffmann2022", load_chinchilla(), "largest", holdout=5, methods=("bayes", "baseline"))  # doctest: +SKIP
    """
    from bayescale.validation.baseline import fit_baseline
    from bayescale.infer.fit import fit

    law = law if isinstance(law, Law) else load_law(law)
    ds = data if isinstance(data, xr.Dataset) else load_runs(data, columns=columns, inputs=law.input_names,
                                                              target=law.target.kind)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods {list(methods)}: each must be one of {list(METHODS)}")
    by = by or DEFAULT_BY.get(split, "N")
    folds = make_splits(ds, split, by=by, holdout=holdout, min_train=min_train, max_folds=max_folds, values=values,
                        fractions=fractions, flops_per_param_token=flops_per_param_token)
    rows, all_points = [], []
    for fold in folds:
        train, test = ds.isel(point=np.flatnonzero(fold.train)), ds.isel(point=np.flatnonzero(fold.test))
        for method in methods:
            if method == "bayes":
                # a fold's fit is scored on held-out points from its posterior: its per-point groups (each a
                # compiled program of its own) are kept only when on_fold may read them
                result = fit(law, train, **({"rng_key": rng_key, "pointwise": on_fold is not None}
                                            | dict(fit_kwargs or {})))
            else:
                result = fit_baseline(law, train, **({"rng_key": rng_key} | dict(baseline_kwargs or {})))
            if on_fold is not None:
                on_fold(fold, method, result, train, test)
            metrics, points = score(result, test, law, rng_key=rng_key)
            decades = np.nan
            if by in law.input_names:
                hi = float(train[by].max())
                decades = float(np.log10(test[by].values.max() / hi)) if test[by].values.max() > hi else 0.0
            rows.append(
                {"fold": fold.name, "held_out": fold.held_out, "method": method, "n_train": int(fold.train.sum()),
                 "n_test": int(fold.test.sum()), "extrapolation": decades, **metrics,
                 "converged": convergence(result).converged}
            )
            all_points.append(points.assign(fold=fold.name, method=method))
    table = pd.DataFrame(rows)
    def names(mask) -> list[str]:
        return [f"{f} / {m}" for f, m in zip(table.loc[mask, "fold"], table.loc[mask, "method"])]

    flagged = names(table["crps_dominated"])
    if flagged:
        warnings.warn(f"CRPS of {flagged} rests on a few extreme predictive draws (heavy Student-t tails, nu near or "
                      f"below 1): compare those folds by lpd and coverage instead", UserWarning, stacklevel=2)
    unconverged = names(~table["converged"])
    if unconverged:
        warnings.warn(f"the fits of {unconverged} did not converge: their scores are not trustworthy (column "
                      "'converged')", UserWarning, stacklevel=2)
    table.attrs["points"] = pd.concat(all_points, ignore_index=True)
    table.attrs["split"] = {"split": split, "by": by, "holdout": holdout, "law": law.id}
    return table


@dataclass(frozen=True)
class LawValidation:
    """Several laws validated on one held-out split, and their stack (:func:`validate_laws`).

    Attributes
    ----------
    table
        One row per law, ranked by held-out LPD, then the stacks: ``stack`` (weights fitted on the next-largest fold,
        scored on the held-out one) and, when computed, ``stack_loo`` (weights from in-sample PSIS-LOO).
    weights
        Law → extrapolation stacking weight (sums to 1).
    weights_loo
        Law → stacking weight from PSIS-LOO of the training fits (:func:`bayescale.compare_laws`), or None.
    fits
        Law → its fit on the whole training part (everything but the held-out points).
    points
        Per-point predictions of every law and of the stacks on the held-out points (column ``law``).
    """

    table: pd.DataFrame
    weights: dict[str, float]
    weights_loo: dict[str, float] | None
    fits: dict[str, xr.DataTree]
    points: pd.DataFrame

    def predict(self, *, kind: str = "predictive", num_draws: int | None = None, rng_key: int = 0,
                allow_unconverged: bool = False, **inputs: Any) -> xr.Dataset:
        """The stacked prediction at new inputs: :func:`bayescale.predict_averaged` of :attr:`fits` with the
        extrapolation weights :attr:`weights` (``kind="predictive"`` by default: a predictive interval for new runs)."""
        from bayescale.validation.comparison import predict_averaged

        used = {k: v for k, v in self.weights.items() if v > 0}
        return predict_averaged({k: self.fits[k] for k in used}, used, kind=kind, num_draws=num_draws,
                                rng_key=rng_key, allow_unconverged=allow_unconverged, **inputs)

    def __str__(self) -> str:
        return self.table.to_string(index=False, float_format="%.4g")


def _mixture(parts: Sequence[Draws], weights: np.ndarray, rng: np.random.Generator) -> Draws:
    """Draws of the mixture ``Σ_k w_k p_k``: each component's share of draws by its weight; the pointwise density is
    the exact mixture density ``log Σ_k w_k p_k(y_i)`` (not estimated from the resampled draws)."""
    from bayescale.validation.comparison import mixture_counts

    total = min(p.pred.shape[0] for p in parts)
    picks = [rng.choice(p.pred.shape[0], n, replace=False) for p, n in zip(parts, mixture_counts(weights, total))]
    stacked = {f: np.concatenate([getattr(p, f)[i] for p, i in zip(parts, picks)])
               for f in ("pred", "curve", "link_pred")}
    return Draws(parts[0].y, stacked["pred"], stacked["curve"], stacked["link_pred"], _mixed_lpd(parts, weights))


def _mixed_lpd(parts: Sequence[Draws], weights: np.ndarray) -> np.ndarray:
    """Pointwise ``log Σ_k w_k p_k(y_i)``."""
    with np.errstate(divide="ignore"):  # a weight of 0 drops its law: log 0 = -inf inside the logsumexp
        log_w = np.log(weights)
    return scipy.special.logsumexp(np.stack([p.lpd for p in parts], axis=1) + log_w, axis=1)


def validate_laws(
    data: Any,
    laws: Sequence[Law | str],
    split: str = "largest",
    *,
    by: str | None = None,
    holdout: int = 1,
    stack_holdout: int = 1,
    fit_kwargs: Mapping[str, Any] | None = None,
    loo_weights: bool = True,
    rng_key: int = 0,
    columns: Mapping[str, str] | None = None,
    flops_per_param_token: float = 6.0,
) -> LawValidation:
    """Compare laws by how well they extrapolate, and stack them by the same criterion.

    The ``holdout`` largest values of ``by`` are held out. Weights are fitted on a fold nested inside the training
    part: each law is fitted without the ``stack_holdout`` next-largest values, its log predictive density at those
    points is computed, and the stacking weights maximise the summed log density of their mixture
    (:func:`bayescale.validation.comparison.stacking_weights`). Each law is then refitted on the whole training part and scored
    on the held-out points; the stack is the mixture of those fits with the nested weights, so the points that score
    it played no part in choosing its weights. With ``loo_weights`` the table adds the stack whose weights come from
    in-sample PSIS-LOO (:func:`bayescale.compare_laws`) for contrast. Every law is fitted twice.

    Parameters
    ----------
    data
        A dataset from :func:`~bayescale.data.load_runs` with every law's inputs, or anything it accepts.
    laws
        Laws, catalogue ids or law-file paths (at least 2, distinct ids, one target kind).
    split
        ``"largest"`` (the only split with a nested fold of the same kind: the next-largest values).
    by
        The variable the split runs along (default ``N``); see :func:`make_splits`.
    holdout, stack_holdout
        How many of the largest distinct values of ``by`` are held out for scoring, and how many of the next-largest
        for fitting the weights.
    fit_kwargs
        Passed to every :func:`bayescale.fit` (sampler settings, ``likelihood``, ``noise``). The fits leave out their
        in-sample per-point groups (``pointwise=False``; the fits on the whole training split keep them with
        ``loo_weights`` or when ``fit_kwargs`` sets ``pointwise``).
    loo_weights
        Also stack with PSIS-LOO weights of the training fits (needs their pointwise log-likelihood).
    rng_key
        Seed of the fits, of the predictive draws and of the mixture's draw selection.

    Returns
    -------
    LawValidation
        ``.table`` (columns ``law``, ``rank`` by held-out LPD, ``weight``, ``weight_loo``, ``lpd``, ``r2``,
        ``cover90``, ``cover50``, ``abs_rel_err``, ``crps``, ``width90``, ``cover90_law``, ``lpd_stack_fold``: the
        law's LPD on the fold that fitted the weights, ``converged``: both of its fits, ``n_train``, ``n_test``),
        ``.weights``, ``.fits`` and ``.predict(**inputs)``: the stacked predictive.

    References
    ----------
    Yao, Vehtari, Simpson, Gelman 2018, "Using Stacking to Average Bayesian Predictive Distributions", Bayesian
    Analysis 13 (stacking on held-out log scores).

    Examples
    --------
    >>> out = validate_laws(table, ["li2025_farseer", "hoffmann2022"], holdout=3, stack_holdout=3)  # doctest: +SKIP
    >>> print(out.table); band = out.predict(N=1e10, D=2e11)  # doctest: +SKIP
    """
    from bayescale.validation.comparison import compare_laws, stacking_weights
    from bayescale.infer.fit import fit

    laws = [law if isinstance(law, Law) else load_law(law) for law in laws]
    names = [law.id for law in laws]
    if len(laws) < 2:
        raise ValueError(f"validate_laws needs at least 2 laws, got {names}")
    if len(set(names)) < len(names):
        raise ValueError(f"law ids must be distinct, got {names} (give a copied law file its own id)")
    kinds = {law.id: law.target.kind for law in laws}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"the laws predict different target kinds {kinds}: their densities are not comparable")
    if split != "largest":
        raise ValueError(f"split {split!r}: validate_laws supports only 'largest' (the weights come from the "
                         "next-largest values, a nested fold of the same kind)")
    inputs = list(dict.fromkeys(n for law in laws for n in law.input_names))
    ds = data if isinstance(data, xr.Dataset) else load_runs(data, columns=columns, inputs=inputs,
                                                              target=laws[0].target.kind)
    missing = {law.id: [n for n in law.input_names if n not in ds] for law in laws}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        raise ValueError(f"the data lack inputs of the laws: {missing}")
    by = by or DEFAULT_BY["largest"]
    (outer,) = make_splits(ds, "largest", by=by, holdout=holdout, flops_per_param_token=flops_per_param_token)
    train, test = ds.isel(point=np.flatnonzero(outer.train)), ds.isel(point=np.flatnonzero(outer.test))
    left = np.unique(_keys(train, by, flops_per_param_token)).size
    if not isinstance(stack_holdout, (int, np.integer)) or not 1 <= stack_holdout < left:
        raise ValueError(f"stack_holdout must be an integer in [1, {left - 1}] (distinct {by} values left after the "
                         f"{holdout} held out), got {stack_holdout!r}")
    (inner,) = make_splits(train, "largest", by=by, holdout=stack_holdout, flops_per_param_token=flops_per_param_token)
    inner_train = train.isel(point=np.flatnonzero(inner.train))
    inner_test = train.isel(point=np.flatnonzero(inner.test))
    # the fits are scored on held-out points from their posteriors: the in-sample per-point groups (each a compiled
    # program of its own) are kept only where they are read, the LOO stack's log-likelihood
    kwargs = {"rng_key": rng_key, "pointwise": loo_weights} | dict(fit_kwargs or {})

    fits, inner_parts, parts, converged = {}, [], [], {}
    for law in laws:
        inner_fit = fit(law, inner_train, **(kwargs | {"pointwise": False}))
        inner_parts.append(predictive_draws(inner_fit, inner_test, law, rng_key=rng_key))
        fits[law.id] = fit(law, train, **kwargs)
        parts.append(predictive_draws(fits[law.id], test, law, rng_key=rng_key))
        converged[law.id] = bool(convergence(inner_fit).converged and convergence(fits[law.id]).converged)
    weights = stacking_weights(np.stack([p.lpd for p in inner_parts], axis=1))
    weights_loo = None
    if loo_weights:
        with warnings.catch_warnings():  # Pareto-k warnings of LOO belong to the LOO stack, which is only a contrast
            warnings.simplefilter("ignore")
            compared = compare_laws(fits)
        weights_loo = np.array([float(compared.loc[name, "weight"]) for name in names])

    link_y = laws[0].target.link(test["loss"].values)
    rows, points = [], []
    base = {"point": test["point"].values, "run": test["run"].values, **{n: test[n].values for n in inputs}}
    for i, (law, part) in enumerate(zip(laws, parts)):
        metrics, cols = _metrics(part, link_y)
        rows.append({"law": law.id, "weight": float(weights[i]),
                     "weight_loo": float(weights_loo[i]) if weights_loo is not None else np.nan, **metrics,
                     "lpd_stack_fold": float(np.mean(inner_parts[i].lpd)), "converged": converged[law.id]})
        points.append(pd.DataFrame(base | cols).assign(law=law.id))
    stacks = {"stack": weights} | ({"stack_loo": weights_loo} if weights_loo is not None else {})
    for name, w in stacks.items():
        metrics, cols = _metrics(_mixture(parts, w, np.random.default_rng(rng_key)), link_y)
        rows.append({"law": name, "weight": 1.0 if name == "stack" else np.nan,
                     "weight_loo": 1.0 if name == "stack_loo" else np.nan, **metrics,
                     "lpd_stack_fold": float(np.mean(_mixed_lpd(inner_parts, w))),
                     "converged": all(converged[n] for n, wk in zip(names, w) if wk > 1e-3)})
        points.append(pd.DataFrame(base | cols).assign(law=name))
    table = pd.DataFrame(rows)
    single = table.iloc[: len(laws)].sort_values("lpd", ascending=False, kind="stable")
    single.insert(1, "rank", np.arange(1, len(laws) + 1))
    table = pd.concat([single, table.iloc[len(laws):]], ignore_index=True)
    table["n_train"], table["n_test"] = int(outer.train.sum()), int(outer.test.sum())
    unconverged = [n for n in names if not converged[n]]
    if unconverged:
        warnings.warn(f"the fits of {unconverged} did not converge: their scores are not trustworthy (column "
                      "'converged')", UserWarning, stacklevel=2)
    table.attrs["split"] = {"split": split, "by": by, "held_out": outer.held_out, "stack_fold": inner.held_out,
                            "n_stack_train": int(inner.train.sum()), "n_stack_test": int(inner.test.sum())}
    return LawValidation(table, dict(zip(names, map(float, weights))),
                         dict(zip(names, map(float, weights_loo))) if weights_loo is not None else None,
                         fits, pd.concat(points, ignore_index=True))


def plot_validation(table: pd.DataFrame, *, path: str | os.PathLike | None = None, x: str | None = None):
    """Held-out points against ``x`` (default: the split variable) with each method's median and 90% predictive
    interval, one panel per fold; panel titles give each method's 90% coverage and abs. relative error."""
    import matplotlib

    matplotlib.use("Agg") if not os.environ.get("DISPLAY") else None
    from bayescale.results.plots import pyplot
    plt = pyplot()

    if "points" not in table.attrs:
        raise ValueError("table has no per-point predictions (attrs['points']): pass the table validate() returned")
    points = table.attrs["points"]
    by = x or table.attrs.get("split", {}).get("by", "N")
    if by not in points.columns:
        by = [c for c in points.columns if c not in ("point", "run", "loss")][0]
    folds = list(dict.fromkeys(table["fold"]))
    shown = folds[:6]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4), squeeze=False)
    colors = {"bayes": "C0", "baseline": "C3"}
    for ax, fold in zip(axes[0], shown):
        sub = points[points["fold"] == fold]
        methods = list(dict.fromkeys(sub["method"]))
        for j, method in enumerate(methods):
            m = sub[sub["method"] == method]
            shift = 1 + 0.04 * (j - (len(methods) - 1) / 2)  # side by side on a log axis
            ax.errorbar(m[by] * shift, m["median"], yerr=[m["median"] - m["q05"], m["q95"] - m["median"]], fmt="o",
                        ms=3, capsize=2, color=colors.get(method, f"C{j}"), label=f"{method} median, 90%")
        first = sub[sub["method"] == methods[0]]
        ax.plot(first[by], first["loss"], "kx", label="held-out loss")
        ax.set_xscale("log")
        ax.set_xlabel(by)
        ax.set_ylabel("loss")
        rows = table[table["fold"] == fold]
        ax.set_title(fold + "\n" + "; ".join(
            f"{r.method}: cover90 {r.cover90:.0%}, err {r.abs_rel_err:.2%}" for r in rows.itertuples()), fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
