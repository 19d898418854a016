"""Held-out validation: splits, metrics (CRPS, coverage, LPD), the Bayesian fit and the baseline side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import bayescale as bs
from bayescale.validation import crps_sample, make_splits, plot_validation, validate
from tests.conftest import simulate_table

TINY = dict(num_chains=2, num_warmup=300, num_samples=300)


@pytest.fixture(scope="module")
def grid_data():
    truth = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)
    return bs.load_runs(simulate_table("hoffmann2022", truth, sigma=0.005, seed=7))


def test_splits_hold_out_what_they_say(grid_data):
    (largest,) = make_splits(grid_data, "largest", by="N", holdout=2)
    n = grid_data["N"].values
    assert largest.test.sum() == 12 and n[largest.test].min() > n[largest.train].max()
    rollout = make_splits(grid_data, "rollout", by="N", min_train=3, max_folds=2)
    assert [f.name for f in rollout] == ["rollout N k=4", "rollout N k=5"]
    for f in rollout:  # train on the smallest k sizes, predict the next one
        assert n[f.test].min() > n[f.train].max() and np.unique(n[f.test]).size == 1
    budgets = make_splits(grid_data, "leave_one_out", by="C")
    compute = 6 * grid_data["N"].values * grid_data["D"].values  # 6 x 6 log grid: C = 6ND takes 11 distinct values
    assert len(budgets) == 11 and sum(int(f.test.sum()) for f in budgets) == compute.size
    assert all((f.train ^ f.test).all() for f in budgets)


def test_split_errors_list_the_allowed_values(grid_data):
    with pytest.raises(ValueError, match=r"split 'middle': must be one of \['largest', 'rollout', 'leave_one_out', 'prefix'\]"):
        make_splits(grid_data, "middle")
    with pytest.raises(ValueError, match=r"by 'T_m': must be one of \['N', 'D', 'C'\]"):
        make_splits(grid_data, "largest", by="T_m")
    with pytest.raises(ValueError, match=r"holdout must be an integer in \[1, 5\] \(distinct N values\), got 6"):
        make_splits(grid_data, "largest", holdout=6)
    with pytest.raises(ValueError, match=r"min_train must be an integer in \[1, 5\]"):
        make_splits(grid_data, "rollout", min_train=0)
    with pytest.raises(ValueError, match=r"values \[7.0\]: must be among"):
        make_splits(grid_data, "leave_one_out", by="N", values=[7])
    with pytest.raises(ValueError, match=r"methods \['mle'\]: each must be one of \['bayes', 'baseline'\]"):
        validate("hoffmann2022", grid_data, methods=("mle",))


def test_crps_matches_the_normal_closed_form():
    # CRPS of N(0, 1) at y has a closed form (Gneiting & Raftery 2007, Eq. 21). With 20000 draws the sample estimate's
    # standard error is ~0.003 (checked empirically over seeds), so 0.01 is a >3-SE tolerance.
    rng = np.random.default_rng(0)
    y = np.array([-1.5, 0.0, 0.7, 2.5])
    draws = rng.standard_normal((20000, 1)) * np.ones((1, 4))
    exact = y * (2 * scipy.stats.norm.cdf(y) - 1) + 2 * scipy.stats.norm.pdf(y) - 1 / np.sqrt(np.pi)
    assert np.allclose(crps_sample(draws, y), exact, atol=0.01)
    # A point mass at y scores 0; CRPS reduces to |x - y| for a single draw.
    assert np.allclose(crps_sample(np.full((5, 1), 2.0), np.array([2.0])), 0.0)
    assert np.allclose(crps_sample(np.array([[1.0]]), np.array([3.0])), 2.0)


@pytest.fixture(scope="module")
def largest_out(grid_data):
    return validate(
        "hoffmann2022", grid_data, "largest", by="N", holdout=1, methods=("bayes", "baseline"), fit_kwargs=TINY,
        baseline_kwargs=dict(grid_size=2, num_bootstrap=20, bootstrap_starts=1), rng_key=0,
    )


def test_leave_largest_out_bayes_and_baseline_in_one_table(largest_out, tmp_path):
    table = largest_out
    assert list(table["method"]) == ["bayes", "baseline"]
    assert set(table.columns) >= {"fold", "held_out", "n_train", "n_test", "extrapolation", "abs_rel_err", "lpd",
                                  "crps", "cover50", "cover90", "cover90_law", "width90"}
    assert (table["n_test"] == 6).all() and (table["n_train"] == 30).all()
    assert np.allclose(table["extrapolation"], 0.4)  # 6 sizes log-spaced over 2 decades: 0.4 decades apart
    # The law is right and the noise is 0.5%: both methods predict the held-out losses to well under 2%.
    assert (table["abs_rel_err"] < 0.02).all()
    # With 0.5% log-noise the predictive density of a loss near 2.5 is ~ 1/(0.005·2.5·sqrt(2π)) ≈ 32, log ≈ 3.5;
    # a score above 1 means the predictive is sharp and centred on the held-out points.
    assert (table["lpd"] > 1).all()
    # The Bayesian predictive should cover most of 6 held-out points at 90% (0.5 leaves room for a 2-3 point miss).
    assert table.loc[table["method"] == "bayes", "cover90"].item() >= 0.5
    fig = plot_validation(table, path=tmp_path / "validation.png")
    assert (tmp_path / "validation.png").stat().st_size > 1000 and len(fig.axes) == 1
    points = table.attrs["points"]
    assert len(points) == 12 and {"median", "q05", "q95", "crps", "lpd"} <= set(points.columns)


def test_plot_validation_needs_the_points():
    with pytest.raises(ValueError, match=r"table has no per-point predictions"):
        plot_validation(pd.DataFrame({"fold": ["x"]}))


def test_cli_validate_prints_the_table(tmp_path, capsys):
    from bayescale.cli import main

    truth = dict(N_c=8.8e13, alpha_N=0.076)
    simulate_table("kaplan2020_n", truth, sigma=0.01, seed=2).to_csv(tmp_path / "runs.csv", index=False)
    rc = main(["validate", str(tmp_path / "runs.csv"), "--law", "kaplan2020_n", "--split", "rollout", "--max-folds", "1",
               "--chains", "1", "--warmup", "150", "--samples", "150", "--out", str(tmp_path / "v.png")])
    out = capsys.readouterr().out
    assert rc == 0 and "cover90" in out and "from the 35 smallest" in out and (tmp_path / "v.png").is_file()
    rc = main(["validate", str(tmp_path / "runs.csv"), "--law", "kaplan2020_n", "--by", "D"])
    assert rc == 2 and "by 'D': must be one of ['N']" in capsys.readouterr().err
