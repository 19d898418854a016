"""Downstream metrics in two steps: a task loss from (N, D), then task accuracy from that loss, with the posterior of
step 1 carried through step 2.

The two-step task law of Bhagia et al. (2024): step 1 fits a loss law (``hoffmann2022`` on the task's loss, bits per
byte of the correct continuation), step 2 a sigmoid from the task loss to accuracy
(``models/downstream/bhagia2024_sigmoid.toml``, a unit-interval target). The two are fitted independently
(:func:`bayescale.fit` each, on their own tables), and :func:`predict_chained` joins them per posterior draw: draw s of
step 1's prediction at the target (N, D) is fed to draw s' of step 2, s' a random pairing of step 2's draws. Since the
fits share no parameters and their data are distinct tables, their joint posterior is the product of the two, and
random pairing samples it. The one-step alternative (accuracy straight from N, D) is the law file
``models/downstream/bhagia2024_accuracy_nd.toml``, fitted and predicted like any law (docs/downstream.md compares them).

References
----------
Bhagia, Liu, Wettig, et al. 2024, Establishing Task Scaling Laws via Compute-Efficient Model Ladders, arXiv:2412.04403.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayescale.results.contract import require
from bayescale.infer.diagnostics import convergence_gate
from bayescale.errors import ArgumentError, LawError
from bayescale.infer.fit import as_key
from bayescale.laws.catalogue import Law, law_search_path, load_law
from bayescale.results.predict import KINDS, draw_noise, noise_terms, predict
from bayescale.results.io import law_of

__all__ = ["predict_chained", "load_downstream_law", "list_downstream_laws"]


def _folders() -> list[Path]:
    return [p / "downstream" for p in law_search_path() if (p / "downstream").is_dir()]


def list_downstream_laws() -> list[str]:
    """Ids of the downstream laws (``models/downstream/*.toml``; outside :func:`bayescale.list_laws`, which lists laws
    of a loss or of (N, D)-like inputs for planning)."""
    return sorted({p.stem for folder in _folders() for p in folder.glob("*.toml")})


def load_downstream_law(name: str | os.PathLike) -> Law:
    """Load a downstream law by id (``"bhagia2024_sigmoid"``, ``"bhagia2024_accuracy_nd"``) or from a TOML path.

    Raises
    ------
    LawError
        If the id is unknown (the error lists the known ones).
    """
    if Path(name).suffix == ".toml":
        return load_law(name)
    for folder in _folders():
        if (folder / f"{name}.toml").is_file():
            return load_law(folder / f"{name}.toml")
    raise LawError(f"unknown downstream law {str(name)!r}: must be one of {list_downstream_laws()} or a .toml path")


def _paired_draws(total: int, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of step 2's draws paired with step 1's: a random permutation (each draw used once) when step 2 has at
    least as many draws, else a resample with replacement."""
    if total >= wanted:
        return rng.permutation(total)[:wanted]
    return rng.integers(0, total, wanted)


@convergence_gate("predict_chained", results=("step1", "step2"))
def predict_chained(
    step1: xr.DataTree,
    step2: xr.DataTree,
    *,
    kind: str = "predictive",
    rng_key: int | jax.Array = 0,
    allow_unconverged: bool = False,
    **inputs: Any,
) -> xr.Dataset:
    """Posterior of a downstream metric at new inputs through two fitted laws: step 1's prediction is step 2's input.

    For each posterior draw s of step 1, the intermediate value ``m_s`` (e.g. the task loss at the target N, D) is
    drawn from step 1's law (``kind="law"``) or its posterior predictive (``kind="predictive"``: a new run's loss, the
    fitted observation noise included); then ``y_s = f_2(m_s; θ2_s')`` with θ2_s' a draw of step 2 paired at random,
    plus step 2's observation noise for ``kind="predictive"``. The spread of ``y`` therefore carries both fits'
    parameter uncertainty (and, for ``"predictive"``, both noise terms); feeding step 2 a point value instead drops
    step 1's share.

    Parameters
    ----------
    step1
        Fit of the intermediate (:func:`bayescale.fit`), e.g. ``hoffmann2022`` on a task's bits per byte.
    step2
        Fit of the downstream metric from the intermediate: a law of exactly one input
        (``load_downstream_law("bhagia2024_sigmoid")``).
    kind
        One of :data:`bayescale.results.predict.KINDS`: ``"predictive"`` (default: a new run's observed metric) or ``"law"``
        (the curves only).
    rng_key
        Seed of the pairing and the noise draws.
    allow_unconverged
        Predict from fits that did not converge (with a warning); without it either one raises
        :class:`~bayescale.errors.ConvergenceError`.
    **inputs
        Inputs of step 1's law (``N=..., D=...``; scalars or arrays, broadcast together).

    Returns
    -------
    xarray.Dataset
        ``loss`` (the downstream metric, e.g. accuracy; named as in :func:`bayescale.results.predict`) and ``intermediate``
        (step 1's value fed to step 2), both over ``(chain, draw, prediction)`` with step 1's chains and draws, the
        inputs as coordinates along ``prediction``; attrs name both laws, the kind and how draws were paired.

    Raises
    ------
    ArgumentError
        If step 2's law does not take exactly one input, or step 1 predicts a value step 2 cannot take (≤ 0).
    ValueError
        For an unknown ``kind`` or inputs that step 1's law does not take (as :func:`bayescale.results.predict`).

    Examples
    --------
    >>> loss_fit = bs.fit(bs.load_law("hoffmann2022"), bpb_table)                           # doctest: +SKIP
    >>> acc_fit = bs.fit(load_downstream_law("bhagia2024_sigmoid"), acc_table, noise="run+latent")  # doctest: +SKIP
    >>> predict_chained(loss_fit, acc_fit, N=6.9e9, D=3.9e12)["loss"].quantile([0.05, 0.95])  # doctest: +SKIP
    """
    require(step1, "predict", ("posterior",))
    require(step2, "predict", ("posterior",))
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: must be one of {list(KINDS)}")
    law1, law2 = law_of(step1), law_of(step2)
    if len(law2.input_names) != 1:
        raise ArgumentError(f"step 2 law {law2.id!r} takes inputs {list(law2.input_names)}: a chained prediction "
                            "feeds step 1's value into a law of exactly one input")
    key_pair, key1, key2 = jax.random.split(as_key(rng_key)[0], 3)
    first = predict(step1, kind=kind, rng_key=key1, **inputs)
    middle = first["loss"].values  # (chain, draw, prediction)
    chains, draws, points = middle.shape
    flat = middle.reshape(chains * draws, points)
    if not np.all(np.isfinite(flat) & (flat > 0)):
        raise ArgumentError(f"step 1 law {law1.id!r} predicts values step 2 law {law2.id!r} cannot take (it needs "
                            f"finite values > 0 for input {law2.input_names[0]!r}); min {np.nanmin(flat):.4g}")
    post2 = step2["posterior"].to_dataset()
    total2 = post2.sizes["chain"] * post2.sizes["draw"]
    index = _paired_draws(total2, flat.shape[0], np.random.default_rng(int(jax.random.randint(key_pair, (), 0, 2**31 - 1))))
    params2 = {n: jnp.asarray(post2[n].values.reshape(-1)[index]) for n in law2.parameter_names}
    name = law2.input_names[0]
    paired = jax.jit(jax.vmap(lambda p, log_m: law2.link_fn(p, {name: log_m})))
    eta = np.asarray(paired(params2, jnp.log(jnp.asarray(flat))))
    if kind == "predictive":
        # step 2's noise per paired draw: noise_terms reads the noise parameters of every posterior draw in order, so
        # give it the paired draws as a one-chain posterior
        resampled = xr.Dataset({n: (("chain", "draw"), post2[n].values.reshape(-1)[index][None, :])
                                for n in post2.data_vars if post2[n].dims == ("chain", "draw")})
        view = xr.DataTree.from_dict({"posterior": resampled})
        view.attrs = dict(step2.attrs)
        eta = eta + draw_noise(noise_terms(view, law2, eta, {name: flat[0]}), key2)
    value = law2.target.inverse(eta).reshape(chains, draws, points)
    coords = {k: v for k, v in first.coords.items()}
    return xr.Dataset(
        {"loss": (("chain", "draw", "prediction"), value),
         "intermediate": (("chain", "draw", "prediction"), middle)},
        coords=coords,
        attrs={"kind": kind, "step1_law_id": law1.id, "step2_law_id": law2.id,
               "pairing": "independent fits; step 2's posterior draws paired at random with step 1's "
                          f"({'a permutation' if total2 >= flat.shape[0] else 'resampled with replacement'})"},
    )
