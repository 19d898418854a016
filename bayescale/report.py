"""A Markdown report of a fit: law, priors, data, diagnostics, parameters, PPC, compute plan, recipe."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import xarray as xr

from bayescale.checks import check_coverage
from bayescale.planning import compute_optimal
from bayescale.plots import plot_ppc
from bayescale.results import provenance
from bayescale.summary import describe, summary

__all__ = ["write_report", "plan_table"]


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


def write_report(
    result: xr.DataTree, out_dir: str | os.PathLike, *, budgets=(5.76e23,), prob: float = 0.9
) -> Path:
    """Write ``report.md`` and ``ppc.png`` into ``out_dir`` and return the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(result)
    fig = plot_ppc(result, path=out / "ppc.png")
    fig.clf()
    table = summary(result, prob)
    plan = plan_table(result, list(budgets), prob) if set(prov["inputs"]) == {"N", "D"} else None
    lines = [
        f"# bayescale fit: {prov['law_id']}",
        "",
        f"**Law** `{prov['law_formula']}`: {prov['law_title']}  ",
        f"Citation: {prov['law_citation']}",
        "",
        f"**Data** {prov['data_source']}: {prov['n_points']} points, {prov['n_runs']} runs "
        f"(columns {prov['data_columns']}; sha256 `{prov['data_hash'][:16]}…`).",
        "",
        "## Priors",
        "",
        *[f"- `{k}` ~ `{v}`" for k, v in prov["priors"].items()],
        f"- likelihood on log-loss: `{prov['likelihood']}`",
        "",
        f"## Parameters (median, {prob:.0%} interval, diagnostics, published values)",
        "",
        _fmt(table),
        "",
        f"Divergent transitions: {table.attrs['divergences']}. Warnings: "
        + ("; ".join(table.attrs["warnings"]) if table.attrs["warnings"] else "none."),
        "",
        "## Posterior predictive check",
        "",
        f"Coverage of the 90% predictive band: {check_coverage(result, 0.9):.1%}; of the 50% band: "
        f"{check_coverage(result, 0.5):.1%}.",
        "",
        "![real vs predicted](ppc.png)",
        "",
    ]
    if plan is not None:
        lines += [
            f"## Compute-optimal allocation (C = 6·N·D, {prob:.0%} intervals)",
            "",
            _fmt(plan),
            "",
        ]
    sampler = prov["sampler"]
    lines += [
        "## Recipe and provenance",
        "",
        f"- sampler: {sampler}",
        f"- law file sha256 `{prov['law_hash']}`",
        f"- versions: {prov['versions']}",
        f"- created: {prov.get('created_at')}",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
