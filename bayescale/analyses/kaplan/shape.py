"""Shape sensitivity (Kaplan et al. 2020, Fig. 5): how much a model's shape costs at fixed size, as a Bayesian fit.

The baseline is the Chinchilla form over size and tokens, and each shape variable x (aspect ratio d_model/n_layer,
feed-forward ratio d_ff/d_model, head dimension d_model/n_head; whichever the data vary) adds a penalty that is
quadratic in log x around a best shape x*, fitted jointly::

    log L_ri = log(E + A/N_r^alpha + B/D_ri^beta) + log(1 + Σ_x kappa_x·(ln x_r − ln x*_x)²) + tau·z_r + ε_ri

with ``z_r ~ Normal(0, 1)`` a run effect (checkpoints of one run share it, so the shape penalty is learned from runs,
not from correlated checkpoints) and ``ε ~ Normal(0, sigma)``. The penalty is the relative loss increase over the
L(N, D) fit, Kaplan's y-axis. Read-outs (:func:`shape_summary`): the best shape x*; the flat region, the shapes
within ``tolerance`` (1%) of the best, ``x* ·/÷ exp(sqrt(tolerance/kappa))``, and the probability that each shape is
in it; and the compute a shape penalty costs. With the fitted baseline the compute-optimal loss is
``L*(C) = E + K·C^(−γ)``, ``γ = αβ/(α+β)``, so a model whose loss is (1 + p) times the best shape's needs
``C'/C = ((L*(C)/(1+p) − E)/(L*(C) − E))^(−1/γ)`` to match it (exact), or ``(1+p)^(1/a)`` with the local exponent
``a = −d ln L*/d ln C = γ·(L* − E)/L*`` (Kaplan's "1% loss ↔ 22% compute" is this with a = 0.05).

References
----------
Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361, Sec. 3.1 and Fig. 5.
McLeish et al. 2025, "Gemstones: A Model Suite for Multi-Faceted Scaling Laws", arXiv:2502.06857 (the real data).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import xarray as xr

from bayescale.data import DataError
from bayescale.infer.declared import DeclaredModel, check_result, check_table, posterior_draws
from bayescale.infer.settings import NUTS, start_settings
from bayescale.analyses.kaplan.pertoken import plot_band

__all__ = [
    "SHAPE_VARIABLES",
    "SHAPE_TRUTH",
    "compute_equivalent",
    "fit_shape",
    "flat_region_probability",
    "plot_shape",
    "read_gemstones",
    "shape_model",
    "shape_penalty",
    "shape_summary",
    "simulate_shape",
]

#: Shape variables the model knows (Kaplan Fig. 5): aspect ratio d_model/n_layer, feed-forward ratio d_ff/d_model,
#: head dimension d_model/n_head.
SHAPE_VARIABLES = ("aspect_ratio", "ffn_ratio", "head_dim")
_MODEL_ID = "kaplan2020_shape"
_BASE = ("E", "A", "alpha", "B", "beta")
#: Truth of the simulator: a Gemstones-like baseline (their cool_end fit, CARD: alpha 0.30, beta 0.58, A 226,
#: B 2.7e5, E 2.08) and a flat aspect-ratio basin (best at 50; kappa = 0.005: a 40x range around the best, ±1.84
#: e-folds, costs 1.7%, Kaplan's "a few percent"); run effects 0.3% and checkpoint noise 0.3% (seed noise, LAWS.md).
SHAPE_TRUTH = dict(E=2.08, A=226.0, alpha=0.30, B=2.7e5, beta=0.58, tau=0.003, sigma=0.003,
                   shape={"aspect_ratio": (50.0, 0.005)})
#: Gemstones vocabulary (CARD.md) and its untied input/output embeddings: every shape's parameter count is exactly
#: 2·50304·width + width (final norm) + depth·(≈15·width² + 2·width) (checked on all 22 shapes).
_GEMSTONES_VOCAB = 50304


def shape_penalty(x: Any, optimum: Any, kappa: Any) -> Any:
    """Relative loss increase ``kappa·(ln x − ln optimum)²`` of a shape x (broadcasts)."""
    return kappa * (np.log(x) - np.log(optimum)) ** 2


# --------------------------------------------------------------------------------------------------- data
def read_gemstones(directory: str | Path, table: str = "cool_end", parameters: str = "non_embedding") -> pd.DataFrame:
    """Gemstones runs (McLeish et al. 2025) as a shape table: ``run, width, depth, aspect_ratio, N, D, loss``.

    Parameters
    ----------
    directory
        The Gemstones data folder (with ``wandb_dfs/``).
    table
        Which fitting table (``wandb_df_for_fitting_{table}.jsonl``): ``cool_end`` (end of each LR cooldown; every
        point a finished training run, the default), ``hot``, ``hot_100b+``, ...
    parameters
        ``"non_embedding"`` (Kaplan's N: total minus the untied input and output embeddings and the final norm,
        ``N − 2·50304·width − width``) or ``"total"`` (``params_active_precise``, what Gemstones fits use).
    """
    allowed = ("non_embedding", "total")
    if parameters not in allowed:
        raise ValueError(f"parameters must be one of {list(allowed)}, got {parameters!r}")
    path = Path(directory) / "wandb_dfs" / f"wandb_df_for_fitting_{table}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no Gemstones table {table!r} at {str(path)!r}")
    raw = pd.read_json(path, lines=True)
    n = raw["params_active_precise"].to_numpy(float)
    if parameters == "non_embedding":
        n = n - (2 * _GEMSTONES_VOCAB + 1) * raw["width"].to_numpy(float)
    return pd.DataFrame({
        "run": raw["run_name"].astype(str), "width": raw["width"], "depth": raw["depth"],
        "aspect_ratio": raw["width"] / raw["depth"], "N": n, "D": raw["tokens"].astype(float),
        "loss": raw["final_loss"].astype(float),
    })


def simulate_shape(
    truth: Mapping[str, Any] | None = None,
    sizes: Sequence[float] = (5e7, 1.5e8, 5e8, 1.5e9),
    shapes: pd.DataFrame | None = None,
    tokens: Sequence[float] = (1e10, 2e10, 4e10, 7e10, 1.1e11),
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Runs of every size × shape, each with checkpoints at ``tokens``, from the model of :func:`fit_shape`.

    ``truth``: baseline ``E, A, alpha, B, beta``, noise ``tau, sigma`` and ``shape = {variable: (optimum, kappa)}``
    (default :data:`SHAPE_TRUTH`). ``shapes``: one row per shape, a column per variable of ``truth["shape"]``
    (default: aspect ratios 4…400, 6 log-spaced). Returns ``run, N, D, loss`` and the shape columns.
    """
    truth = dict(SHAPE_TRUTH if truth is None else truth)
    if shapes is None:
        shapes = pd.DataFrame({"aspect_ratio": np.geomspace(4, 400, 6)})
    missing = [k for k in truth["shape"] if k not in shapes.columns]
    if missing:
        raise ValueError(f"shapes lacks column(s) {missing} named in truth['shape']")
    rng = np.random.default_rng(seed)
    D = np.asarray(tokens, float)
    rows = []
    for n in sizes:
        for s in shapes.itertuples(index=False):
            x = s._asdict()
            penalty = sum(shape_penalty(x[k], opt, kap) for k, (opt, kap) in truth["shape"].items())
            base = truth["E"] + truth["A"] / n ** truth["alpha"] + truth["B"] / D ** truth["beta"]
            log_y = np.log(base) + np.log1p(penalty) + truth["tau"] * rng.standard_normal() \
                + truth["sigma"] * rng.standard_normal(D.size)
            run = f"N={n:.3g} " + " ".join(f"{k}={v:.3g}" for k, v in x.items())
            rows.append(pd.DataFrame({"run": run, "N": n, **{k: v for k, v in x.items()}, "D": D, "loss": np.exp(log_y)}))
    out = pd.concat(rows, ignore_index=True)
    out.attrs["truth"] = truth
    return out


