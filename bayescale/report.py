"""Reports of a fit: ``report.md`` (Markdown, figures beside it) and ``report.html`` (one self-contained page).

Sections: data, law and priors, diagnostics and parameters, prior vs posterior, posterior predictive check, held-out
checks (when the result carries them), the compute plan for given budgets, and the recipe (parameter counting, FLOP
formula, loss, checkpoints, sampler settings, versions). The HTML page embeds its figures as base64 PNG and needs
nothing from the network; a few lines of inline JavaScript only record, in the page, that every figure decoded.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.laws.catalogue import Target
from bayescale.results.checks import check_coverage, check_residuals
from bayescale.results.contract import require
from bayescale.infer.diagnostics import convergence, convergence_checked, describe_convergence
from bayescale.planning.optimum import optimum_per_draw, compute_optimal, format_plan, plan, plan_summary, planning_law
from bayescale.results.plots import plot_ppc, pyplot
from bayescale.results.io import law_of, provenance
from bayescale.results.summary import describe, matching_references, summary

__all__ = ["write_report", "plan_table", "plot_prior_posterior", "plot_plan", "DEFAULT_BUDGET"]

#: The report's budget when none is given: Chinchilla's training compute, 5.76e23 FLOP (Hoffmann et al. 2022, Table 3).
DEFAULT_BUDGET = 5.76e23

#: Groups every fit has; any other group of a result (e.g. held-out extrapolation checks) is shown as a table.
_STANDARD_GROUPS = {
    "posterior", "posterior_predictive", "log_likelihood", "sample_stats", "observed_data", "constant_data",
    "prior", "prior_predictive", "references",
}


def likelihood_scale(prov: dict) -> str:
    """Where a fit's likelihood lives (:attr:`bayescale.laws.catalogue.Target.scale` of the target kind in its
    provenance; declared models, which record none, fit log-losses)."""
    return Target(kind=prov.get("target", "loss")).scale


def plan_table(result: xr.DataTree, budgets, prob: float = 0.9) -> pd.DataFrame:
    """Compute-optimal allocation per budget: median and central ``prob`` interval of N*, D*, D*/N*, L*."""
    table = describe(compute_optimal(result, budgets), prob)
    return table.set_index(["compute", "variable"]).sort_index()


def _fmt(df: pd.DataFrame) -> str:
    return df.to_markdown(floatfmt=".4g") if _has_tabulate() else "```\n" + df.to_string(float_format="%.4g") + "\n```"


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Figures
def _log_axis(values: np.ndarray) -> bool:
    """Log axis for positive draws whose central 90% spans more than 1.5 decades (amplitudes, not E or ν)."""
    v = values[np.isfinite(values)]
    if v.size == 0 or v.min() <= 0:
        return False
    lo, hi = np.quantile(v, [0.05, 0.95])
    return hi / lo > 10**1.5


def plot_prior_posterior(result: xr.DataTree, path: str | os.PathLike | None = None) -> "matplotlib.figure.Figure":
    """Prior (grey outline) and posterior (filled) of every parameter, on a log axis where the prior spans > 2 decades."""
    prov = provenance(result)
    names = list(prov["parameters"]) + list(prov["noise_parameters"])
    if "prior" not in result.children:
        raise ValueError("the result has no prior group")
    prior, post = result["prior"].to_dataset(), result["posterior"].to_dataset()
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False, constrained_layout=True)
    for ax, name in zip(axes.ravel(), names):
        pr, po = prior[name].values.ravel(), post[name].values.ravel()
        log = _log_axis(pr)
        lo, hi = np.quantile(pr, [0.005, 0.995])
        lo, hi = min(lo, po.min()), max(hi, po.max())
        if log:  # density per decade, so that the heights mean the same on a log axis
            bins = np.geomspace(lo, hi, 80)
            width = np.log10(bins[1] / bins[0])
            ax.hist(pr, bins=bins, weights=np.full(pr.size, 1 / (pr.size * width)), histtype="step", color="0.45",
                    lw=1.2, label="prior")
            ax.hist(po, bins=bins, weights=np.full(po.size, 1 / (po.size * width)), histtype="stepfilled", color="C0",
                    alpha=0.75, label="posterior")
            ax.set_xscale("log")
        else:
            bins = np.linspace(lo, hi, 80)
            ax.hist(pr, bins=bins, density=True, histtype="step", color="0.45", lw=1.2, label="prior")
            ax.hist(po, bins=bins, density=True, histtype="stepfilled", color="C0", alpha=0.75, label="posterior")
        ax.set_yscale("log")  # the posterior is often 100x narrower than the prior: log density shows both
        ax.set_title(f"{name}: {prov['priors'].get(name, '')}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _reference_optima(result: xr.DataTree, budget: float, k: float) -> dict[str, tuple[float, float]]:
    """(N*, L*) at ``budget`` for each published constant set of the result's references group."""
    import jax.numpy as jnp

    own, _ = matching_references(result)  # constants fitted on other data are no reference for this fit
    if not own:
        return {}
    law = planning_law(law_of(result), "the report's plan")
    ref = result["references"].to_dataset()
    out = {}
    for source in own:
        values = {n: float(ref[n].sel(source=source)) for n in law.parameter_names}
        if all(np.isfinite(list(values.values()))):
            u, log_l, interior = optimum_per_draw(law, {n: jnp.asarray(v) for n, v in values.items()}, jnp.log(budget / k))
            if bool(interior):
                out[str(source)] = (float(np.exp(u)), float(np.exp(log_l)))
    return out


