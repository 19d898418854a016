"""Per-point groups of large fits: thinned draws as float32 above a size limit; the CLI's --no-pointwise."""

from __future__ import annotations

import json
import warnings

import numpy as np

import bayescale as bs
import bayescale.infer.fit as inference
from bayescale.infer.fit import pointwise_draws

from .conftest import simulate_table
from .quick import TINY

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)


def test_pointwise_draws_stay_within_the_limit():
    keep, n_prior = pointwise_draws(4, 1000, 1000, 100_000, 5_000_000)
    assert 4 * keep.size * 100_000 <= 5_000_000 and keep.size == 12
    assert keep[0] == 0 and keep[-1] == 999 and np.all(np.diff(keep) > 0)  # evenly spread over the whole chain
    assert n_prior == 50
    keep, n_prior = pointwise_draws(4, 1000, 1000, 240, 5_000_000)  # Chinchilla: untouched
    assert keep.size == 1000 and n_prior == 1000


def test_large_fit_keeps_thinned_float32_pointwise_groups(monkeypatch):
    """A fit whose per-point groups would exceed the limit (lowered here to 3,000 values for a 36-point table) keeps
    them for evenly spaced draws, labelled with the posterior's draw numbers, as float32 (the prior predictive as
    float64); the posterior is whole."""
    monkeypatch.setattr(inference, "POINTWISE_MAX_VALUES", 3000)
    ds = bs.load_runs(simulate_table("hoffmann2022", TRUTH, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the suite's TINY settings (tests/quick.py), started at the prior median (no start search): the CLI fit
        # below uses the same, so the two share their sampler's compiled program
        dt = bs.fit("hoffmann2022", ds, sampler=TINY, num_prior_samples=200, init="median")
    record = json.loads(dt.attrs["pointwise"])
    draws = dt["log_likelihood"]["loss"]["draw"].values
    assert 2 * draws.size * 36 <= 3000 and draws.size == 41
    np.testing.assert_array_equal(draws, record["draws"])
    assert dt["log_likelihood"]["loss"].dtype == np.float32
    assert dt["posterior_predictive"]["loss"].dtype == np.float32
    assert dt["prior_predictive"]["loss"].sizes["draw"] == record["prior_draws"] == 3000 // 36
    assert dt["prior_predictive"]["loss"].dtype == np.float64  # extreme prior draws would overflow float32
    assert dt["posterior"].sizes["draw"] == TINY.num_samples
    table = bs.summary(dt)  # read-outs still work
    assert np.isfinite(table["median"]).all()


def test_cli_no_pointwise_leaves_out_the_per_point_groups(tmp_path, monkeypatch):
    from bayescale.cli import main

    monkeypatch.setattr(inference, "POINTWISE_MAX_VALUES", 1000)  # a size at which the groups would be thinned

    csv = tmp_path / "runs.csv"
    simulate_table("hoffmann2022", TRUTH, seed=3).to_csv(csv, index=False)
    out = tmp_path / "fit.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(csv), "--law", "hoffmann2022", "--out", str(out), "--chains", "2", "--warmup", "100",
                     "--samples", "100", "--init", "median", "--no-progress", "--no-pointwise"]) == 0
    dt = bs.load(out)
    assert "log_likelihood" not in dt.children and "posterior_predictive" not in dt.children
    assert json.loads(dt.attrs["pointwise"]) == {"kept": False}
