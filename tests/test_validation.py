"""Held-out validation: splits, metrics (CRPS, coverage, LPD), the Bayesian fit and the baseline side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import bayescale as bs
from bayescale.validation.holdout import crps_sample, make_splits, plot_validation, validate
from tests.conftest import simulate_table
from tests.quick import QUICK

# Every Bayesian fit of this file runs at QUICK (2 chains x 300 + 300): the fits of one law on one training shape (the
# 30 smallest points: hoffmann2022 in validate and validate_laws, kaplan2020_n in validate_laws and the CLI's rollout)
# then share their compiled programs (tests/quick.py).


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
        "hoffmann2022", grid_data, "largest", by="N", holdout=1, methods=("bayes", "baseline"), fit_kwargs={"sampler": QUICK},
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
    # 6 sizes, 6 seeds each: the one rollout fold fits the 5 smallest sizes (30 runs) and predicts the 6 runs of the
    # largest, the shapes of validate_laws' kaplan2020_n fit and scores below, at the same settings (QUICK), so the two
    # share their compiled programs
    table = pd.concat([simulate_table("kaplan2020_n", truth, sigma=0.01, seed=s, n_sizes=6, n_tokens=1)
                       for s in range(6)], ignore_index=True)
    table.to_csv(tmp_path / "runs.csv", index=False)
    rc = main(["validate", str(tmp_path / "runs.csv"), "--law", "kaplan2020_n", "--split", "rollout", "--max-folds", "1",
               "--chains", "2", "--warmup", "300", "--samples", "300", "--out", str(tmp_path / "v.png")])
    out = capsys.readouterr().out
    assert rc == 0 and "cover90" in out and "from the 5 smallest" in out and (tmp_path / "v.png").is_file()
    rc = main(["validate", str(tmp_path / "runs.csv"), "--law", "kaplan2020_n", "--by", "D"])
    assert rc == 2 and "by 'D': must be one of ['N']" in capsys.readouterr().err


# --- several laws on one split, stacked by extrapolation (validate_laws) ---

def test_stacking_weights_maximise_the_mixture_score():
    from bayescale.validation.holdout import Draws, _mixture

    rng = np.random.default_rng(3)
    # Two models, each better on half the points: the optimum is inside the simplex. A grid over w in steps of 1e-4
    # is an independent check; the objective is concave, so the grid's best and the optimiser's agree to a grid step.
    lpd = np.column_stack([rng.normal(0, 1, 40), rng.normal(0, 1, 40)])
    lpd[:20, 0] += 2.0
    lpd[20:, 1] += 2.0
    w = bs.stacking_weights(lpd)
    grid = np.linspace(0, 1, 10001)
    scores = [np.sum(np.logaddexp(np.log(g + 1e-300) + lpd[:, 0], np.log(1 - g + 1e-300) + lpd[:, 1])) for g in grid]
    assert abs(w[0] - grid[int(np.argmax(scores))]) < 2e-3 and 0.2 < w[0] < 0.8 and np.isclose(w.sum(), 1)
    # A model worse at every point gets no weight, even when every density is far below exp(-745) (a law missing
    # held-out points by ~40 sds): the scores are compared in logs, not as exp(lpd), which would underflow to 0.
    far = np.column_stack([np.full(10, -2000.0), np.full(10, -2003.0)])
    assert bs.stacking_weights(far)[0] > 0.999
    # The mixture's density is exact: log(0.25 e^a + 0.75 e^b); its draws come 1:3 from the two components.
    parts = [Draws(np.zeros(1), np.full((400, 1), v), np.full((400, 1), v), np.full((400, 1), v), np.array([lp]))
             for v, lp in ((1.0, -1.0), (2.0, -3.0))]
    mixed = _mixture(parts, np.array([0.25, 0.75]), np.random.default_rng(0))
    assert np.isclose(mixed.lpd[0], np.log(0.25 * np.exp(-1.0) + 0.75 * np.exp(-3.0)))
    assert (mixed.pred == 1.0).sum() == 100 and (mixed.pred == 2.0).sum() == 300


def test_stacking_weights_errors():
    with pytest.raises(ValueError, match=r"lpd must be a \(points, models\) array with at least one of each, got shape \(5,\)"):
        bs.stacking_weights(np.zeros(5))
    with pytest.raises(ValueError, match=r"lpd must be finite; points \[1\] are not"):
        bs.stacking_weights(np.array([[0.0, 1.0], [-np.inf, 0.0]]))


def test_validate_laws_errors(grid_data):
    with pytest.raises(ValueError, match=r"validate_laws needs at least 2 laws, got \['hoffmann2022'\]"):
        bs.validate_laws(grid_data, ["hoffmann2022"])
    with pytest.raises(ValueError, match=r"law ids must be distinct, got \['hoffmann2022', 'hoffmann2022'\]"):
        bs.validate_laws(grid_data, ["hoffmann2022", "hoffmann2022"])
    with pytest.raises(ValueError, match=r"the laws predict different target kinds"):
        bs.validate_laws(grid_data, ["hoffmann2022", "tao2024_vocab"])
    with pytest.raises(ValueError, match=r"split 'rollout': validate_laws supports only 'largest'"):
        bs.validate_laws(grid_data, ["hoffmann2022", "kaplan2020_n"], "rollout")
    with pytest.raises(ValueError, match=r"the data lack inputs of the laws: \{'ouro2025': \['T_m'\]\}"):
        bs.validate_laws(grid_data, ["hoffmann2022", "ouro2025"])
    with pytest.raises(ValueError, match=r"stack_holdout must be an integer in \[1, 3\] \(distinct N values left after the 2 held out\), got 4"):
        bs.validate_laws(grid_data, ["hoffmann2022", "kaplan2020_n"], holdout=2, stack_holdout=4)


@pytest.fixture(scope="module")
def two_laws(grid_data):
    # The data come from hoffmann2022; kaplan2020_n ignores D, which spans two decades in every size of the grid, so
    # it misses the held-out largest size badly (held-out LPD about -1 against about +2.8 nats per point). hoffmann2022
    # on the 30 smallest points at QUICK and seed 0 is the same fit as largest_out's, whose programs it reuses.
    return bs.validate_laws(grid_data, ["hoffmann2022", "kaplan2020_n"], by="N", holdout=1, stack_holdout=1,
                            fit_kwargs={"sampler": QUICK})


def test_validate_laws_stacks_on_the_law_that_extrapolates(two_laws):
    out, table = two_laws, two_laws.table
    assert list(table["law"]) == ["hoffmann2022", "kaplan2020_n", "stack", "stack_loo"]
    assert list(table["rank"].iloc[:2]) == [1, 2]
    split = table.attrs["split"]
    # nested: weights from N = 2e9 (the next-largest size), scores on N = 5e9, which the weights never saw
    assert split["held_out"].startswith("N >= 5e+09") and split["stack_fold"].startswith("N >= 2e+09")
    assert split["n_stack_test"] == 6 and (table["n_test"] == 6).all() and (table["n_train"] == 30).all()
    # All weight on the true law. Were the stack's weights uniform (stacking broken), its LPD would sit log 2 = 0.69
    # below the true law's; a stack that weights the true law ~1 matches it to 1e-3.
    assert out.weights["hoffmann2022"] > 0.99 and out.weights_loo["hoffmann2022"] > 0.99
    lpd = table.set_index("law")["lpd"]
    assert abs(lpd["stack"] - lpd["hoffmann2022"]) < 1e-3 and lpd["stack"] > lpd["kaplan2020_n"] + 2
    assert table.set_index("law").loc["stack", "r2"] > 0.95
    assert set(out.points["law"]) == {"hoffmann2022", "kaplan2020_n", "stack", "stack_loo"}
    band = out.predict(N=1e10, D=1e11)
    assert set(band["model"].values) == {"hoffmann2022"} and np.isfinite(band["loss"].values).all()


def test_cli_validate_several_laws(two_laws, grid_data, tmp_path, capsys, monkeypatch):
    from bayescale.cli import main

    # The CLI's part: reading the table, passing the flags on, printing and writing the result. validate_laws itself
    # runs above (two_laws) on these data at these settings; a stand-in checks what the CLI hands it, down to the
    # data's values, and returns that result, so the table printed is a real one, without fitting four laws again.
    calls = []

    def stand_in(data, laws, split="largest", **kwargs):
        calls.append((data, [law.id for law in laws], split, kwargs))
        return two_laws

    monkeypatch.setattr(bs, "validate_laws", stand_in)
    simulate_table("hoffmann2022", dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32), sigma=0.005,
                   seed=7).to_csv(tmp_path / "runs.csv", index=False)
    args = ["validate", str(tmp_path / "runs.csv"), "--law", "hoffmann2022", "--law", "kaplan2020_n"]
    rc = main(args + ["--chains", "2", "--warmup", "300", "--samples", "300", "--csv", str(tmp_path / "t.csv")])
    out = capsys.readouterr().out
    assert rc == 0 and "stacking weights fitted on N >= 2e+09" in out and "stack_loo" in out
    assert pd.read_csv(tmp_path / "t.csv")["law"].iloc[0] == "hoffmann2022"
    ((data, laws, split, kwargs),) = calls
    assert laws == ["hoffmann2022", "kaplan2020_n"] and split == "largest"
    for name in ("N", "D", "loss"):  # the CSV's values, read back exactly
        np.testing.assert_array_equal(data[name].values, grid_data[name].values)
    assert kwargs["fit_kwargs"] == {"sampler": QUICK, "noise": "auto"}  # the flags became the fixture's settings
    assert (kwargs["by"], kwargs["holdout"], kwargs["stack_holdout"], kwargs["rng_key"]) == (None, 1, 1, 0)
    rc = main(args + ["--baseline"])
    assert rc == 2 and "--baseline and --out take one --law" in capsys.readouterr().err