# --------------------------------------------------------------------------------------------------- model
#: Default sampler of :func:`fit_shape`: target acceptance 0.95. At the usual 0.9, simulation-based calibration on the
#: suite's shape design (200 simulated tables, one chain of 300 + 200 each) had 1.65% of its draws divergent, above the
#: 1% at which a verdict is not trusted; at 0.95, 0.69% (docs/validation.md).
SHAPE_SAMPLER = NUTS(target_accept_prob=0.95, init="median")


#: Priors. The amplitudes are sampled as the size of each term at the centre of the data (``A_ref = A/N_ref^alpha``,
#: N_ref and D_ref the geometric means of N and D), which decorrelates amplitude and exponent (NUTS takes ~10x fewer
#: steps than with A itself); LogNormal(ln 0.3, 1.5) puts 90% of a term between 0.03 and 3.5 nats. Exponents: those
#: of the hoffmann2022 law file (LogNormal(ln 0.3, 0.6)); E below the smallest loss.
#: kappa: HalfNormal(0.05); Kaplan's flat basin has kappa ~0.005-0.01 (a 40x aspect range costs a few percent) and
#: kappa = 0.1 would already mean 10% loss per e-fold². Optimum: Normal(centre of the data's ln x, 1.5), 90% within
#: ×/÷12 of the centre. tau, sigma: HalfNormal(0.02); seed noise is 0.3-1% of the loss (LAWS.md, "practice").
#: Override any of them with ``fit_shape(..., priors={"kappa_aspect_ratio": "HalfNormal(0.01)"})``; the optimum's
#: prior may use the data statistic ``log_centre_<x>``, the mean of ln x over runs.
def shape_model(shape: Sequence[str] = ("aspect_ratio",)) -> DeclaredModel:
    """The declared shape model (:mod:`bayescale.infer.declared`) for the shape variables ``shape``: its formula and the
    text priors above, one optimum and one curvature per variable."""
    priors = {
        "E": "Uniform(0, min_loss)",
        "A_ref": "LogNormal(log(0.3), 1.5)", "B_ref": "LogNormal(log(0.3), 1.5)",
        "alpha": "LogNormal(log(0.3), 0.6)", "beta": "LogNormal(log(0.3), 0.6)",
    }
    for k in shape:
        priors[f"log_opt_{k}"] = f"Normal(log_centre_{k}, 1.5)"
        priors[f"kappa_{k}"] = "HalfNormal(0.05)"
    priors |= {"tau": "HalfNormal(0.02)", "sigma": "HalfNormal(0.02)"}
    return DeclaredModel(
        id=_MODEL_ID,
        result_kind="shape",
        formula="(E + A/N**alpha + B/D**beta) * (1 + sum_x kappa_x*(ln x - ln opt_x)**2) * exp(tau*z_run)",
        citation="Kaplan et al. 2020, arXiv:2001.08361, Fig. 5 (penalty form: bayescale)",
        priors=priors,
        statistics={f"log_centre_{k}": f"mean of ln {k} over runs" for k in shape},
    )


