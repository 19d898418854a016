"""Per-token loss (Kaplan et al. 2020, Fig. 20): loss at context position T as a Bayesian fit.

Left panel of the figure: for one model, the loss at position T (1…1024) follows ``L(T) = a + b·T^(−c)``.
:func:`fit_per_token` fits every model at once with a hierarchical model that ties a, b, c smoothly to log N::

    u_j = log10(N_j / N_ref)
    log a_j = a0 + a1·u_j + tau_a·z_a,j        (same for b and c; z ~ Normal(0, 1))
    log L_jt ~ Normal(log(a_j + b_j·T^(−c_j)), sigma)

so a model size never seen gets a predicted curve with a band (:func:`predict_per_token`): the hyper-parameter
uncertainty plus the model-to-model scatter ``tau``.

Right panel (loss at each position over training steps S): :func:`fit_per_token_steps` fits
``L(T, S) = a + b·T^(−c·S/(S + S_h)) + (S_c/S)^alpha_S``: the position-independent part falls as Kaplan's L(S) power law
(the step term of L(N, S)), and the exponent of the context benefit grows from 0 to c with half-point ``S_h``, so the
first positions reach their final loss early and distant positions keep improving ("short-range positions learn
first"). This form is ours, not the paper's; the paper gives no per-token data, so the steps data are simulated
(:func:`simulate_per_token_steps`).

References
----------
Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361, Fig. 20 and App. D.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

__all__ = [
    "KAPLAN2020_PER_TOKEN",
    "KAPLAN2020_STEPS_TRUTH",
    "PER_TOKEN_MODEL",
    "fit_per_token",
    "fit_per_token_steps",
    "kaplan_per_token_table",
    "per_token_hyper",
    "per_token_loss",
    "per_token_steps_loss",
    "plot_per_token",
    "plot_per_token_steps",
    "predict_per_token",
    "predict_per_token_steps",
    "simulate_per_token",
    "simulate_per_token_steps",
]

#: Kaplan et al. 2020, Fig. 20 (left) legend fits L(T) = a + b·T^(−c), smallest to largest model (LAWS.md, tagged [S]:
#: read from secondary sources, not checked against the figure here).
KAPLAN2020_PER_TOKEN = pd.DataFrame(
    {"a": [4.0, 3.4, 2.9, 2.7, 2.4, 2.3], "b": [3.2, 4.0, 4.5, 4.9, 5.1, 5.4], "c": [0.47, 0.56, 0.56, 0.60, 0.61, 0.62]}
)
#: Kaplan's L(N) = (N_c/N)^alpha_N (non-embedding N), used only to give each legend fit a size (the legend has none).
_KAPLAN_N_C, _KAPLAN_ALPHA_N = 8.8e13, 0.076
#: Reference size of the hierarchical model: u = log10(N / N_REF) is centred inside the range of the six models.
N_REF = 1e7
#: Truth of the steps simulator. a, b, c: the largest model of Fig. 20 (the right panel is a 774M model); S_c, alpha_S:
#: Kaplan's L(N, S_min) fit (LAWS.md, S_c = 2.1e3, alpha_S = 0.76); S_h (steps at which the context exponent is half
#: its final value) is our choice: 3e3 steps, so distant positions are still improving at 1e4 steps.
KAPLAN2020_STEPS_TRUTH = dict(a=2.3, b=5.4, c=0.62, S_c=2.1e3, alpha_S=0.76, S_h=3e3)

_HYPER = ("a0", "a1", "b0", "b1", "c0", "c1")
_STEPS = ("a", "b", "c", "S_c", "alpha_S", "S_h")


# --------------------------------------------------------------------------------------------------- the laws
def per_token_loss(T: Any, a: Any, b: Any, c: Any) -> Any:
    """``L(T) = a + b·T^(−c)`` (Kaplan et al. 2020, Fig. 20), broadcasting numpy or JAX arrays."""
    return a + b * T ** (-c)


def per_token_steps_loss(T: Any, S: Any, a: Any, b: Any, c: Any, S_c: Any, alpha_S: Any, S_h: Any) -> Any:
    """``L(T, S) = a + b·T^(−c·S/(S + S_h)) + (S_c/S)^alpha_S``: per-token loss after S steps (see module doc)."""
    return a + b * T ** (-c * S / (S + S_h)) + (S_c / S) ** alpha_S


def kaplan_per_token_table(positions: int = 1024) -> pd.DataFrame:
    """The six published (a, b, c) fits with a size ``N`` assigned to each.

    The legend of Fig. 20 gives no sizes. ``N`` is where Kaplan's L(N) = (8.8e13/N)^0.076 equals the fit's mean loss
    over positions 1…``positions``: an assumption (the models of Fig. 20 need not lie on L(N)), used only to order
    the fits along log N and to give the simulator a plausible size axis.
    """
    table = KAPLAN2020_PER_TOKEN.copy()
    T = np.arange(1, positions + 1, dtype=float)
    table["mean_loss"] = [float(np.mean(per_token_loss(T, r.a, r.b, r.c))) for r in table.itertuples()]
    table["N"] = _KAPLAN_N_C / table["mean_loss"] ** (1.0 / _KAPLAN_ALPHA_N)
    return table


def per_token_hyper(table: pd.DataFrame | None = None, n_ref: float = N_REF) -> dict[str, float]:
    """Hyper-parameters of the hierarchical model from (a, b, c, N) fits: least squares of log a, log b, log c on
    ``u = log10(N/n_ref)``; ``tau_*`` is the residual standard deviation (n − 2 degrees of freedom)."""
    table = kaplan_per_token_table() if table is None else table
    u = np.log10(np.asarray(table["N"], float) / n_ref)
    X = np.c_[np.ones_like(u), u]
    out: dict[str, float] = {}
    for name in "abc":
        y = np.log(np.asarray(table[name], float))
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ coef
        out[f"{name}0"], out[f"{name}1"] = float(coef[0]), float(coef[1])
        out[f"tau_{name}"] = float(np.sqrt(resid @ resid / max(len(y) - 2, 1)))
    return out


# --------------------------------------------------------------------------------------------------- simulators
def simulate_per_token(
    hyper: Mapping[str, float] | None = None,
    sizes: Sequence[float] | None = None,
    positions: Sequence[float] | None = None,
    *,
    sigma: float = 0.01,
    n_ref: float = N_REF,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-token losses of several models from the hierarchical model with known truth.

    Parameters
    ----------
    hyper
        ``a0, a1, b0, b1, c0, c1, tau_a, tau_b, tau_c`` (default: :func:`per_token_hyper` of the six published fits).
    sizes
        Model sizes N (default: the sizes :func:`kaplan_per_token_table` assigns to the six fits).
    positions
        Token positions T (default: 24 log-spaced positions in 1…1024).
    sigma
        Residual scale on log-loss (1% by default: a per-token loss averaged over a finite evaluation set).

    Returns
    -------
    pandas.DataFrame
        Columns ``model, N, T, loss``; ``attrs["truth"]`` holds the true (a, b, c) of each model and the hyper.
    """
    hyper = dict(per_token_hyper(n_ref=n_ref) if hyper is None else hyper)
    sizes = np.asarray(kaplan_per_token_table()["N"] if sizes is None else sizes, float)
    T = np.unique(np.round(np.geomspace(1, 1024, 24))) if positions is None else np.asarray(positions, float)
    rng = np.random.default_rng(seed)
    u = np.log10(sizes / n_ref)
    truth = {
        name: np.exp(hyper[f"{name}0"] + hyper[f"{name}1"] * u + hyper[f"tau_{name}"] * rng.standard_normal(u.size))
        for name in "abc"
    }
    rows = []
    for j, n in enumerate(sizes):
        mean = per_token_loss(T, truth["a"][j], truth["b"][j], truth["c"][j])
        rows.append(pd.DataFrame({"model": f"N={n:.3g}", "N": n, "T": T,
                                  "loss": mean * np.exp(sigma * rng.standard_normal(T.size))}))
    out = pd.concat(rows, ignore_index=True)
    out.attrs["truth"] = {"hyper": hyper, "sigma": sigma, "n_ref": n_ref,
                          **{k: v.tolist() for k, v in truth.items()}, "N": sizes.tolist()}
    return out


