"""The classic Huber + L-BFGS + bootstrap baseline: golden published fit, bootstrap shape, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

import bayescale as bs
from bayescale.validation.baseline import fit_baseline, point_estimate
from bayescale.datasets import load_chinchilla
from tests import fits
from tests.conftest import simulate_table

# The check fit of /work/shared/data/epoch_chinchilla_replication/CARD.md ("Sanity check"), which matches the "Replicate
# exactly" cell of Epoch's notebook: Huber δ = 1e-3 on log-loss, summed, log-sum-exp form, L-BFGS-B from a grid.
BESIROGLU_2024_HUBER = {"A": 477.8, "B": 2143.2, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}


def matching_digits(value: float, certified: float, max_digits: int = 8) -> int:
    """Leading significant digits to which ``value`` and ``certified`` round identically (lmfit/NIST-style scoring)."""
    for digits in range(max_digits, 0, -1):
        if float(f"{value:.{digits - 1}e}") == float(f"{certified:.{digits - 1}e}"):
            return digits
    return 0


def test_besiroglu2024_huber_fit_on_240_points():
    # A 2-per-parameter grid (32 starts, ~3 s) instead of the card's 3^5 = 243 (~20 s on 2 cores); 29 of the 32 starts
    # reach the optimum, and the full grid moves no printed digit (checked when writing this test: A 477.8259,
    # B 2143.417, E 1.817218, alpha 0.347310, beta 0.367172, reached from 180 of 243 starts).
    result = fit_baseline("hoffmann2022", load_chinchilla(), grid_size=2, num_bootstrap=0)
    got = point_estimate(result)
    # The published values carry 4-5 significant digits; every one matches to 4 and E to all 5. B's fifth digit
    # (2143.4 here, 2143.2 on the card) is below the objective's resolution: the loss is flat along B, our stricter
    # ftol ends at a lower objective, and scipy's default ftol gives 2143.18.
    digits = {name: matching_digits(got[name], certified) for name, certified in BESIROGLU_2024_HUBER.items()}
    assert all(d >= 4 for d in digits.values()) and digits["E"] == 5, (digits, got)
    info = bs.provenance(result)["baseline"]
    assert info["delta"] == 1e-3 and info["n_starts"] == 32 and info["starts_reaching_best"] >= 16


@pytest.fixture(scope="module")
def simulated_baseline(shared_fit):
    return dict(fits.TRUTH), fits.data("baseline"), shared_fit("baseline")  # tests/fits.py


def test_bootstrap_is_shaped_like_a_posterior_and_predicts(simulated_baseline):
    truth, df, result = simulated_baseline
    post = result["posterior"].to_dataset()
    assert dict(post.sizes) == {"chain": 1, "draw": 30}
    assert set(post.data_vars) == {"E", "A", "B", "alpha", "beta", "sigma", "nu"}
    assert result.attrs["inference"] == "huber_bootstrap"
    # Bootstrap spread is positive and the point estimate sits inside the bootstrap range.
    point = point_estimate(result)
    for name in ("E", "alpha", "beta"):
        draws = post[name].values.ravel()
        assert draws.std() > 0 and draws.min() <= point[name] <= draws.max(), name
    # Exponents recovered: 36 points with 0.5% noise pin alpha, beta to ~0.02 (the Bayesian recovery test's tolerance).
    assert abs(point["alpha"] - truth["alpha"]) < 0.05 and abs(point["beta"] - truth["beta"]) < 0.05
    # bayescale.results.predict reads the baseline like a fit: law and predictive kinds.
    pred = bs.predict(result, N=[1e8, 1e9], D=[1e10, 1e10])
    assert pred["loss"].shape == (1, 30, 2)
    expected = np.asarray(bs.load_law("hoffmann2022").predict(point, N=np.array([1e8, 1e9]), D=np.array([1e10, 1e10])))
    assert np.allclose(np.median(pred["loss"].values, axis=(0, 1)), expected, rtol=0.01)
    noisy = bs.predict(result, kind="predictive", N=1e9, D=1e10)["loss"].values
    assert noisy.std() > pred["loss"].values[..., 1].std()
    table = bs.describe(result["posterior"].to_dataset())
    assert list(table["variable"]) == ["E", "A", "B", "alpha", "beta", "sigma", "nu"]


def test_bootstrap_resamples_runs_not_points():
    # Two checkpoints per run: a resample must keep both or neither, so every bootstrap weight is even.
    from bayescale.validation import baseline

    df = simulate_table("kaplan2020_n", dict(N_c=8.8e13, alpha_N=0.076), sigma=0.01, seed=0)
    df = df.iloc[:12]
    df = pd_concat_two_checkpoints(df)
    ds = bs.load_runs(df, inputs=("N",))
    seen = []
    original = baseline.minimise

    def spy(fun, starts, w):
        seen.append(np.asarray(w))
        return original(fun, starts, w)

    baseline.minimise = spy
    try:
        fit_baseline("kaplan2020_n", ds, grid_size=2, num_bootstrap=3, bootstrap_starts=1)
    finally:
        baseline.minimise = original
    for w in seen[1:]:
        assert np.all(w[0::2] == w[1::2]) and w.sum() == len(df)


def pd_concat_two_checkpoints(df):
    import pandas as pd

    a = df.assign(run=[f"r{i}" for i in range(len(df))])
    b = a.assign(loss=a["loss"] * 1.001)
    return pd.concat([a, b]).sort_index(kind="stable").reset_index(drop=True)


def test_errors_name_the_problem():
    ds = load_chinchilla()
    with pytest.raises(ValueError, match=r"grid_size 7: must be one of \[2, 3, 4, 5\]"):
        fit_baseline("hoffmann2022", ds, grid_size=7, num_bootstrap=0)
    with pytest.raises(ValueError, match=r"starts must give values for exactly the parameters .*missing \['beta'\]; unknown \['gamma'\]"):
        fit_baseline("hoffmann2022", ds, starts={"E": [1.8], "A": [400], "B": [400], "alpha": [0.3], "gamma": [1]})
    with pytest.raises(ValueError, match="delta must be a positive number, got -1"):
        fit_baseline("hoffmann2022", ds, delta=-1)
    with pytest.raises(ValueError, match="num_bootstrap must be a non-negative integer, got 2.5"):
        fit_baseline("hoffmann2022", ds, num_bootstrap=2.5)
    with pytest.raises(ValueError, match="no point_estimate group"):
        point_estimate(xr.DataTree())


def test_compare_intervals_puts_both_methods_in_one_table(simulated_baseline):
    from bayescale.validation.baseline import compare_intervals

    _, _, result = simulated_baseline
    table = compare_intervals(result, result)  # a result against itself: identical columns, width ratio 1
    assert list(table.index) == ["E", "A", "B", "alpha", "beta"]
    assert np.allclose(table["width_ratio"], 1.0)
    assert np.allclose(table["bayes_q0.05"], table["bootstrap_q0.05"])
    other = result.copy()
    other.attrs["parameters"] = '["gamma"]'
    with pytest.raises(ValueError, match=r"share no parameters"):
        compare_intervals(other, result)
