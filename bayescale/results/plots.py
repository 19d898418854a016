"""Figures read from a result: real-vs-predicted bands per run group."""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from bayescale.results.checks import check_coverage
from bayescale.data import round_sig
from bayescale.infer.diagnostics import convergence_checked
from bayescale.results.predict import predict
from bayescale.results.contract import require, require_group
from bayescale.results.io import law_of

__all__ = ["plot_ppc", "plot_curve_grid"]

_BANDS = (0.9, 0.5)
_MAX_DRAWS = 1000  # enough for 5%-95% quantiles to ~1% of the band width; keeps plotting fast



def pyplot():
    """matplotlib.pyplot, imported on first use (about 0.4 s, which ``import bayescale`` need not pay), with the
    non-interactive Agg backend where there is no display."""
    import matplotlib

    if not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _groups(result: xr.DataTree, law, x: str, group: str | None) -> tuple[str, np.ndarray]:
    const = result["constant_data"].to_dataset()
    runs = const["run"].values
    if group is None:
        if np.unique(runs).size < runs.size:
            return "run", runs
        others = [n for n in law.input_names if n != x]
        group = others[0] if others else x
    if group == "run":
        return "run", runs
    if group not in const:
        raise ValueError(f"group {group!r}: must be one of {['run', *law.input_names]}")
    return group, round_sig(const[group].values)


def target_label(law) -> str:
    """Axis label of a law's target: ``"loss"``, else its description up to any parenthesis (``"task accuracy"``,
    ``"unigram-normalised loss"``), else its kind."""
    if law.target.kind == "loss":
        return "loss"
    return (law.target.description or "").split("(")[0].strip() or law.target.kind


