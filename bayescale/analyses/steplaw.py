"""Learning-rate and batch-size laws (Step Law) and the data-constrained law (Muennighoff et al. 2023): data
preparation and the optimum read from a fitted :mod:`bayescale` result.

The laws themselves are catalogue files (``models/steplaw2025.toml``, ``models/muennighoff2023.toml``) fitted with
:func:`bayescale.fit`; this module adds what is specific to them:

- :func:`steplaw_table` / :func:`load_steplaw`: the Step Law grid (Li et al. 2025) as a run table with the batch size
  in tokens, diverged runs dropped, and a window of near-optimal runs per (N, D) cell;
- :func:`optimal_lr_batch`: posterior draws of the optimal learning rate and batch size at any (N, D);
- :func:`steplaw_published`: the published Step Law optimum, for comparison.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data import DataError, load_runs
from bayescale.laws.catalogue import load_law

__all__ = ["steplaw_table", "load_steplaw", "optimal_lr_batch", "steplaw_published", "STEPLAW_PUBLISHED"]

#: Step Law's published optimum (Li et al. 2025, arXiv:2503.04715, abstract): eta_opt = 1.79 N^-0.713 D^0.307 and
#: B_opt = 0.58 D^0.571 (B in tokens, N non-embedding parameters, D tokens).
_STEPLAW = load_law("steplaw2025")
STEPLAW_PUBLISHED = dict(_STEPLAW.reference("li2025").values)

_STEPLAW_COLUMNS = ("N", "D", "lr", "bs", "smooth loss")


def steplaw_table(
    data: str | os.PathLike | pd.DataFrame,
    *,
    window: float | None = 0.03,
    max_loss: float = 4.0,
    seq_len: int = 2048,
    loss_column: str = "smooth loss",
) -> pd.DataFrame:
    """The Step Law dense grid (``dense_lr_bs_loss.csv``) as a run table for ``steplaw2025``.

    Parameters
    ----------
    data
        Path to ``dense_lr_bs_loss.csv`` of github.com/step-law/steplaw (not bundled: the repository has no licence),
        or that table as a DataFrame.
    window
        Keep the runs whose loss is within this relative distance of their (N, D) cell's best run
        (``loss <= (1 + window) * min``); ``None`` keeps every run below ``max_loss``. The quadratic bowl of the law
        describes the runs near the optimum; far from it the loss rises faster than quadratically (and diverges).
        Step Law's own fit keeps ``window = 0.0025`` and regresses the surviving runs' (lr, batch size) on (N, D).
    max_loss
        Runs with a larger loss diverged (181 of 1,911 runs have loss > 4, up to 11.1) and are dropped first.
    seq_len
        Sequence length: the table's ``bs`` counts sequences, the law's ``batch_size`` counts tokens.
    loss_column
        ``"smooth loss"`` (the smoothed final loss that Step Law's fitting code uses) or ``"loss"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``N`` (non-embedding parameters), ``D`` (tokens), ``lr``, ``batch_size`` (tokens), ``loss``,
        ``run`` (the (N, D) cell, so that ``noise="run"`` gives each cell a partially pooled offset), ``bs``
        (sequences); ``attrs`` record the selection.
    """
    if isinstance(data, (str, os.PathLike)):
        if not os.path.isfile(data):
            raise DataError(f"Step Law table {str(data)!r} does not exist")
        df = pd.read_csv(data)
    elif isinstance(data, pd.DataFrame):
        df = data.copy()
    else:
        raise DataError(f"data must be a path or a DataFrame, got {type(data).__name__}")
    missing = [c for c in (*_STEPLAW_COLUMNS[:4], loss_column) if c not in df.columns]
    if missing:
        raise DataError(f"the Step Law table lacks columns {missing}; it has {list(df.columns)}")
    if window is not None and not (np.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number or None, got {window!r}")
    if not (isinstance(seq_len, (int, np.integer)) and seq_len > 0):
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    out = pd.DataFrame(
        {
            "N": df["N"].astype(float),
            "D": df["D"].astype(float),
            "lr": df["lr"].astype(float),
            "batch_size": df["bs"].astype(float) * seq_len,
            "loss": pd.to_numeric(df[loss_column], errors="coerce"),
            "bs": df["bs"].astype(float),
        }
    )
    n_all = len(out)
    out = out[out["loss"] < max_loss]
    n_finite = len(out)
    if window is not None:
        best = out.groupby(["N", "D"])["loss"].transform("min")
        out = out[out["loss"] <= (1 + window) * best]
    out = out.reset_index(drop=True)
    out["run"] = [f"N={n:.3g},D={d:.3g}" for n, d in zip(out["N"], out["D"])]
    out.attrs = {
        "selection": f"{n_all} runs; {n_all - n_finite} with {loss_column} >= {max_loss:g} dropped (diverged); "
        f"window {window} around each (N, D) cell's best run keeps {len(out)}",
        "window": window,
    }
    return out


def load_steplaw(data: str | os.PathLike | pd.DataFrame, **kwargs: Any) -> xr.Dataset:
    """:func:`steplaw_table` validated by :func:`bayescale.load_runs` (inputs ``N, D, lr, batch_size``, ``run`` = cell)."""
    table = steplaw_table(data, **kwargs)
    ds = load_runs(
        table.drop(columns=["bs"]),
        inputs=("N", "D", "lr", "batch_size"),
        source=f"Step Law dense_lr_bs_loss.csv (Li et al. 2025): {table.attrs['selection']}",
    )
    return ds


def _grid(N: Any, D: Any) -> tuple[np.ndarray, np.ndarray]:
    n, d = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
    for name, v in (("N", n), ("D", d)):
        if not np.all(np.isfinite(v) & (v > 0)):
            raise ValueError(f"{name} must be finite and > 0, got {v.ravel()[:5].tolist()}")
    return np.atleast_1d(n).ravel(), np.atleast_1d(d).ravel()


def _optimum_draws(law, params: dict[str, np.ndarray], n: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    """The law's [optimum] inputs per parameter draw (leading axis of ``params``) and point: arrays (draws, points)."""
    import jax
    import jax.numpy as jnp

    log_x = {"N": jnp.log(jnp.asarray(n)), "D": jnp.log(jnp.asarray(d))}
    at = jax.jit(jax.vmap(lambda p: law.optimal_inputs(p, log_x)))
    return {k: np.exp(np.asarray(v)) for k, v in at({k: jnp.asarray(v) for k, v in params.items()}).items()}


def _as_dataset(values: dict[str, np.ndarray], dims: tuple[str, ...], n: np.ndarray, d: np.ndarray) -> xr.Dataset:
    out = xr.Dataset({"eta_opt": (dims, values["lr"]), "B_opt": (dims, values["batch_size"])})
    out = out.assign_coords(point=np.arange(n.size), N=("point", n), D=("point", d))
    out["eta_opt"].attrs["description"] = "optimal peak learning rate"
    out["B_opt"].attrs["description"] = "optimal batch size in tokens"
    return out


def steplaw_published(N: Any, D: Any) -> xr.Dataset:
    """Step Law's published optimum at (N, D): ``eta_opt = 1.79 N^-0.713 D^0.307``, ``B_opt = 0.58 D^0.571`` tokens
    (the [optimum] of ``models/steplaw2025.toml`` at its published constants)."""
    n, d = _grid(N, D)
    values = _optimum_draws(_STEPLAW, {k: np.array([v]) for k, v in STEPLAW_PUBLISHED.items()}, n, d)
    return _as_dataset({k: v[0] for k, v in values.items()}, ("point",), n, d)


def optimal_lr_batch(result: xr.DataTree, N: Any, D: Any) -> xr.Dataset:
    """Posterior draws of the optimal peak learning rate and batch size (tokens) at (N, D).

    The [optimum] of the fitted law (``models/steplaw2025.toml``: ``eta_opt = c_lr N^a_N D^a_D`` and
    ``B_opt = c_bs D^d_bs``), evaluated per posterior draw.

    Parameters
    ----------
    result
        A fitted result (:func:`bayescale.fit`) of a law with an [optimum] for ``lr`` and ``batch_size``.
    N, D
        Non-embedding parameters and tokens; broadcast against each other.

    Returns
    -------
    xarray.Dataset
        ``eta_opt`` and ``B_opt`` over ``(chain, draw, point)``, with ``N`` and ``D`` as coordinates of ``point``.
        Summarise with ``.quantile([0.05, 0.5, 0.95], dim=("chain", "draw"))``.

    References
    ----------
    Li et al. 2025, "Predictable Scale: Part I", arXiv:2503.04715.
    """
    from bayescale.results.io import law_of

    if not isinstance(result, xr.DataTree) or "posterior" not in result.children:
        raise ValueError("result must be a fitted DataTree with a posterior group (from bayescale.fit)")
    law = law_of(result)
    if set(law.tuned_inputs) != {"lr", "batch_size"}:
        raise ValueError(f"optimal_lr_batch needs a fit of a law with an [optimum] for lr and batch_size "
                         f"(steplaw2025); law {law.id!r} has {list(law.tuned_inputs)}")
    n, d = _grid(N, D)
    post = result["posterior"].to_dataset()
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    values = _optimum_draws(law, {k: post[k].values.reshape(-1) for k in law.parameter_names}, n, d)
    out = _as_dataset({k: v.reshape(chains, draws, n.size) for k, v in values.items()}, ("chain", "draw", "point"), n, d)
    return out.assign_coords(chain=post["chain"].values, draw=post["draw"].values)
