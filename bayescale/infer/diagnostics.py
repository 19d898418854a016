"""Sampler and identification diagnostics, recorded in the result and raised on ``strict=True``.

Thresholds: R-hat > 1.01 and bulk/tail ESS < 100 per chain·4 (=400 total) follow Vehtari et al. 2021, "Rank-normalization,
folding, and localization: an improved R-hat", Bayesian Analysis 16(2); any divergent transition is reported
(Betancourt 2017, arXiv:1701.02434).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpyro.distributions.transforms import biject_to

from bayescale.errors import ArgumentError, BayescaleError, ConvergenceError

__all__ = ["SamplingWarning", "SamplingError", "ConvergenceWarning", "Convergence", "convergence", "require_converged",
           "convergence_gate", "convergence_checked", "describe_convergence", "diagnose", "ess_target",
           "missed_targets", "short_of_targets", "RHAT_MAX", "ESS_MIN", "RHAT_REFUSE", "ESS_REFUSE",
           "DIVERGENT_REFUSE"]


def azs():
    """arviz_stats, imported on first use: it brings scipy.stats and xarray-einstats (about 0.9 s on import), which
    ``import bayescale`` (the CLI's start, each worker process) need not pay before a result is diagnosed."""
    import arviz_stats

    return arviz_stats


RHAT_MAX = 1.01
ESS_MIN = 400  # Vehtari et al. 2021 recommend ESS > 100 per chain for 4 chains
# A parameter is "on its bound" when over 10% of its draws lie in the outer 1% of a bounded prior's range: enough
# mass piled against the wall that the bound, not the data, shapes the posterior.
BOUND_EDGE, BOUND_SHARE = 0.01, 0.10
# "Barely moved": posterior sd above 90% of the prior sd (contraction 1 - var_post/var_prior < 0.19) means the
# data carry almost no information about the parameter (Schad, Betancourt, Vasishth 2021, Fig. 2 uses the same
# posterior-contraction measure).
CONTRACTION_MIN = 0.19
# The verdict "did not converge", on which plan / predict / compare / next refuse (docs/errors.md). The warning
# thresholds above flag a fit to be improved; these flag one whose numbers are not usable at all:
# - R-hat > 1.1: the chains disagree by more than the older, looser rule of Gelman et al. 2013 (BDA3, Sec. 11.4)
#   that Vehtari et al. 2021 tightened to 1.01;
# - bulk or tail ESS < 50 draws in all: a 90% interval's ends then rest on fewer than 3 effective draws beyond each
#   (Vehtari et al. 2021, Sec. 4, ask 100 per chain for the estimates themselves to be reliable: a warning above);
# - over 5% of transitions divergent: whole regions of the posterior were not explored (a few divergences only bias
#   the tails and stay a warning).
RHAT_REFUSE = 1.1
ESS_REFUSE = 50
DIVERGENT_REFUSE = 0.05


class SamplingWarning(UserWarning):
    """Sampler or identification trouble: divergences, R-hat, ESS, prior bound, no learning."""


class ConvergenceWarning(SamplingWarning):
    """Numbers computed from a fit that did not converge, on request (``allow_unconverged=True``)."""


class SamplingError(BayescaleError, RuntimeError):
    """Raised by ``fit(..., strict=True)`` on sampler trouble; ``.result`` holds the (complete) result anyway."""

    def __init__(self, message: str, result: xr.DataTree | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class _Bounds:
    low: float
    high: float


def _bounds(distribution) -> _Bounds | None:
    support = distribution.support
    low = getattr(support, "lower_bound", None)
    high = getattr(support, "upper_bound", None)
    if low is None or high is None:
        return None
    low, high = float(np.asarray(low)), float(np.asarray(high))
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return _Bounds(low, high)


#: A posterior whose median lies outside this central range of its prior's quantiles has moved, whatever its width:
#: near a bound of the unconstrained transform (nu pressed towards 1 under log(nu - 1)) a well-informed posterior
#: can be wider on that scale than its prior. Beyond the prior's 10%/90% quantiles the median moved by more than
#: about 1.3 prior sds; a posterior that is its prior has its median at the prior's 50% quantile.
UNMOVED_QUANTILES = (0.1, 0.9)


def _unmoved(draws: np.ndarray, prior_draws: np.ndarray) -> bool:
    """Whether the posterior median lies inside the prior's central :data:`UNMOVED_QUANTILES` range."""
    q = float(np.mean(np.asarray(prior_draws).reshape(-1) < np.median(draws)))
    return UNMOVED_QUANTILES[0] <= q <= UNMOVED_QUANTILES[1]


def ess_target(n_chains: int) -> int:
    """The effective-sample-size target of a fit with ``n_chains`` chains: :data:`ESS_MIN`, or 100 per chain when
    fewer than 4 chains ran (Vehtari et al. 2021 ask 100 per chain)."""
    return min(ESS_MIN, 100 * int(n_chains))


def missed_targets(record: Mapping[str, Any], n_chains: int) -> tuple[str, ...]:
    """The sampling targets one parameter's diagnostics miss: ``"rhat"`` (R-hat above :data:`RHAT_MAX`, or not a
    number, judged only with more than one chain) and ``"ess"`` (bulk or tail ESS below :func:`ess_target`).

    ``record`` is one row of :func:`diagnose` (``rhat``, ``ess_bulk``, ``ess_tail``; a vector parameter's row has its
    worst ``rhat`` only), as ``attrs["diagnostics"]`` stores it. The one rule behind the R-hat and ESS warnings of
    :func:`diagnose` and the parameters :func:`short_of_targets` names, so the two never disagree."""
    missed = []
    if n_chains > 1 and not record["rhat"] <= RHAT_MAX:
        missed.append("rhat")
    if "ess_bulk" in record and min(record["ess_bulk"], record["ess_tail"]) < ess_target(n_chains):
        missed.append("ess")
    return tuple(missed)


def diagnose(dt: xr.DataTree, names: tuple[str, ...], distributions: dict, vector_names: Sequence[str] = ()
             ) -> tuple[pd.DataFrame, list[str]]:
    """Compute per-parameter diagnostics and the list of warnings.

    ``vector_names``: vector parameters (one value per cell, ...) whose worst R-hat over their elements is checked
    too; it is kept in ``table.attrs["vectors"]`` (parameter, rhat).

    Returns
    -------
    table
        One row per parameter: ``rhat``, ``ess_bulk``, ``ess_tail``, ``contraction``.
    messages
        Human-readable warnings (empty when all is well).
    """
    post = dt["posterior"].to_dataset()[list(names)]
    rhat = azs().rhat(post)
    ess_bulk = azs().ess(post, method="bulk")
    ess_tail = azs().ess(post, method="tail")
    prior = dt["prior"].to_dataset() if "prior" in dt.children else None
    rows, messages = [], []
    n_chains = post.sizes["chain"]
    for name in names:
        draws = post[name].values.reshape(-1)
        contraction = np.nan
        if prior is not None and name in prior:
            # compare spreads in the unconstrained space NUTS samples in (log A, logit E, ...), where the
            # variance of a heavy-tailed prior such as LogNormal(6, 2.5) is finite and meaningful
            to_free = biject_to(distributions[name].support).inv
            var_prior = float(np.var(np.asarray(to_free(prior[name].values.reshape(-1)))))
            if var_prior > 0:
                contraction = 1.0 - float(np.var(np.asarray(to_free(draws)))) / var_prior
        row = dict(
            parameter=name,
            rhat=float(rhat[name]),
            ess_bulk=float(ess_bulk[name]),
            ess_tail=float(ess_tail[name]),
            contraction=contraction,
        )
        rows.append(row)
        missed = missed_targets(row, n_chains)
        if "rhat" in missed:
            messages.append(f"{name}: R-hat {row['rhat']:.3f} > {RHAT_MAX} (chains disagree; run longer or reparameterise)")
        if "ess" in missed:
            messages.append(f"{name}: effective sample size bulk {row['ess_bulk']:.0f} / tail {row['ess_tail']:.0f} < "
                            f"{ess_target(n_chains)}")
        bounds = _bounds(distributions[name])
        if bounds is not None:
            width = bounds.high - bounds.low
            for side, edge in (("upper", bounds.high), ("lower", bounds.low)):
                share = float(np.mean(np.abs(draws - edge) < BOUND_EDGE * width))
                if share > BOUND_SHARE:
                    messages.append(
                        f"{name}: {share:.0%} of draws sit on the {side} prior bound {edge:.4g}; the prior, not the "
                        f"data, limits it (widen the prior or check the law)"
                    )
        if np.isfinite(contraction) and contraction < CONTRACTION_MIN and _unmoved(draws, prior[name].values):
            messages.append(
                f"{name}: posterior barely moved from the prior (contraction {contraction:.2f} < {CONTRACTION_MIN}"
                f"{': no narrower than the prior' if contraction < 0 else ''}); the data hardly inform it"
            )
    divergences = int(dt["sample_stats"]["diverging"].values.sum()) if "sample_stats" in dt.children else 0
    if divergences:
        total = dt["sample_stats"]["diverging"].size
        messages.insert(0, f"{divergences} of {total} transitions diverged (results may be biased)")
    vectors = []
    for name in vector_names if n_chains > 1 else ():
        worst = float(np.nanmax(np.asarray(azs().rhat(dt["posterior"].to_dataset()[[name]])[name])))
        vectors.append({"parameter": name, "rhat": worst})
        if missed_targets(vectors[-1], n_chains):
            messages.append(f"{name}: max R-hat {vectors[-1]['rhat']:.3f} > {RHAT_MAX} (chains disagree)")
    table = pd.DataFrame(rows).set_index("parameter")
    table.attrs["divergences"] = divergences
    table.attrs["vectors"] = vectors
    return table, messages


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller of this function name the first line outside
    bayescale: a fit's diagnostics are recorded a few calls deep (``build_result`` under ``fit``, under
    ``DeclaredModel.result`` ...), and the line worth showing is the user's call of the fit."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = inspect.currentframe().f_back, 1  # the warning's issuer: stacklevel 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def record(dt: xr.DataTree, table: pd.DataFrame, messages: list[str], strict: bool) -> None:
    """Store diagnostics in the result attrs, warn, and raise :class:`SamplingError` when ``strict``."""
    dt.attrs["diagnostics"] = json.dumps(
        {"divergences": table.attrs["divergences"], "chains": int(dt["posterior"].sizes["chain"]),
         "parameters": table.reset_index().to_dict(orient="records"), "vectors": table.attrs.get("vectors", [])}
    )
    dt.attrs["warnings"] = json.dumps(messages)
    transitions = int(dt["sample_stats"]["diverging"].size) if "sample_stats" in dt.children else 0
    verdict_ = verdict(table.reset_index().to_dict(orient="records"), table.attrs["divergences"], transitions)
    dt.attrs["converged"] = int(verdict_.converged)
    dt.attrs["convergence"] = json.dumps(list(verdict_.reasons))
    if messages:
        text = "sampler diagnostics for law " + repr(dt.attrs.get("law_id")) + ":\n  " + "\n  ".join(messages)
        if strict:
            raise SamplingError(text, result=dt)
        warnings.warn(text, SamplingWarning, stacklevel=_caller_level())


# ---------------------------------------------------------------------------------------------------------
# One convergence verdict per result
@dataclass(frozen=True)
class Convergence:
    """The convergence verdict of a result: ``converged``, the ``reasons`` when not, and whether it was ``checked``
    (False for results that are not MCMC draws, such as the bootstrap baseline, which always pass)."""

    converged: bool
    reasons: tuple[str, ...] = ()
    checked: bool = True

    def __bool__(self) -> bool:
        return self.converged

    def describe(self) -> str:
        if not self.checked:
            return "not an MCMC fit (no convergence verdict needed)"
        return "converged" if self.converged else "did NOT converge: " + "; ".join(self.reasons)


def verdict(records: list[dict], divergences: int, transitions: int) -> Convergence:
    """The verdict from per-parameter diagnostics (``rhat``, ``ess_bulk``, ``ess_tail``) and the divergence count."""
    reasons = []
    # R-hat is NaN for a single chain too short to split: the ESS rule below then judges it
    bad_rhat = [(r["parameter"], r["rhat"]) for r in records if np.isfinite(r["rhat"]) and r["rhat"] > RHAT_REFUSE]
    if bad_rhat:
        worst = max(bad_rhat, key=lambda t: t[1])
        reasons.append(f"R-hat up to {worst[1]:.3g} ({worst[0]}) > {RHAT_REFUSE}: the chains disagree")
    ess = [(r["parameter"], min(r["ess_bulk"], r["ess_tail"])) for r in records]
    low = [(n, e) for n, e in ess if not e >= ESS_REFUSE]
    if low:
        worst = min(low, key=lambda t: np.nan_to_num(t[1], nan=-np.inf))
        reasons.append(f"effective sample size down to {worst[1]:.0f} ({worst[0]}) < {ESS_REFUSE}")
    if transitions and divergences > DIVERGENT_REFUSE * transitions:
        reasons.append(f"{divergences} of {transitions} transitions diverged (> {DIVERGENT_REFUSE:.0%})")
    return Convergence(not reasons, tuple(reasons))


def _verdict_of_posterior(dt: xr.DataTree) -> Convergence:
    post = dt["posterior"].to_dataset()
    names = [n for n in json.loads(dt.attrs.get("parameters", "[]")) + json.loads(dt.attrs.get("noise_parameters", "[]"))
             if n in post] or [n for n in post.data_vars if set(post[n].dims) <= {"chain", "draw", "fit"}]
    if not names or post.sizes.get("draw", 0) < 4:
        return Convergence(False, ("too few posterior draws to judge convergence",))
    post = post[names]
    rhat, bulk, tail = azs().rhat(post), azs().ess(post, method="bulk"), azs().ess(post, method="tail")
    records = [dict(parameter=n, rhat=float(np.nanmax(rhat[n].values)) if np.isfinite(rhat[n].values).any() else np.nan,
                    ess_bulk=float(np.min(bulk[n].values)), ess_tail=float(np.min(tail[n].values))) for n in names]
    divergences = transitions = 0
    if "sample_stats" in dt.children and "diverging" in dt["sample_stats"]:
        div = dt["sample_stats"]["diverging"].values
        divergences, transitions = int(div.sum()), int(div.size)
    return verdict(records, divergences, transitions)


def convergence(result: xr.DataTree) -> Convergence:
    """The convergence verdict of a result (:class:`Convergence`), read by the report, plan, predict, compare and next.

    Recorded at fit time in ``attrs["converged"]`` (1/0) and ``attrs["convergence"]`` (JSON list of reasons); for a
    result without them (older files, a fit selected from a batch) it is computed from the stored diagnostics or the
    posterior draws. A bootstrap baseline (not MCMC) is not checked and always passes.
    """
    if not isinstance(result, xr.DataTree):
        raise ArgumentError(f"convergence needs a fit result (xarray.DataTree), got {type(result).__name__}")
    if result.attrs.get("inference") == "huber_bootstrap":
        return Convergence(True, (), checked=False)
    if "converged" in result.attrs:
        return Convergence(bool(int(result.attrs["converged"])), tuple(json.loads(result.attrs.get("convergence", "[]"))))
    if "diagnostics" in result.attrs:
        diag = json.loads(result.attrs["diagnostics"])
        transitions = int(result["sample_stats"]["diverging"].size) if "sample_stats" in result.children else 0
        return verdict(diag["parameters"], int(diag["divergences"]), transitions)
    if "posterior" not in result.children:
        raise ArgumentError("convergence needs a result with a posterior group")
    return _verdict_of_posterior(result)


def short_of_targets(result: xr.DataTree) -> list[str]:
    """Parameters whose R-hat or effective sample size missed the targets (:data:`RHAT_MAX`, :func:`ess_target`) in a
    fit that still passed the refusal limits: its numbers are usable, but more draws would make them final. Judged by
    :func:`missed_targets` on the diagnostics recorded at fit time (``attrs["diagnostics"]``), the rule that wrote the
    fit's R-hat and ESS warnings; none for a result that records no diagnostics."""
    if "diagnostics" not in result.attrs:
        return []
    diag = json.loads(result.attrs["diagnostics"])
    n_chains = diag.get("chains")
    if n_chains is None:  # recorded before the chain count was: the posterior's
        n_chains = result["posterior"].sizes["chain"] if "posterior" in result.children else 1
    names = []
    for record_ in [*diag["parameters"], *diag.get("vectors", [])]:
        if missed_targets(record_, n_chains) and record_["parameter"] not in names:
            names.append(record_["parameter"])
    return names


def describe_convergence(result: xr.DataTree) -> str:
    """The convergence verdict of ``result`` in words, for the CLI and the report: :meth:`Convergence.describe`, and
    for a fit inside the refusal limits whose R-hat or ESS missed the targets (:func:`short_of_targets`), which
    parameters did and that more draws are needed, so that "converged" never stands alone under such warnings."""
    verdict_ = convergence(result)
    short = short_of_targets(result) if verdict_.checked and verdict_.converged else []
    if not short:
        return verdict_.describe()
    return (f"converged within the limits plan and predict accept (R-hat <= {RHAT_REFUSE}, ESS >= {ESS_REFUSE}, "
            f"divergences <= {DIVERGENT_REFUSE:.0%}), but {', '.join(short)} missed the R-hat (<= {RHAT_MAX}) or "
            "effective-sample-size targets: more draws (num_samples, num_chains; --samples, --chains in the CLI) "
            "before these numbers are final")


def require_converged(result: xr.DataTree, what: str, allow_unconverged: bool = False) -> Convergence:
    """Refuse (:class:`~bayescale.errors.ConvergenceError`) to compute ``what`` from a fit that did not converge, or,
    with ``allow_unconverged=True``, warn loudly (:class:`ConvergenceWarning`) and go on."""
    if not isinstance(allow_unconverged, (bool, np.bool_)):
        raise ArgumentError(f"allow_unconverged must be True or False, got {allow_unconverged!r}")
    verdict_ = convergence(result)
    if verdict_.converged:
        return verdict_
    message = (f"the fit of {result.attrs.get('law_id')!r} did not converge ({'; '.join(verdict_.reasons)})")
    if allow_unconverged:
        warnings.warn(f"NOT CONVERGED: {what} computed anyway (allow_unconverged=True), its numbers are not "
                      f"trustworthy: {message}", ConvergenceWarning, stacklevel=3)
        return verdict_
    raise ConvergenceError(f"{what} refused: {message}; refit with more warmup, samples or chains, or pass "
                           "allow_unconverged=True (--allow-unconverged) to get numbers anyway")


# A gated function (plan, predict, compare, next...) checks the verdict once, at the outermost call: the functions it
# calls inside skip the check, as do figures that only diagnose a fit (the PPC of a non-converged fit is worth seeing).
_GATE_PASSED = contextvars.ContextVar("bayescale_convergence_gate_passed", default=False)


@contextlib.contextmanager
def convergence_checked():
    """Within this block gated functions skip the convergence gate (the caller checked it, or only diagnoses)."""
    token = _GATE_PASSED.set(True)
    try:
        yield
    finally:
        _GATE_PASSED.reset(token)


def convergence_gate(what: str, results: tuple[str, ...] = ("result",)):
    """Decorator: refuse ``what`` on a non-converged result (:func:`require_converged`) unless the call passes
    ``allow_unconverged=True``; ``results`` names the arguments holding fit results. The decorated function declares
    ``allow_unconverged: bool = False`` itself (for its signature and docs) and need not read it."""

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def gated(*args, **kwargs):
            if not _GATE_PASSED.get():
                bound = signature.bind(*args, **kwargs)
                allow = bound.arguments.get("allow_unconverged", False)
                for name in results:
                    require_converged(bound.arguments[name], what, allow)
            with convergence_checked():
                return fn(*args, **kwargs)

        return gated

    return decorate