def _shape_model(priors, log_N, log_D, log_x, run_index, n_runs, log_refs, loss=None):
    p = {k: numpyro.sample(k, d) for k, d in priors.items()}
    numpyro.deterministic("A", p["A_ref"] * jnp.exp(p["alpha"] * log_refs[0]))
    numpyro.deterministic("B", p["B_ref"] * jnp.exp(p["beta"] * log_refs[1]))
    with numpyro.plate("run", n_runs):
        z = numpyro.sample("z_run", dist.Normal(0.0, 1.0))
    penalty = 0.0
    for k, x in log_x.items():
        numpyro.deterministic(f"opt_{k}", jnp.exp(p[f"log_opt_{k}"]))
        penalty = penalty + p[f"kappa_{k}"] * (x - p[f"log_opt_{k}"]) ** 2
    base = (p["E"] + p["A_ref"] * jnp.exp(-p["alpha"] * (log_N - log_refs[0]))
            + p["B_ref"] * jnp.exp(-p["beta"] * (log_D - log_refs[1])))
    mu = jnp.log(base) + jnp.log1p(penalty) + p["tau"] * z[run_index]
    numpyro.sample("loss", dist.LogNormal(mu, p["sigma"]), obs=loss)


def fit_shape(
    data: pd.DataFrame,
    shape: Sequence[str] = ("aspect_ratio",),
    *,
    sampler: NUTS | Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    priors: Mapping[str, str] | None = None,
    strict: bool = False,
    **sampler_options: Any,
) -> xr.DataTree:
    """Fit the L(N, D) baseline and a quadratic-in-log shape penalty jointly (see the module doc).

    Model, for a checkpoint of run r with shape values x_r (:func:`shape_model`)::

        L = (E + A/N^alpha + B/D^beta)·(1 + Σ_x kappa_x·(ln x_r − ln opt_x)²)·exp(tau·z_r),  z_r ~ Normal(0, 1)
        log loss ~ Normal(log L, sigma)

    Parameters
    ----------
    data
        One row per (run, checkpoint): ``run``, ``N`` (parameters), ``D`` (tokens), ``loss`` and a column per shape
        variable in ``shape``, constant within a run.
    shape
        Shape variables to fit, a subset of :data:`SHAPE_VARIABLES`; each needs at least 3 distinct values over runs.
    sampler, **sampler_options
        As in :func:`bayescale.fit`; the default :data:`SHAPE_SAMPLER` targets an acceptance of 0.95 (the run effects'
        scale tau makes a funnel) and starts chains at the prior median (``init="map"``: around a multi-start MAP).
    priors
        Overrides of the declared priors (:func:`shape_model`), parameter → prior expression; recorded as text in
        ``attrs["priors"]``.

    Returns
    -------
    xarray.DataTree
        Posterior of ``E, A, alpha, B, beta``, ``log_opt_<x>``/``opt_<x>``, ``kappa_<x>``, ``tau``, ``sigma`` and the
        run effects; ``attrs["law_id"] = "kaplan2020_shape"``, ``attrs["shape"]``.
    """
    shape = (shape,) if isinstance(shape, str) else tuple(shape)
    unknown = [s for s in shape if s not in SHAPE_VARIABLES]
    if unknown or not shape:
        raise ValueError(f"shape must name one or more of {list(SHAPE_VARIABLES)}, got {list(shape)}")
    table = check_table(data, "shape data", labels=["run"], numeric=["N", "D", "loss", *shape],
                        constant_within=("run", ["N", *shape]))
    per_run = table.groupby("run", sort=False)
    first = per_run.first()
    for col in shape:
        if first[col].nunique() < 3:
            raise DataError(f"column {col!r}: a quadratic penalty needs at least 3 distinct shapes over runs, got "
                            f"{first[col].nunique()}")
    for col, need_n in (("N", 2), ("D", 2)):
        if table[col].nunique() < need_n:
            raise DataError(f"column {col!r}: the L(N, D) baseline needs at least {need_n} distinct values")
    settings = start_settings(sampler, sampler_options, "fit_shape", SHAPE_SAMPLER)
    runs = first.index.to_numpy().astype(str)
    run_index = pd.Categorical(table["run"].astype(str), categories=runs).codes
    declared = shape_model(shape)
    statistics = {"min_loss": float(table["loss"].min())} | {
        f"log_centre_{k}": float(np.mean(np.log(first[k].to_numpy(float)))) for k in shape}
    parsed, dists = declared.resolve_priors(priors, statistics)
    log_x = {k: jnp.asarray(np.log(table[k].to_numpy(float))) for k in shape}
    log_N, log_D = np.log(table["N"].to_numpy(float)), np.log(table["D"].to_numpy(float))
    log_refs = (float(np.mean(np.log(first["N"].to_numpy(float)))), float(np.mean(log_D)))
    args = (dists, jnp.asarray(log_N), jnp.asarray(log_D), log_x, jnp.asarray(run_index), len(runs), log_refs)
    point = np.arange(len(table))
    constant = xr.Dataset(
        {"N": ("point", table["N"].to_numpy(float)), "D": ("point", table["D"].to_numpy(float)),
         "run_of_point": ("point", table["run"].astype(str).to_numpy()),
         **{k: ("point", table[k].to_numpy(float)) for k in shape}},
        coords={"point": point},
    )
    return declared.sample(
        _shape_model, args, table, rng_key=rng_key, settings=settings, strict=strict, priors=parsed, checked=dists,
        statistics=statistics, constant=constant, dims={"z_run": ["run"]}, coords={"run": runs},
        provenance={"shape": json.dumps(list(shape)), "N_ref": float(np.exp(log_refs[0])),
                    "D_ref": float(np.exp(log_refs[1]))},
    )