def simulate_per_token_steps(
    truth: Mapping[str, float] | None = None,
    positions: Sequence[float] | None = None,
    steps: Sequence[float] | None = None,
    *,
    sigma: float = 0.01,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-token losses of one model at several training steps from :func:`per_token_steps_loss` (simulated: there is
    no public per-token data). Defaults: :data:`KAPLAN2020_STEPS_TRUTH`, 12 positions in 1…1024, 12 steps in 5e2…2.5e5
    (Kaplan's runs are 2.5e5 steps; before ~5e2 steps the L(S) term would put the loss above ln(vocabulary) ≈ 10.8,
    the loss at initialisation, where no power law in S holds). Returns columns ``T, S, loss`` with ``attrs["truth"]``."""
    truth = dict(KAPLAN2020_STEPS_TRUTH if truth is None else truth)
    T = np.unique(np.round(np.geomspace(1, 1024, 12))) if positions is None else np.asarray(positions, float)
    S = np.geomspace(5e2, 2.5e5, 12) if steps is None else np.asarray(steps, float)
    TT, SS = np.meshgrid(T, S, indexing="ij")
    mean = per_token_steps_loss(TT.ravel(), SS.ravel(), **truth)
    rng = np.random.default_rng(seed)
    out = pd.DataFrame({"T": TT.ravel(), "S": SS.ravel(), "loss": mean * np.exp(sigma * rng.standard_normal(mean.size))})
    out.attrs["truth"] = truth | {"sigma": sigma}
    return out


# --------------------------------------------------------------------------------------------------- validation
def _table(data: Any, columns: Sequence[str], what: str) -> pd.DataFrame:
    labels = [c for c in columns if c == "model"]
    table = check_table(data, f"{what} data", numeric=[c for c in columns if c not in labels], labels=labels,
                        constant_within=("model", ["N"]) if labels else None)
    if "T" in columns:
        bad = np.flatnonzero(table["T"].to_numpy(float) < 1)
        if bad.size:
            raise DataError(f"column 'T', row {data.index[bad[0]]}: token positions start at 1, got "
                            f"{data['T'].iloc[bad[0]]!r}")
    return table


# --------------------------------------------------------------------------------------------------- hierarchical fit
#: The hierarchical per-token model, declared (:mod:`bayescale.infer.declared`). Priors (log scale; slopes per decade of N):
#: the six published fits have a = 2.3-4.0, b = 3.2-5.4, c = 0.47-0.62 over ~3 decades, i.e. |slopes| of 0.05-0.2 per
#: decade; Normal(0, 0.5) allows a 3-fold change per decade. tau: scatter of a model around the log-linear trend,
#: HalfNormal(0.1) (a 10% scatter is already large next to the published fits' ~3%). sigma: 1-2% per-position noise,
#: HalfNormal(0.05). Override any of them with ``fit_per_token(..., priors={"tau_a": "HalfNormal(0.05)"})``.
PER_TOKEN_MODEL = DeclaredModel(
    id="kaplan2020_per_token",
    result_kind="per_token",
    formula="a + b*T**(-c), log a|b|c = x0 + x1*log10(N/n_ref) + tau*z",
    citation="Kaplan et al. 2020, arXiv:2001.08361, Fig. 20",
    priors={
        "a0": "Normal(log(3.0), 1.0)", "a1": "Normal(0, 0.5)",
        "b0": "Normal(log(4.0), 1.0)", "b1": "Normal(0, 0.5)",
        "c0": "Normal(log(0.5), 1.0)", "c1": "Normal(0, 0.5)",
        "tau_a": "HalfNormal(0.1)", "tau_b": "HalfNormal(0.1)", "tau_c": "HalfNormal(0.1)",
        "sigma": "HalfNormal(0.05)",
    },
)


#: Default sampler of :func:`fit_per_token`: target acceptance 0.95 for the funnel of the model-to-model scatter.
PER_TOKEN_SAMPLER = NUTS(target_accept_prob=0.95, init="median")


def _per_token_model(priors, u, index, log_T, loss=None):
    p = {k: numpyro.sample(k, d) for k, d in priors.items()}
    with numpyro.plate("model", u.shape[0]):
        z = {n: numpyro.sample(f"z_{n}", dist.Normal(0.0, 1.0)) for n in "abc"}
    coef = {n: numpyro.deterministic(n, jnp.exp(p[f"{n}0"] + p[f"{n}1"] * u + p[f"tau_{n}"] * z[n])) for n in "abc"}
    mean = coef["a"][index] + coef["b"][index] * jnp.exp(-coef["c"][index] * log_T)
    numpyro.sample("loss", dist.LogNormal(jnp.log(mean), p["sigma"]), obs=loss)


def fit_per_token(
    data: pd.DataFrame,
    *,
    n_ref: float = N_REF,
    sampler: NUTS | Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    priors: Mapping[str, str] | None = None,
    strict: bool = False,
    **sampler_options: Any,
) -> xr.DataTree:
    """Fit ``L(T) = a + b·T^(−c)`` to the per-token losses of several models, with a, b, c tied to log N.

    Model, for model j of size N_j at position T (:data:`PER_TOKEN_MODEL`)::

        u_j = log10(N_j/n_ref),  log a_j = a0 + a1·u_j + tau_a·z_a,j  (likewise b, c),  z ~ Normal(0, 1)
        log L_jT ~ Normal(log(a_j + b_j·T^(−c_j)), sigma)

    Parameters
    ----------
    data
        Columns ``model`` (id), ``N`` (one size per model), ``T`` (position ≥ 1), ``loss`` (nats/token).
        At least 3 models of distinct sizes (a slope needs them) and 3 positions per model.
    n_ref
        Reference size: ``u = log10(N/n_ref)``, so ``a0`` is log a at ``n_ref``.
    sampler, **sampler_options
        As in :func:`bayescale.fit`; the default :data:`PER_TOKEN_SAMPLER` targets an acceptance of 0.95 (the
        hierarchical scatter tau makes a funnel) and starts chains at the prior median (``init="map"``: around a
        multi-start MAP, which did not help this model's simulation-based calibration, docs/validation.md).
    priors
        Overrides of the declared priors (:data:`PER_TOKEN_MODEL`), parameter → prior expression, e.g.
        ``{"tau_a": "HalfNormal(0.05)"}``; recorded as text in ``attrs["priors"]``.

    Returns
    -------
    xarray.DataTree
        Posterior of the hyper-parameters (``a0, a1, b0, b1, c0, c1, tau_*, sigma``) and of each model's ``a, b, c``
        (dimension ``model``), predictive, log-likelihood, diagnostics; ``attrs["law_id"] = "kaplan2020_per_token"``.

    References
    ----------
    Kaplan et al. 2020, arXiv:2001.08361, Fig. 20.
    """
    table = _table(data, ("model", "N", "T", "loss"), "per-token")
    settings = start_settings(sampler, sampler_options, "fit_per_token", PER_TOKEN_SAMPLER)
    sizes = table.groupby("model", sort=False)["N"].agg(["min", "max"])
    if sizes["min"].nunique() < 3:
        raise DataError(f"column 'N': the trend of a, b, c in log N needs at least 3 distinct model sizes, "
                        f"got {sizes['min'].nunique()}")
    few = table.groupby("model")["T"].nunique()
    if (few < 3).any():
        raise DataError(f"column 'T': model {few.index[few < 3][0]!r} has fewer than 3 distinct positions "
                        f"(a, b, c need at least 3)")
    if not (isinstance(n_ref, (int, float)) and np.isfinite(n_ref) and n_ref > 0):
        raise ValueError(f"n_ref must be a finite number > 0, got {n_ref!r}")
    parsed, dists = PER_TOKEN_MODEL.resolve_priors(priors, {})
    models = sizes.index.to_numpy()
    index = pd.Categorical(table["model"], categories=models).codes
    u = jnp.asarray(np.log10(sizes["min"].to_numpy(float) / n_ref))
    args = (dists, u, jnp.asarray(index), jnp.asarray(np.log(table["T"].to_numpy(float))))
    point = np.arange(len(table))
    constant = xr.Dataset({"T": ("point", table["T"].to_numpy(float)), "model_of_point": ("point", models[index].astype(str)),
                           "N": ("model", sizes["min"].to_numpy(float))}, coords={"point": point, "model": models.astype(str)})
    return PER_TOKEN_MODEL.sample(
        _per_token_model, args, table, rng_key=rng_key, settings=settings, strict=strict, priors=parsed,
        checked=dists, statistics={}, constant=constant, coords={"model": models.astype(str)},
        dims={n: ["model"] for n in ("a", "b", "c", "z_a", "z_b", "z_c")}, provenance={"n_ref": float(n_ref)},
    )


def predict_per_token(
    result: xr.DataTree, N: float, T: Sequence[float] | np.ndarray, *, rng_key: int = 0, observation_noise: bool = False
) -> xr.DataArray:
    """Predicted per-token loss curve of a model of size ``N`` never seen in the fit.

    Each posterior draw of the hyper-parameters gives the trend value of log a, log b, log c at ``N``; a fresh
    model-to-model deviation ``tau·z`` (z ~ Normal(0, 1)) is added, because a new model scatters around the trend as
    the fitted ones do. ``observation_noise`` adds the per-position noise ``sigma`` too.

    Returns
    -------
    xarray.DataArray
        Dimensions ``(sample, T)``; coordinate ``T``.
    """
    check_result(result, PER_TOKEN_MODEL.id)
    if not (isinstance(N, (int, float, np.floating)) and np.isfinite(N) and N > 0):
        raise ValueError(f"N must be a finite number > 0, got {N!r}")
    T = np.atleast_1d(np.asarray(T, float))
    if T.size == 0 or not np.all(np.isfinite(T) & (T >= 1)):
        raise ValueError("T must be finite token positions >= 1")
    draws = posterior_draws(result, (*_HYPER, "tau_a", "tau_b", "tau_c", "sigma"))
    rng = np.random.default_rng(rng_key)
    u = np.log10(N / float(result.attrs["n_ref"]))
    n = draws["a0"].size
    coef = {k: np.exp(draws[f"{k}0"] + draws[f"{k}1"] * u + draws[f"tau_{k}"] * rng.standard_normal(n)) for k in "abc"}
    curve = per_token_loss(T[None, :], coef["a"][:, None], coef["b"][:, None], coef["c"][:, None])
    if observation_noise:
        curve = curve * np.exp(draws["sigma"][:, None] * rng.standard_normal(curve.shape))
    return xr.DataArray(curve, dims=("sample", "T"), coords={"T": T}, name="loss", attrs={"N": float(N)})


# --------------------------------------------------------------------------------------------------- steps fit
#: Priors of the steps model. a, b, c: centred on the published per-token fits (LogNormal sd 0.5 = ×/÷1.6).
#: S_c, S_h: LogNormal(ln 1e3, 2) spans ~40 to ~2.7e4 steps (90%); alpha_S: Kaplan's 0.76 sits near the centre.
#: The law file of the steps model (``models/kaplan2020_per_token_steps.toml``): its formula, inputs and priors.
STEPS_LAW = "kaplan2020_per_token_steps"


def fit_per_token_steps(
    data: pd.DataFrame,
    *,
    sampler: NUTS | Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    strict: bool = False,
    **sampler_options: Any,
) -> xr.DataTree:
    """Fit ``L(T, S) = a + b·T^(−c·S/(S + S_h)) + (S_c/S)^alpha_S`` to one model's per-token losses over steps.

    The law is the catalogue file ``kaplan2020_per_token_steps`` fitted by :func:`bayescale.fit` (log-normal noise,
    ``likelihood="normal"``, ``noise="iid"``), so the result is a law result: summary, PPC, LOO, predict and
    save/load all apply. ``data`` has columns ``T`` (position ≥ 1), ``S`` (step > 0), ``loss``; at least 3 distinct
    positions and 4 distinct steps.
    """
    from bayescale.infer.fit import fit

    table = _table(data, ("T", "S", "loss"), "per-token steps")
    for col, need in (("T", 3), ("S", 4)):
        if table[col].nunique() < need:
            raise DataError(f"column {col!r}: needs at least {need} distinct values, got {table[col].nunique()}")
    return fit(STEPS_LAW, table[["T", "S", "loss"]], sampler=sampler, rng_key=rng_key, likelihood="normal",
               noise="iid", strict=strict, **sampler_options)


def predict_per_token_steps(result: xr.DataTree, T: Sequence[float], S: Sequence[float]) -> xr.DataArray:
    """Posterior draws of the per-token loss on the grid ``T × S``: dimensions ``(sample, T, S)``."""
    check_result(result, STEPS_LAW)
    T = np.atleast_1d(np.asarray(T, float))
    S = np.atleast_1d(np.asarray(S, float))
    if T.size == 0 or not np.all(np.isfinite(T) & (T >= 1)):
        raise ValueError("T must be finite token positions >= 1")
    if S.size == 0 or not np.all(np.isfinite(S) & (S > 0)):
        raise ValueError("S must be finite step counts > 0")
    d = {k: v[:, None, None] for k, v in posterior_draws(result, _STEPS).items()}
    curve = per_token_steps_loss(T[None, :, None], S[None, None, :], **d)
    return xr.DataArray(curve, dims=("sample", "T", "S"), coords={"T": T, "S": S}, name="loss")


# --------------------------------------------------------------------------------------------------- figures
def plot_band(ax, x, draws, color, label=None):
    q = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    ax.fill_between(x, q[0], q[4], color=color, alpha=0.15, lw=0)
    ax.fill_between(x, q[1], q[3], color=color, alpha=0.3, lw=0)
    ax.plot(x, q[2], color=color, lw=1.2, label=label)


def plot_per_token(result: xr.DataTree, data: pd.DataFrame, *, new_sizes: Sequence[float] = (), ax=None):
    """Fig. 20 (left): per-token loss vs position for each fitted model (points, median, 50%/90% bands) and the
    predicted curve of each size in ``new_sizes`` (never seen; dashed median)."""
    from bayescale.results.plots import pyplot
    plt = pyplot()

    check_result(result, PER_TOKEN_MODEL.id)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    T = np.unique(np.round(np.geomspace(1, float(data["T"].max()), 80)))
    post = result["posterior"].to_dataset()
    models = result["constant_data"]["model"].values
    sizes = result["constant_data"]["N"].values
    cmap = plt.get_cmap("viridis")
    lo, hi = np.log10(min(sizes.min(), *new_sizes)), np.log10(max(sizes.max(), *new_sizes))
    color = lambda n: cmap(0.9 * (np.log10(n) - lo) / max(hi - lo, 1e-9))  # noqa: E731
    for j, (m, n) in enumerate(zip(models, sizes)):
        a, b, c = (post[k].values[..., j].reshape(-1, 1) for k in "abc")
        plot_band(ax, T, per_token_loss(T[None, :], a, b, c), color(n), label=f"N={n:.2g}")
        rows = data[data["model"].astype(str) == str(m)]
        ax.plot(rows["T"], rows["loss"], "o", ms=2.5, color=color(n))
    for n in new_sizes:
        draws = predict_per_token(result, float(n), T).values
        q = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax.fill_between(T, q[0], q[4], color="crimson", alpha=0.12, lw=0)
        ax.fill_between(T, q[1], q[3], color="crimson", alpha=0.25, lw=0)
        ax.plot(T, q[2], "--", color="crimson", lw=1.2, label=f"predicted N={n:.2g} (unseen)")
    ax.set_xscale("log")
    ax.set_xlabel("token position T")
    ax.set_ylabel("per-token loss (nats)")
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_per_token_steps(result: xr.DataTree, data: pd.DataFrame, *, positions: Sequence[float] | None = None, ax=None):
    """Fig. 20 (right): loss at several positions vs training step: points, posterior median and 50%/90% bands."""
    from bayescale.results.plots import pyplot
    plt = pyplot()

    check_result(result, STEPS_LAW)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    positions = np.unique(data["T"])[:: max(1, data["T"].nunique() // 6)] if positions is None else np.asarray(positions)
    S = np.geomspace(float(data["S"].min()), float(data["S"].max()), 80)
    draws = predict_per_token_steps(result, positions, S).values
    cmap = plt.get_cmap("plasma")
    for i, t in enumerate(positions):
        col = cmap(0.85 * i / max(len(positions) - 1, 1))
        plot_band(ax, S, draws[:, i, :], col, label=f"T={t:g}")
        rows = data[np.isclose(data["T"], t)]
        ax.plot(rows["S"], rows["loss"], "o", ms=2.5, color=col)
    ax.set_xscale("log")
    ax.set_xlabel("training step S")
    ax.set_ylabel("per-token loss (nats)")
    ax.legend(fontsize=7, title="position")
    return ax
