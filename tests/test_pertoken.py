"""Per-token loss (Kaplan et al. 2020, Fig. 20): published table, recovery of both simulators, held-out prediction,
errors, and the example run with tiny settings."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale as bs
from bayescale.laws.priors import parse_prior
from bayescale.analyses.kaplan import pertoken as pt
from tests import fits
from tests.fits import HELD_OUT, POSITIONS


@pytest.fixture(scope="module")
def hierarchical(shared_fit):
    """Every model but HELD_OUT fitted (tests/fits.py), 2 chains x 300/300."""
    return fits.data("per_token"), shared_fit("per_token")


@pytest.fixture(scope="module")
def steps(shared_fit):
    return fits.data("per_token_steps"), shared_fit("per_token_steps")


def _interval(result, name, level):
    v = result["posterior"][name].values.ravel()
    return np.quantile(v, [(1 - level) / 2, (1 + level) / 2])


def test_kaplan2020_per_token_table_orders_the_fits_along_N():
    table = pt.kaplan_per_token_table()
    assert len(table) == 6
    assert np.all(np.diff(table["N"]) > 0)  # larger models have lower mean loss, so get larger N
    assert np.all(np.diff(table["a"]) < 0) and np.all(np.diff(table["c"]) >= 0)  # the paper: a falls, c rises with N
    # T = 1 has no context: every model should sit near the unigram entropy of WebText2 (~7.5 nats)
    assert np.all(np.abs(table["a"] + table["b"] - 7.5) < 0.3)
    hyper = pt.per_token_hyper(table)
    assert hyper["a1"] < 0 < hyper["c1"]
    # the trend reproduces each published fit within the residual scatter (3 sd)
    u = np.log10(table["N"] / pt.N_REF)
    for k in "abc":
        resid = np.log(table[k]) - (hyper[f"{k}0"] + hyper[f"{k}1"] * u)
        assert np.all(np.abs(resid) < 3 * hyper[f"tau_{k}"] + 1e-12)


def test_per_token_recovers_the_trend_in_log_N(hierarchical):
    data, result = hierarchical
    hyper = data.attrs["truth"]["hyper"]
    # 99% intervals: six parameters are checked at once, so a calibrated 90% interval would miss one of them half the
    # time. Informative: each interval is narrower than a quarter of its prior's 99% interval.
    for name in ("a0", "a1", "b0", "b1", "c0", "c1"):
        lo, hi = _interval(result, name, 0.99)
        assert lo <= hyper[name] <= hi, (name, hyper[name], lo, hi)
        prior = parse_prior(pt.PER_TOKEN_MODEL.priors[name]).distribution({})
        assert hi - lo < 0.25 * 2 * 2.576 * float(prior.scale), name
    assert result.attrs["law_id"] == "kaplan2020_per_token"
    assert result["posterior"]["a"].dims == ("chain", "draw", "model")


def test_per_token_predicts_a_held_out_size(hierarchical):
    data, result = hierarchical
    truth = data.attrs["truth"]
    n = truth["N"][HELD_OUT]
    pred = pt.predict_per_token(result, n, POSITIONS)
    assert pred.dims == ("sample", "T")
    lo, hi = np.quantile(pred.values, [0.05, 0.95], axis=0)
    true_curve = pt.per_token_loss(POSITIONS, truth["a"][HELD_OUT], truth["b"][HELD_OUT], truth["c"][HELD_OUT])
    assert np.all((lo <= true_curve) & (true_curve <= hi))
    # informative: the 90% band of an unseen size is within ±10% of the loss (the six sizes span 4.2 to 2.5 nats)
    assert np.all((hi - lo) / true_curve < 0.2)
    # a size 10x larger predicts a lower loss at the last position
    far = pt.predict_per_token(result, 10 * n, POSITIONS)
    assert np.median(far.values[:, -1]) < np.median(pred.values[:, -1])


def test_per_token_steps_recovers_its_truth(steps):
    data, result = steps
    truth = data.attrs["truth"]
    for name in pt._STEPS:  # 99%: six parameters at once, as above
        lo, hi = _interval(result, name, 0.99)
        assert lo <= truth[name] <= hi, (name, truth[name], lo, hi)
        assert hi / lo < 1.5, name  # informative: every 99% interval within a factor 1.5 (priors span ~x100)
    grid = pt.predict_per_token_steps(result, [1.0, 1024.0], [5e2, 3e3, 2.5e5])
    assert grid.dims == ("sample", "T", "S")
    med = grid.median("sample").values
    # short-range positions learn first: from 3e3 steps (S_h) to the end, T = 1 gains less than T = 1024
    assert med[0, 1] - med[0, 2] < med[1, 1] - med[1, 2]


def test_per_token_errors():
    good = pt.simulate_per_token(positions=POSITIONS, seed=0)
    with pytest.raises(bs.DataError, match=r"lack column\(s\) \['model'\]"):
        pt.fit_per_token(good.drop(columns="model"))
    bad = good.copy()
    bad.loc[5, "loss"] = -1.0
    with pytest.raises(bs.DataError, match="column 'loss', row 5: expected a finite number > 0"):
        pt.fit_per_token(bad)
    bad = good.copy()
    bad.loc[2, "T"] = 0.5
    with pytest.raises(bs.DataError, match="column 'T', row 2: token positions start at 1"):
        pt.fit_per_token(bad)
    two = good[good["N"].isin(good["N"].unique()[:2])]
    with pytest.raises(bs.DataError, match="at least 3 distinct model sizes, got 2"):
        pt.fit_per_token(two)
    mixed = good.copy()
    mixed.loc[0, "N"] = 1.0
    with pytest.raises(bs.DataError, match="column .N.: model .* has several values; it must be constant within a model"):
        pt.fit_per_token(mixed)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        pt.fit_per_token(good, num_samples=0)
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        pt.fit_per_token(good.to_dict())
    with pytest.raises(bs.DataError, match="column 'S': needs at least 4 distinct values, got 1"):
        pt.fit_per_token_steps(pd.DataFrame({"T": [1.0, 2.0, 4.0], "S": 10.0, "loss": 3.0}))
    with pytest.raises(ValueError, match="expected a result of the 'kaplan2020_per_token' fit"):
        pt.predict_per_token(xr.DataTree(), 1e8, POSITIONS)


def test_per_token_priors_are_text_and_overridable():
    # One declared prior replaced: the override is what the model samples (its prior draws: the median of
    # HalfNormal(0.05) is 0.034, of the declared HalfNormal(0.1) 0.067; 500 prior draws put the sample median within
    # ±0.004 (2 SE)), and the result records every prior as text, the override included.
    data = pt.simulate_per_token(positions=POSITIONS[::3], seed=0)
    with warnings.catch_warnings():  # 20 + 20 draws: the sampler warnings are expected and not what is tested
        warnings.simplefilter("ignore", bs.SamplingWarning)
        result = pt.fit_per_token(data, priors={"tau_a": "HalfNormal(0.05)"}, num_chains=1, num_warmup=20,
                                  num_samples=20, progress_bar=False)
    recorded = json.loads(result.attrs["priors"])
    assert recorded == dict(pt.PER_TOKEN_MODEL.priors) | {"tau_a": "HalfNormal(0.05)"}
    assert 'tau_a = "HalfNormal(0.05)"' in result.attrs["law_source"]
    assert 0.025 < float(np.median(result["prior"]["tau_a"].values)) < 0.045
    assert 0.055 < float(np.median(result["prior"]["tau_b"].values)) < 0.08
    with pytest.raises(bs.LawError, match=r"prior given for 'tau', which is not a parameter of kaplan2020_per_token"):
        pt.fit_per_token(data, priors={"tau": "HalfNormal(0.1)"})
    with pytest.raises(ValueError, match=r"must be a call of one distribution"):
        pt.fit_per_token(data, priors={"tau_a": "0.1"})


def test_per_token_predict_errors(hierarchical):
    _, result = hierarchical
    with pytest.raises(ValueError, match="N must be a finite number > 0"):
        pt.predict_per_token(result, -1.0, POSITIONS)
    with pytest.raises(ValueError, match="T must be finite token positions >= 1"):
        pt.predict_per_token(result, 1e8, [0.0, 1.0])
    with pytest.raises(ValueError, match="expected a result of the 'kaplan2020_per_token_steps' fit"):
        pt.predict_per_token_steps(result, [1.0], [1.0])


def test_example_kaplan_per_token(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "kaplan_per_token.py"
    spec = importlib.util.spec_from_file_location("kaplan_per_token", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.warns(bs.SamplingWarning):  # 1 chain x 100 draws: ESS warnings are expected at tiny settings
        figure = module.main(["--out", str(tmp_path), "--quick"])
    assert figure.is_file() and figure.name == "pertoken_kaplan_fig20.png" and figure.stat().st_size > 20_000