def _shape_of(result: xr.DataTree) -> list[str]:
    check_result(result, _MODEL_ID)
    return json.loads(result.attrs["shape"])


def _variable(result: xr.DataTree, variable: str | None) -> str:
    shape = _shape_of(result)
    variable = shape[0] if variable is None else variable
    if variable not in shape:
        raise ValueError(f"variable must be one of {shape} (the fitted shape variables), got {variable!r}")
    return variable


def flat_region_probability(
    result: xr.DataTree, values: Sequence[float], variable: str | None = None, tolerance: float = 0.01
) -> xr.DataArray:
    """P(penalty(x) ≤ ``tolerance``) for each shape value x (other shape variables at their best): the probability
    that x is in the flat region."""
    variable = _variable(result, variable)
    _check_tolerance(tolerance)
    x = np.atleast_1d(np.asarray(values, float))
    if x.size == 0 or not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"values of {variable} must be finite numbers > 0")
    d = posterior_draws(result, (f"opt_{variable}", f"kappa_{variable}"))
    pen = shape_penalty(x[None, :], d[f"opt_{variable}"][:, None], d[f"kappa_{variable}"][:, None])
    return xr.DataArray((pen <= tolerance).mean(axis=0), dims=(variable,), coords={variable: x},
                        name="probability_flat", attrs={"tolerance": tolerance})


