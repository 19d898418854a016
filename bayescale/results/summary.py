"""Tables of posterior quantities: parameters with intervals and diagnostics, or any draws Dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.results.contract import require
from bayescale.infer.diagnostics import convergence
from bayescale.infer.starts import describe_modes
from bayescale.results.io import attr_json

__all__ = ["summary", "describe", "matching_references"]


def matching_references(result: xr.DataTree) -> tuple[list[str], list[str]]:
    """Published constant sets of the result's law split into (fitted on these data, fitted on other data).

    A set is a reference for a fit only when its law file lists the fit's data hash (``data_sha256`` of a
    ``[published.*]`` table): constants fitted on other data (Chinchilla's on MassiveText, say, against a Gemstones
    fit) describe another dataset, not a target this fit should hit.
    """
    from bayescale.results.contract import ResultError
    from bayescale.laws.catalogue import LawError
    from bayescale.results.io import law_of

    if "references" not in result.children:
        return [], []
    sources = [str(s) for s in result["references"]["source"].values]
    try:
        law = law_of(result)
    except (LawError, ResultError):  # a Python-function law or a special model: no law file, no data hashes
        return [], sources
    data_hash = result.attrs.get("data_hash", "")
    own = {p.source for p in law.published if data_hash and data_hash in p.data_hashes}
    return [s for s in sources if s in own], [s for s in sources if s not in own]


def describe(draws: xr.Dataset | xr.DataArray, prob: float = 0.9, sample_dims=("chain", "draw")) -> pd.DataFrame:
    """Median and central ``prob`` interval of every variable (and every non-sample coordinate) of ``draws``."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    ds = draws.to_dataset(name=draws.name or "value") if isinstance(draws, xr.DataArray) else draws
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    rows = []
    for name, da in ds.data_vars.items():
        dims = [d for d in sample_dims if d in da.dims]
        q = da.quantile([lo, 0.5, hi], dim=dims)
        other = [d for d in q.dims if d != "quantile"]
        stacked = q.stack(_row=other) if other else q.expand_dims(_row=[0])
        for i in range(stacked.sizes["_row"]):
            col = stacked.isel(_row=i)
            row = {"variable": name}
            if other:
                for d in other:
                    row[d] = col[d].item() if d in col.coords else i
            row.update({"median": float(col.sel(quantile=0.5)), f"q{lo:.3g}": float(col.sel(quantile=lo)), f"q{hi:.3g}": float(col.sel(quantile=hi))})
            rows.append(row)
    return pd.DataFrame(rows)


def summary(result: xr.DataTree, prob: float = 0.9) -> pd.DataFrame:
    """Parameters of a fit: median, central ``prob`` interval, mean, sd, R-hat, bulk/tail ESS, how much of each
    parameter came from the prior, published values.

    Published values are columns only for constant sets fitted on the same data (:func:`matching_references`); the
    others are listed in ``table.attrs["published_elsewhere"]``. The number of divergent transitions, the sampler
    warnings and the convergence verdict (``converged``, ``convergence``) are in ``table.attrs``; so is
    ``multimodality``, a line saying how many distinct modes the start search found (``None`` for one), which R-hat
    cannot show because every chain starts around the best (:mod:`bayescale.infer.starts`).

    ``sd_ratio`` is the posterior sd over the prior sd, both on the unconstrained scale NUTS samples in (log of an
    amplitude, logit of a bounded parameter), and ``contraction`` = 1 − sd_ratio² (Schad, Betancourt & Vasishth 2021):
    near 1 the data determined the parameter, near 0 (sd_ratio near 1) the prior alone did, as with few runs or a
    parameter the data cannot see. NaN when the result has no prior draws. The number of divergent transitions and
    the sampler warnings are in ``table.attrs``.
    """
    require(result, "summary", ("posterior",))
    names = attr_json(result, "parameters", []) + attr_json(result, "noise_parameters", [])
    post = result["posterior"].to_dataset()
    table = describe(post[names], prob).set_index("variable")
    table.index.name = "parameter"
    flat = {n: post[n].values.reshape(-1) for n in names}
    table.insert(1, "mean", [float(np.mean(flat[n])) for n in names])
    table.insert(2, "sd", [float(np.std(flat[n], ddof=1)) for n in names])
    diag = pd.DataFrame(attr_json(result, "diagnostics", {}).get("parameters", []))
    diag = diag.reindex(columns=["parameter", "rhat", "ess_bulk", "ess_tail",
                                 *(c for c in diag.columns if c not in ("parameter", "rhat", "ess_bulk", "ess_tail"))])
    diag = diag.set_index("parameter")
    table = table.join(diag[["rhat", "ess_bulk", "ess_tail"]])  # NaN where no sampler diagnostics (a bootstrap)
    if "contraction" in diag:
        contraction = diag["contraction"].astype(float)
        table["contraction"] = contraction
        table["sd_ratio"] = np.sqrt(np.clip(1.0 - contraction, 0.0, None))
    own, elsewhere = matching_references(result)
    if own:
        ref = result["references"].to_dataset()
        for source in own:
            table[source] = [float(ref[n].sel(source=source)) if n in ref else np.nan for n in names]
    table.attrs["published_elsewhere"] = elsewhere
    table.attrs["divergences"] = attr_json(result, "diagnostics", {}).get("divergences", 0)
    table.attrs["warnings"] = attr_json(result, "warnings", [])
    verdict = convergence(result)
    table.attrs["converged"] = verdict.converged
    table.attrs["convergence"] = list(verdict.reasons)
    table.attrs["multimodality"] = describe_modes(attr_json(result, "init", {}))
    return table