def plot_ppc(
    result: xr.DataTree,
    *,
    x: str | None = None,
    group: str | None = None,
    max_groups: int = 10,
    path: str | os.PathLike | None = None,
    law=None,
) -> "matplotlib.figure.Figure":
    """Real vs predicted: observed losses with 50% and 90% posterior predictive bands per run group.

    Left: loss against ``x`` (default ``D``) for up to ``max_groups`` groups (runs, or values of the other input
    rounded to 2 significant digits), each band drawn along the group's range of ``x`` at its median other inputs. A
    run's band is that run's predictive (``predict(run=...)``: its posterior run effect, and with ``ou`` noise its
    residual continued from its last checkpoint), so it follows the run's own curve; other groups get a new run's.
    Right: observed loss against the predictive median of every point with its 90% interval; the title gives the
    coverage of the 90% band (:func:`~bayescale.results.checks.check_coverage`).
    """
    require(result, "plot_ppc", ("posterior_predictive", "constant_data"))
    law = law_of(result, law)
    x = x or ("D" if "D" in law.input_names else law.input_names[0])
    if x not in law.input_names:
        raise ValueError(f"x {x!r}: must be one of {list(law.input_names)}")
    const = result["constant_data"].to_dataset()
    y = result["observed_data"]["loss"].values
    gname, gvals = _groups(result, law, x, group)
    keys = np.unique(gvals)
    n_groups = keys.size
    if keys.size > max_groups:
        keys = keys[np.unique(np.linspace(0, keys.size - 1, max_groups).round().astype(int))]
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.2), constrained_layout=True)
    colors = plt.cm.viridis(np.linspace(0, 0.92, keys.size))
    sub = result.isel(draw=slice(0, max(1, _MAX_DRAWS // result["posterior"].sizes["chain"])))
    for color, key in zip(colors, keys):
        mask = gvals == key
        xs = const[x].values[mask]
        grid = np.geomspace(max(xs.min(), 1e-300), xs.max(), 60) if xs.max() > xs.min() else xs[:1]
        fixed = {n: np.median(const[n].values[mask]) for n in law.input_names if n != x}
        with convergence_checked():  # a figure that diagnoses the fit: shown for non-converged fits too
            # a run's band is that run's predictive (its run effect, its curve's correlated residual), not a new run's
            pred = predict(sub, kind="predictive", law=law, run=key if gname == "run" else None, **{x: grid},
                           **fixed)["loss"].values.reshape(-1, grid.size)
        for prob, alpha in zip(_BANDS, (0.18, 0.35)):
            lo, hi = np.quantile(pred, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
            ax.fill_between(grid, lo, hi, color=color, alpha=alpha, lw=0)
        ax.plot(grid, np.median(pred, axis=0), color=color, lw=1)
        label = key if gname == "run" else f"{gname} ≈ {key:.2g}"
        ax.scatter(xs, y[mask], color=color, s=14, edgecolor="k", linewidth=0.3, zorder=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(target_label(law))
    shown = f"{keys.size} of {n_groups} {gname} groups shown" if keys.size < n_groups else f"all {n_groups} {gname} groups"
    ax.set_title(f"{result.attrs.get('law_id')}: observed and 50%/90% predictive bands ({shown})", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.set_ylim(*_data_limits(y))  # from the data: bands of a poor fit may span far more than the losses do

    draws = result["posterior_predictive"]["loss"].values.reshape(-1, y.size)
    lo, med, hi = np.quantile(draws, [0.05, 0.5, 0.95], axis=0)
    inside = (y >= lo) & (y <= hi)
    ax2.errorbar(med, y, xerr=[med - lo, hi - med], fmt="none", ecolor="0.6", lw=0.6, zorder=1)
    ax2.scatter(med[inside], y[inside], s=10, color="C0", label="inside 90% band", zorder=2)
    ax2.scatter(med[~inside], y[~inside], s=14, color="C3", label="outside", zorder=2)
    lims = list(_data_limits(y))
    ax2.plot(lims, lims, "k--", lw=0.8)
    ax2.set_xlim(*lims)
    ax2.set_ylim(*lims)
    ax2.set_xlabel(f"predicted {target_label(law)} (median, 90% interval)")
    ax2.set_ylabel(f"observed {target_label(law)}")
    ax2.set_title(f"coverage of the 90% band: {check_coverage(result, 0.9):.1%} of {y.size} points")
    ax2.legend(fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _data_limits(y: np.ndarray, pad: float = 0.15) -> tuple[float, float]:
    """Axis limits around the observed losses, ``pad`` of their range on each side."""
    lo, hi = float(np.min(y)), float(np.max(y))
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    return lo - pad * span, hi + pad * span


def _quantile_bands(draws: np.ndarray) -> np.ndarray:
    """(5 quantiles, points): 5%, 25%, 50%, 75%, 95% over the first axis."""
    return np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)


def plot_curve_grid(
    result: xr.DataTree,
    *,
    rows: str = "T_m",
    cols: str = "N",
    x: str = "D",
    heldout: xr.Dataset | None = None,
    path: str | os.PathLike | None = None,
    rng_key: int = 0,
    title: str | None = None,
):
    """Real vs predicted training curves in a grid, one panel per (``rows`` value, ``cols`` value), like Ouro's
    Fig. 15: the observed losses of each run, the posterior predictive median with 50% and 90% bands; points in
    ``heldout`` (a dataset from :func:`~bayescale.data.load_runs`) are drawn in another colour with their predictive
    bands (:func:`~bayescale.results.predict.predict` with ``run=``, so a partly seen curve is continued from its last
    checkpoint). Panel titles give the 90% coverage of the panel's points."""
    law = law_of(result, needed_by="plot_ppc")
    const = result["constant_data"].to_dataset()
    obs = result["observed_data"].to_dataset()
    for name in (rows, cols, x):
        if name not in const:
            raise ValueError(f"plot_curve_grid: {name!r} is not an input of the fit (inputs {list(law.input_names)})")
    ppc = require_group(result, "posterior_predictive", "plot_curve_grid")["loss"].values
    fitted = dict(run=obs["run"].values, y=obs["loss"].values, bands=_quantile_bands(ppc.reshape(-1, ppc.shape[-1])[:_MAX_DRAWS]),
                  **{n: const[n].values for n in law.input_names})
    parts = [("fitted", "C0", fitted)]
    if heldout is not None:
        inputs = {n: heldout[n].values for n in law.input_names}
        with convergence_checked():
            pred = predict(result, kind="predictive", run=heldout["run"].values, rng_key=rng_key,
                       extrapolation_threshold=np.inf, **inputs)["loss"].values
        parts.append(("held out", "C3", dict(run=heldout["run"].values, y=heldout["loss"].values,
                                             bands=_quantile_bands(pred.reshape(-1, pred.shape[-1])), **inputs)))
    row_values = np.unique(np.concatenate([p[2][rows] for p in parts]))
    col_values = np.unique(np.concatenate([p[2][cols] for p in parts]))
    plt = pyplot()
    fig, axes = plt.subplots(row_values.size, col_values.size, figsize=(3.2 * col_values.size, 2.6 * row_values.size),
                             squeeze=False, sharex=True, sharey=True)
    for i, rv in enumerate(row_values):
        for j, cv in enumerate(col_values):
            ax = axes[i, j]
            inside = []
            for label, color, p in parts:
                sel = (p[rows] == rv) & (p[cols] == cv)
                for run in np.unique(p["run"][sel]):
                    k = np.flatnonzero(sel & (p["run"] == run))
                    k = k[np.argsort(p[x][k])]
                    b = p["bands"][:, k]
                    ax.fill_between(p[x][k], b[0], b[4], color=color, alpha=0.15, lw=0)
                    ax.fill_between(p[x][k], b[1], b[3], color=color, alpha=0.3, lw=0)
                    ax.plot(p[x][k], b[2], color=color, lw=1)
                    ax.plot(p[x][k], p["y"][k], ".", color="k" if label == "fitted" else color, ms=2)
                    inside.append(((p["y"][k] >= b[0]) & (p["y"][k] <= b[4])).mean())
            if law.target.kind == "loss":  # other targets may be negative (or bounded): linear axis
                ax.set_yscale("log")
            cover = f", 90% cover {np.mean(inside):.0%}" if inside else ""
            ax.set_title(f"{rows}={rv:.3g}, {cols}={cv:.3g}{cover}", fontsize=8)
            if i == row_values.size - 1:
                ax.set_xlabel(x)
            if j == 0:
                ax.set_ylabel(target_label(law))
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.4) for _, c, _ in parts]
    fig.legend(handles, [f"{label}: median, 50% and 90% predictive" for label, _, _ in parts], loc="upper right",
               fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