def _check_tolerance(tolerance: float) -> None:
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be a relative loss increase in (0, 1), got {tolerance!r}")


def compute_equivalent(result: xr.DataTree, penalty: float = 0.01, compute: float | None = None) -> dict[str, np.ndarray]:
    """Compute a shape penalty costs, per posterior draw (see the module doc).

    Parameters
    ----------
    penalty
        Relative loss increase p (0.01 = 1%).
    compute
        FLOP at which to evaluate it (C = 6ND). Default: the largest 6·N·D in the fitted data.

    Returns
    -------
    dict
        ``compute_factor`` (exact C'/C; ``inf`` where L*(C)/(1+p) is below E), ``exponent`` (local a = −d ln L*/d ln C)
        and ``approximate_factor`` = (1+p)^(1/a), ``loss`` = L*(C), each an array over draws; ``compute`` (float).
    """
    check_result(result, _MODEL_ID)
    if not (isinstance(penalty, (int, float)) and penalty > 0 and np.isfinite(penalty)):
        raise ValueError(f"penalty must be a finite number > 0, got {penalty!r}")
    if compute is None:
        cd = result["constant_data"]
        compute = float(np.max(6.0 * cd["N"].values * cd["D"].values))
    if not (isinstance(compute, (int, float)) and np.isfinite(compute) and compute > 0):
        raise ValueError(f"compute must be a finite number of FLOP > 0, got {compute!r}")
    d = posterior_draws(result, _BASE)
    E, A, alpha, B, beta = (d[k] for k in _BASE)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    n_opt = G * (compute / 6) ** (beta / (alpha + beta))
    d_opt = (compute / 6) ** (alpha / (alpha + beta)) / G
    loss = E + A / n_opt**alpha + B / d_opt**beta
    gamma = alpha * beta / (alpha + beta)
    target = loss / (1 + penalty) - E
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(target > 0, (target / (loss - E)) ** (-1 / gamma), np.inf)
    exponent = gamma * (loss - E) / loss
    return {"compute_factor": factor, "exponent": exponent, "approximate_factor": (1 + penalty) ** (1 / exponent),
            "loss": loss, "compute": float(compute)}


def _interval(v: np.ndarray) -> tuple[float, float, float]:
    q = np.quantile(v, [0.05, 0.5, 0.95])
    return float(q[1]), float(q[0]), float(q[2])


