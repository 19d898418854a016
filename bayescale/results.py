"""Fit results as self-describing :class:`xarray.DataTree` files.

Groups: ``posterior``, ``posterior_predictive``, ``log_likelihood``, ``sample_stats``, ``observed_data``,
``constant_data`` (the law inputs), ``prior``, ``prior_predictive`` and ``references`` (published constants over the
dimension ``source``). The root attrs carry the provenance: law id, law file text and hash, data hash, priors,
likelihood, sampler settings, diagnostics, package versions; so a saved fit reloads and predicts identically.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["save", "load", "provenance", "attr_json", "law_of"]

_PACKAGES = ("bayescale", "jax", "jaxlib", "numpyro", "arviz-base", "arviz-stats", "xarray", "numpy")


def require_group(dt: xr.DataTree, group: str, needed_by: str) -> xr.Dataset:
    """The group ``group`` of a result, or one clear :class:`~bayescale.contract.ResultError` naming the result's
    kind when it has none (a bootstrap baseline; ``fit(..., pointwise=False)``; a batch member)."""
    from bayescale.contract import ResultError, result_kind

    if group not in dt.children:
        kind = result_kind(dt)
        raise ResultError(f"{needed_by} needs the result's {group!r} group, which this {kind!r} result does not have"
                          + ("; refit with bayescale.fit(..., pointwise=True)" if kind == "law" else ""))
    return dt[group].to_dataset()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def law_data_attrs(law, ds: xr.Dataset, statistics: dict[str, float], noise_names) -> dict[str, Any]:
    """Root attributes every result carries about its law and data (law text and hash, data hash, shape, statistics),
    shared by :func:`bayescale.fit` and :func:`bayescale.baseline.fit_baseline`."""
    return {
        "law_id": law.id,
        "law_title": law.title,
        "law_formula": law.formula or "<python function>",
        "law_citation": law.citation,
        "law_hash": law.source_hash,
        "law_source": law.source_text or "",
        "data_hash": ds.attrs.get("data_hash", ""),
        "data_source": ds.attrs.get("source", ""),
        "data_columns": ds.attrs.get("columns", ""),
        "n_points": int(ds.sizes["point"]),
        "n_runs": int(np.unique(ds["run"].values).size),
        "inputs": json.dumps(list(law.input_names)),
        "parameters": json.dumps(list(law.parameter_names)),
        "noise_parameters": json.dumps(list(noise_names)),
        "data_statistics": json.dumps(statistics),
        "versions": json.dumps(versions()),
    }


def attr_json(dt: xr.DataTree, key: str, default: Any = None) -> Any:
    """Read a JSON-encoded root attribute of a result."""
    raw = dt.attrs.get(key)
    return default if raw is None else json.loads(raw)


def provenance(dt: xr.DataTree) -> dict[str, Any]:
    """The provenance of a result as a plain dict (JSON attrs decoded)."""
    out = {}
    for key, value in dt.attrs.items():
        if isinstance(value, str) and value[:1] in "[{":
            try:
                out[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def save(dt: xr.DataTree, path: str | os.PathLike) -> Path:
    """Write a result to netCDF atomically: a temporary file in the same folder, then an atomic rename.

    An interrupted or failed write never leaves a half-written file at ``path`` (an older file there is kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        dt.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> xr.DataTree:
    """Load a result saved by :func:`save` fully into memory (the file is closed afterwards)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fit result at {str(path)!r}")
    with xr.open_datatree(path, engine="h5netcdf") as dt:
        loaded = dt.load().copy()
    if "law_id" not in loaded.attrs:
        raise ValueError(f"{str(path)!r} is not a bayescale result (no 'law_id' attribute)")
    return loaded


#: Result kinds whose posterior is over the parameters of one law of its inputs (what predict and plan evaluate).
LAW_KINDS = ("law", "law_batch_member", "baseline")


def law_of(dt: xr.DataTree, law=None, needed_by: str = "predict"):
    """The law of a result: ``law`` if given, else rebuilt from the law file text stored in the result.

    Results of other kinds (schedule laws, per-token, shape, critical batch) raise one
    :class:`~bayescale.contract.ResultError` that names the read-out ``needed_by`` and what to use instead."""
    from bayescale.contract import require, result_kind
    from bayescale.laws import LawError, parse_law_text

    if result_kind(dt) not in LAW_KINDS:
        require(dt, needed_by)
    if law is not None:
        return law
    text = dt.attrs.get("law_source")
    if not text:
        raise LawError(
            f"result of law {dt.attrs.get('law_id')!r} stores no law file (a Python-function law); pass law=..."
        )
    return parse_law_text(text, origin=f"result of {dt.attrs.get('law_id')}")


def posterior_arrays(dt: xr.DataTree, names) -> dict[str, np.ndarray]:
    """Posterior draws flattened over (chain, draw)."""
    post = dt["posterior"].to_dataset()
    return {n: post[n].values.reshape(-1) for n in names}