def plot_plan(result: xr.DataTree, plan_tree: xr.DataTree, path: str | os.PathLike | None = None) -> "matplotlib.figure.Figure":
    """Per budget: the posterior of N* (published constants' N* marked) and the loss along the budget line
    C = kND against N, median and 90% band, with the near-optimal region (P ≥ 0.9 within ε) shaded."""
    opt = plan_tree["optimum"].to_dataset()
    near = plan_tree["near_optimal"].to_dataset()
    k = float(plan_tree.attrs["flops_per_param_token"])
    budgets = opt["compute"].values
    plt = pyplot()
    fig, axes = plt.subplots(len(budgets), 2, figsize=(12, 3.8 * len(budgets)), squeeze=False, constrained_layout=True)
    for (ax1, ax2), c in zip(axes, budgets):
        n_opt = opt["N_opt"].sel(compute=c).values.ravel()
        n_opt = n_opt[np.isfinite(n_opt)]
        lo, med, hi = np.quantile(n_opt, [0.05, 0.5, 0.95])
        ax1.hist(n_opt, bins=np.geomspace(n_opt.min(), n_opt.max(), 60), color="C0", alpha=0.75)
        ax1.axvspan(lo, hi, color="C0", alpha=0.12, label=f"90% interval [{lo:.3g}, {hi:.3g}]")
        ax1.axvline(med, color="C0", lw=1.5, label=f"median N* {med:.3g}")
        for i, (source, (n_ref, _)) in enumerate(_reference_optima(result, float(c), k).items()):
            ax1.axvline(n_ref, color=f"C{i + 1}", ls="--", lw=1.3, label=f"{source} constants: {n_ref:.3g}")
        ax1.set_xscale("log")
        ax1.set_xlabel("compute-optimal N* (parameters)")
        ax1.set_title(f"posterior of N* at C = {c:.3g} FLOP")
        ax1.legend(fontsize=7)

        reg = near.sel(compute=c)
        grid = reg["N"].values
        loss = reg["loss"].values.reshape(-1, grid.size)
        q = np.quantile(loss, [0.05, 0.5, 0.95], axis=0)
        ax2.fill_between(grid, q[0], q[2], color="C0", alpha=0.25, lw=0, label="90% band")
        ax2.plot(grid, q[1], color="C0", lw=1.5, label="median loss")
        n_lo, n_hi = float(reg["N_low"].sel(level=0.9)), float(reg["N_high"].sel(level=0.9))
        if np.isfinite(n_lo):
            ax2.axvspan(n_lo, n_hi, color="C2", alpha=0.15,
                        label=f"near-optimal: P ≥ 0.9 within ε = {plan_tree.attrs['epsilon']:g}")
        ax2.set_xscale("log")
        ax2.set_xlabel(f"N (D = C / ({k:g} N))")
        ax2.set_ylabel("loss")
        ax2.set_title(f"loss along the budget C = {c:.3g}")
        def flip(x, c=c):  # N <-> D = C/(kN); matplotlib probes the transform at 0
            with np.errstate(divide="ignore", over="ignore"):
                return c / (k * np.maximum(x, 1e-300))

        sec = ax2.secondary_xaxis("top", functions=(flip, flip))
        sec.set_xlabel("D (tokens)", fontsize=8)
        ax2.legend(fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _save_png_base64(fig: "matplotlib.figure.Figure", path: str | os.PathLike, dpi: int = 110) -> str:
    """Render ``fig`` once as PNG, write it to ``path`` and return it base64-encoded for the HTML page (rendering is
    most of a report's figure cost: one render serves the file and the page)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    data = buf.getvalue()
    Path(path).write_bytes(data)
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------------------------------
# Sections shared by the Markdown and HTML versions
def _data_table(result: xr.DataTree) -> pd.DataFrame:
    const = result["constant_data"].to_dataset()
    cols = {n: const[n].values for n in const.data_vars}
    cols["loss"] = result["observed_data"]["loss"].values
    rows = [dict(variable=n, min=float(np.min(v)), median=float(np.median(v)), max=float(np.max(v)),
                 decades=float(np.log10(np.max(v) / np.min(v))) if np.min(v) > 0 else np.nan,
                 distinct=int(np.unique(v).size)) for n, v in cols.items()]
    return pd.DataFrame(rows).set_index("variable")


def _extra_groups(result: xr.DataTree) -> dict[str, pd.DataFrame]:
    """Tables of non-standard groups (held-out extrapolation checks and the like), small variables only."""
    out = {}
    for name, node in result.children.items():
        if name in _STANDARD_GROUPS:
            continue
        ds = node.to_dataset()
        small = [v for v in ds.data_vars if ds[v].size <= 200 and ds[v].ndim <= 1]
        if not small:
            continue
        try:
            out[name] = ds[small].to_dataframe()
        except ValueError:
            out[name] = pd.DataFrame({v: [np.asarray(ds[v].values).tolist()] for v in small})
    return out


def _recipe(result: xr.DataTree, notes: Mapping[str, str], k: float) -> dict[str, str]:
    prov = provenance(result)
    law = law_of(result)
    n_points, n_runs = int(prov["n_points"]), int(prov["n_runs"])
    checkpoints = (
        f"one final loss per run ({n_runs} runs)" if n_points == n_runs else
        f"{n_points} checkpoints from {n_runs} runs (the model treats them as independent; checkpoints of one run "
        "are correlated, so intervals are optimistic)"
    )
    recipe = {
        "parameter counting": "; ".join(f"{i.name}: {i.description}" for i in law.inputs if i.description)
        or "not stated by the law file",
        "FLOP formula": f"C = {k:g}·N·D (k = FLOP per parameter per token; 6 for a dense transformer, forward + backward, "
        "Kaplan et al. 2020 Sec. 2.1)",
        "loss": (law.notes.strip().replace("\n", " ") if law.notes else "") or "as in the run table",
        "checkpoints used": checkpoints,
        "data": f"{prov['data_source']} (columns {prov['data_columns']}; sha256 {prov['data_hash'][:16]}…)",
        "likelihood": f"{prov['likelihood']} on log-loss",
        "sampler": ", ".join(f"{a}={b}" for a, b in prov["sampler"].items()),
        "law file sha256": prov["law_hash"],
        "versions": ", ".join(f"{a} {b}" for a, b in prov["versions"].items()),
        "created": str(prov.get("created_at")),
    }
    recipe.update({str(a): str(b) for a, b in notes.items()})  # the user's notes override the defaults
    return recipe


def _html_table(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    return df.to_html(float_format=lambda v: float_format.format(v), na_rep="", border=0, classes="t")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
code{background:#f4f4f6;padding:0 .25em;border-radius:3px}
table.t{border-collapse:collapse;font-size:.85em;margin:.6em 0}
table.t th,table.t td{border-bottom:1px solid #e3e3e3;padding:.25em .6em;text-align:right}
table.t th{background:#f7f7f9}
img{max-width:100%;height:auto;border:1px solid #eee}
.key{font-size:1.05em;background:#f0f6ff;border-left:4px solid #2a6fdb;padding:.5em .8em}
.warn{background:#fff6e5;border-left:4px solid #e39b00;padding:.4em .8em}
.banner{background:#fdecea;border:2px solid #c62828;border-left:8px solid #c62828;padding:.7em 1em;font-size:1.05em}
.banner b{color:#b71c1c}
dl.recipe dt{font-weight:600;margin-top:.4em}dl.recipe dd{margin-left:1.2em}
"""

# Records, in the page itself, whether every figure decoded: a headless browser's DOM dump then shows it.
_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  var el = document.getElementById('render-check');
  el.setAttribute('data-images-ok', String(ok));
  el.setAttribute('data-images-total', String(imgs.length));
  el.textContent = 'figures rendered: ' + ok + ' of ' + imgs.length;
});
"""


def write_report(
    result: xr.DataTree,
    out_dir: str | os.PathLike,
    *,
    budgets=None,
    prob: float = 0.9,
    recipe: Mapping[str, str] | None = None,
    flops_per_param_token: float = 6.0,
    epsilon: float = 0.01,
    allow_unconverged: bool = False,
) -> Path:
    """Write ``report.md`` (with ``ppc.png``, ``prior_posterior.png``, ``plan.png`` beside it) and a self-contained
    ``report.html`` into ``out_dir``; return the Markdown report's path.

    Parameters
    ----------
    budgets
        Budgets (FLOP) of the compute plan (laws of (N, D) only); by default :data:`DEFAULT_BUDGET` (Chinchilla's
        training compute), and the report says so.
    allow_unconverged
        A fit that did not converge (:func:`bayescale.convergence`) gets a warning banner at the top and no plan or
        headline numbers; with True the plan is shown anyway, under the banner.
    recipe
        Notes for the recipe section, e.g. ``{"loss": "validation loss, nats/token, C4"}``; they override the
        defaults read from the result (parameter counting from the law file's input descriptions, FLOP formula,
        checkpoints, sampler, versions).
    """
    require(result, "report", ("posterior_predictive", "observed_data", "constant_data"))
    from bayescale.results.io import check_destination

    out = check_destination(out_dir, what="report folder", folder=True)
    prov = provenance(result)
    verdict = convergence(result)
    budget_note = ""
    if budgets is None:
        budgets = (DEFAULT_BUDGET,)
        budget_note = (f"Budget C = {DEFAULT_BUDGET:.3g} FLOP: the default (Chinchilla's training compute, Hoffmann et "
                       "al. 2022); choose others with --compute / budgets=.")
    else:
        budget_note = "Budgets C = " + ", ".join(f"{float(c):.3g}" for c in np.atleast_1d(budgets)) + " FLOP (as given)."
    figures: dict[str, str] = {}
    with convergence_checked():  # diagnostic figures: drawn for a non-converged fit too
        fig = plot_ppc(result)
    figures["ppc"] = _save_png_base64(fig, out / "ppc.png", dpi=120)
    figures["prior_posterior"] = _save_png_base64(plot_prior_posterior(result), out / "prior_posterior.png")
    table = summary(result, prob)
    data_table = _data_table(result)
    cov90, cov50 = check_coverage(result, 0.9), check_coverage(result, 0.5)
    resid = check_residuals(result)
    if not resid.attrs["tested"]:
        residual_text = "Residual structure: not checked (too few points or runs along any input)."
    elif not resid.attrs["passes"]:
        residual_text = f"Residual structure: {resid.attrs['message']}."
    else:
        residual_text = ("Residual structure: the misses do not trend along " + ", ".join(resid["covariate"])
                         + f" (Spearman rank correlation over {resid.attrs['unit']}s, Bonferroni at 1%).")
    try:  # a law of (N, D), or one with an [optimum] for its other inputs, gets a plan
        planning_law(law_of(result), "the report's plan")
        has_nd = True
    except ValueError:
        has_nd = False
    show_plan = has_nd and (verdict.converged or allow_unconverged)
    if verdict.converged:
        banner = ""
    elif allow_unconverged:
        banner = ("This fit did NOT converge: " + "; ".join(verdict.reasons) + ". The plan below was computed anyway "
                  "(allow_unconverged) and is NOT trustworthy.")
    else:
        banner = ("This fit did NOT converge: " + "; ".join(verdict.reasons) + ". No compute plan or headline numbers "
                  "are shown; the tables and figures below are for diagnosis only. Refit with more warmup, samples or "
                  "chains (or a simpler noise model) before acting on it.")
    elsewhere = table.attrs.get("published_elsewhere", [])
    published_note = ""
    if elsewhere:
        law_ = law_of(result)
        cites = "; ".join(f"{p.source} ({p.citation})" for p in law_.published if p.source in elsewhere)
        published_note = (f"Published constants of this law, fitted on other data, are not a reference for this dataset "
                          f"and are not shown as such: {cites}.")
    plan_tree = plan_df = None
    if show_plan:
        plan_tree = plan(result, list(budgets), prob=prob, epsilon=epsilon, flops_per_param_token=flops_per_param_token,
                         allow_unconverged=allow_unconverged)
        plan_df = plan_summary(plan_tree, prob)
        figures["plan"] = _save_png_base64(plot_plan(result, plan_tree), out / "plan.png")
    extras = _extra_groups(result)
    recipe_items = _recipe(result, recipe or {}, flops_per_param_token)
    warnings_text = "; ".join(table.attrs["warnings"]) if table.attrs["warnings"] else "none"

    key_numbers = []
    if plan_tree is not None:
        opt = plan_tree["optimum"].to_dataset()
        for c in opt["compute"].values:
            parts = []
            for var, label in [("N_opt", "N*"), ("D_opt", "D*"), ("tokens_per_param", "D*/N*"), ("loss_opt", "L*")]:
                v = opt[var].sel(compute=c).values
                lo, med, hi = np.nanquantile(v, [(1 - prob) / 2, 0.5, (1 + prob) / 2])
                parts.append(f"{label} = {med:.3g} [{lo:.3g}, {hi:.3g}]")
            key_numbers.append(f"C = {c:.3g} FLOP: " + ", ".join(parts) + f" ({prob:.0%} intervals)")

    # ---- Markdown
    lines = [
        f"# bayescale fit: {prov['law_id']}",
        "",
        *([f"> **WARNING: {banner}**", ""] if banner else []),
        f"**Law** `{prov['law_formula']}`: {prov['law_title']}  ",
        f"Citation: {prov['law_citation']}",
        "",
        f"**Data** {prov['data_source']}: {prov['n_points']} points, {prov['n_runs']} runs "
        f"(columns {prov['data_columns']}; sha256 `{prov['data_hash'][:16]}…`).",
        "",
        _fmt(data_table),
        "",
        "## Priors",
        "",
        *[f"- `{k}` ~ `{v}`" for k, v in prov["priors"].items()],
        f"- likelihood on {likelihood_scale(prov)}: `{prov['likelihood']}`",
        "",
        "![prior vs posterior](prior_posterior.png)",
        "",
        f"## Parameters (median, {prob:.0%} interval, diagnostics, published values)",
        "",
        _fmt(table),
        "",
        f"Divergent transitions: {table.attrs['divergences']}. Warnings: {warnings_text}. "
        f"Convergence: {describe_convergence(result)}.",
        "",
        *([published_note, ""] if published_note else []),
        "## Posterior predictive check",
        "",
        f"Coverage of the 90% predictive band: {cov90:.1%}; of the 50% band: {cov50:.1%}.",
        "",
        residual_text,
        "",
        "![real vs predicted](ppc.png)",
        "",
    ]
    for name, df in extras.items():
        lines += [f"## Checks stored in the result: `{name}`", "", _fmt(df), ""]
    if plan_tree is not None:
        lines += [
            f"## Compute-optimal allocation and plan (C = {flops_per_param_token:g}·N·D, {prob:.0%} intervals)",
            "",
            budget_note,
            "",
            *([f"> **WARNING: {residual_text}**", ""] if not resid.attrs["passes"] else []),
            *[f"- {s}" for s in key_numbers],
            "",
            "```",
            format_plan(plan_tree, prob),
            "```",
            "",
            "![plan](plan.png)",
            "",
        ]
    elif has_nd:
        lines += ["## Compute plan", "", "Not shown: the fit did not converge (see the warning at the top).", ""]
    lines += ["## Recipe and provenance", "", *[f"- {k}: {v}" for k, v in recipe_items.items()], ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))

    # ---- HTML
    e = html.escape
    body = [
        f"<h1>bayescale fit: {e(prov['law_id'])}</h1>",
        f"<p><b>Law</b> <code>{e(prov['law_formula'])}</code>: {e(prov['law_title'])}<br>Citation: "
        f"{e(prov['law_citation'])}</p>",
    ]
    if banner:
        body.append(f'<div class="banner" id="convergence-banner"><b>WARNING:</b> {e(banner)}</div>')
    if key_numbers and not resid.attrs["passes"]:
        body.append(f'<div class="banner" id="residual-warning"><b>WARNING:</b> {e(residual_text)}</div>')
    if key_numbers:
        body.append('<div class="key" id="key-numbers">' + e(budget_note) + "<br>" + "<br>".join(e(s) for s in key_numbers)
                    + "</div>")
    body += [
        "<h2>Data</h2>",
        f"<p>{e(str(prov['data_source']))}: {prov['n_points']} points, {prov['n_runs']} runs (columns "
        f"{e(str(prov['data_columns']))}; sha256 <code>{e(prov['data_hash'][:16])}…</code>).</p>",
        _html_table(data_table),
        "<h2>Law and priors</h2><ul>",
        *[f"<li><code>{e(k)}</code> ~ <code>{e(v)}</code></li>" for k, v in prov["priors"].items()],
        f"<li>likelihood on {e(likelihood_scale(prov))}: <code>{e(prov['likelihood'])}</code></li></ul>",
        "<h2>Diagnostics and parameters</h2>",
        f"<p>Median, {prob:.0%} interval, R-hat, ESS and published values. Divergent transitions: "
        f"{table.attrs['divergences']}. Warnings: {e(warnings_text)}. Convergence: {e(describe_convergence(result))}.</p>",
        _html_table(table),
        *([f"<p>{e(published_note)}</p>"] if published_note else []),
        "<h2>Prior vs posterior</h2>",
        f'<img alt="prior vs posterior" src="data:image/png;base64,{figures["prior_posterior"]}">',
        "<h2>Posterior predictive check</h2>",
        f"<p>Coverage of the 90% predictive band: {cov90:.1%}; of the 50% band: {cov50:.1%}.</p>",
        f'<p id="residual-structure">{e(residual_text)}</p>',
        f'<img alt="real vs predicted" src="data:image/png;base64,{figures["ppc"]}">',
    ]
    if extras:
        body.append("<h2>Checks stored in the result</h2>")
        for name, df in extras.items():
            body += [f"<h3><code>{e(name)}</code></h3>", _html_table(df)]
    else:
        body += ["<h2>Held-out extrapolation checks</h2>", "<p>None stored in this result.</p>"]
    if plan_tree is not None:
        body += [
            f"<h2>Compute plan (C = {flops_per_param_token:g}·N·D)</h2>",
            f"<p>{e(budget_note)}</p>",
            f"<p>Median and central {prob:.0%} interval per budget; the near-optimal rows give the N and D range whose "
            f"loss is within ε = {epsilon:g} nats of the optimum with probability ≥ 0.5 / 0.9; extrapolation is in "
            "decades beyond the fitted runs.</p>",
            _html_table(plan_df.rename(columns={"low": f"q{(1 - prob) / 2:.3g}", "high": f"q{(1 + prob) / 2:.3g}"})),
            f'<img alt="plan" src="data:image/png;base64,{figures["plan"]}">',
        ]
        over = [float(plan_tree["optimum"][f"extrapolation_{i}"].max()) for i in ("N", "D")]
        if max(over) > float(plan_tree.attrs["extrapolation_threshold"]):
            body.append(f'<p class="warn">The plan extrapolates {max(over):.2f} decades beyond the fitted runs.</p>')
    elif has_nd:
        body += ["<h2>Compute plan</h2>",
                 '<p class="warn">Not shown: the fit did not converge (see the warning at the top).</p>']
    body += [
        "<h2>Recipe and provenance</h2>",
        '<dl class="recipe">',
        *[f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in recipe_items.items()],
        "</dl>",
        '<p id="render-check" data-images-ok="0" data-images-total="?">figures rendered: (script did not run)</p>',
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>bayescale report: {e(prov['law_id'])}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style><script>{_CHECK_JS}</script></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    (out / "report.html").write_text(page, encoding="utf-8")
    return path