def shape_summary(result: xr.DataTree, tolerance: float = 0.01, compute: float | None = None) -> pd.DataFrame:
    """Best shape, flat region, curvature and compute cost, one row per quantity: median and 90% interval.

    Rows per shape variable x: ``opt_x`` (best shape), ``kappa_x`` (penalty per e-fold²), ``flat_low_x`` and
    ``flat_high_x`` (edges of the region within ``tolerance`` of the best: x*·exp(∓sqrt(tolerance/kappa))); then
    ``exponent`` (local compute exponent of L*), ``compute_factor`` (exact compute multiple that a ``tolerance`` loss
    penalty costs) and ``approximate_factor`` ((1+tolerance)^(1/exponent)).
    """
    shape = _shape_of(result)
    _check_tolerance(tolerance)
    rows = {}
    for k in shape:
        d = posterior_draws(result, (f"opt_{k}", f"kappa_{k}"))
        half = np.sqrt(tolerance / d[f"kappa_{k}"])
        rows[f"opt_{k}"] = _interval(d[f"opt_{k}"])
        rows[f"kappa_{k}"] = _interval(d[f"kappa_{k}"])
        rows[f"flat_low_{k}"] = _interval(d[f"opt_{k}"] * np.exp(-half))
        rows[f"flat_high_{k}"] = _interval(d[f"opt_{k}"] * np.exp(half))
    cost = compute_equivalent(result, tolerance, compute)
    for k in ("exponent", "compute_factor", "approximate_factor"):
        rows[k] = _interval(cost[k])
    out = pd.DataFrame.from_dict(rows, orient="index", columns=["median", "q05", "q95"])
    out.attrs.update(tolerance=tolerance, compute=cost["compute"])
    return out


def plot_shape(result: xr.DataTree, variable: str | None = None, tolerance: float = 0.01, axes=None):
    """Kaplan Fig. 5 style: % loss increase over the fitted L(N, D) vs the shape variable (points: each run's mean over
    its checkpoints, coloured by N; curve: posterior median, 50%/90% bands), and below it P(within ``tolerance``)."""
    from bayescale.results.plots import pyplot
    plt = pyplot()

    variable = _variable(result, variable)
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True, height_ratios=(3, 1.3), layout="constrained")
    cd = result["constant_data"].to_dataset()
    d = posterior_draws(result, (*_BASE, "tau"))
    z = result["posterior"]["z_run"].values.reshape(-1, result["posterior"].sizes["run"])
    runs = result["posterior"]["run"].values.astype(str)
    idx = pd.Categorical(cd["run_of_point"].values.astype(str), categories=runs).codes
    base = (d["E"][:, None] + d["A"][:, None] / cd["N"].values[None] ** d["alpha"][:, None]
            + d["B"][:, None] / cd["D"].values[None] ** d["beta"][:, None])
    # each run's excess over the baseline: observed / L(N, D) − 1, posterior median, averaged over its checkpoints
    excess = np.median(result["observed_data"]["loss"].values[None] / base, axis=0) - 1
    frame = pd.DataFrame({"run": idx, "x": cd[variable].values, "N": cd["N"].values, "excess": excess})
    per_run = frame.groupby("run").mean()
    x = np.geomspace(min(per_run["x"].min(), 1.0) * 0.8, per_run["x"].max() * 1.5, 120)
    opt = posterior_draws(result, (f"opt_{variable}", f"kappa_{variable}"))
    curve = 100 * shape_penalty(x[None], opt[f"opt_{variable}"][:, None], opt[f"kappa_{variable}"][:, None])
    ax = axes[0]
    plot_band(ax, x, curve, "tab:blue", label="penalty (median, 50%/90%)")
    sc = ax.scatter(per_run["x"], 100 * per_run["excess"], c=np.log10(per_run["N"]), cmap="viridis", s=22, zorder=3)
    ax.figure.colorbar(sc, ax=list(axes), label="log10 N")  # on both panels, so their x-axes stay aligned
    ax.axhline(100 * tolerance, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_ylabel("loss increase over L(N, D) fit (%)")
    ax.legend(fontsize=8)
    prob = flat_region_probability(result, x, variable, tolerance)
    axes[1].plot(x, prob.values, color="tab:green")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_ylabel(f"P(within {tolerance:.0%})")
    axes[1].set_xlabel(variable.replace("_", " "))
    return axes
