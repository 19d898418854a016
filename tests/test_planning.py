"""Compute planning under the posterior: plan, near-optimal region, regret, targets, comparison,
extrapolation warnings. Most tests read the session's Chinchilla golden fit (no refit)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.cli import main
from bayescale.planning.design import rank_next_experiments
from bayescale.results.extrapolation import ExtrapolationWarning, extrapolation
from bayescale.planning.optimum import (
    budget_for_target,
    compare_fits,
    format_plan,
    loss_at,
    near_optimal_region,
    plan,
    prob_below,
)

C_CHINCHILLA = 5.76e23  # Chinchilla's training compute (Hoffmann et al. 2022, Sec. 4)
BESIROGLU_N, BESIROGLU_D = 7.22e10, 1.33e12  # Besiroglu et al. 2024's compute-optimal point at that budget (LAWS.md)


@pytest.fixture(scope="module")
def small(chinchilla_fit):
    """The first 100 draws of each chain (400 draws): enough for consistency checks, 10x faster."""
    return chinchilla_fit.isel(draw=slice(0, 100))


def test_plan_chinchilla_contains_besiroglu_point(chinchilla_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)  # 0.64 decades beyond the data: below the threshold
        tree = plan(chinchilla_fit, C_CHINCHILLA, target=1.96, at={"N": 7e10, "D": 1.4e12})
    opt = tree["optimum"].to_dataset().sel(compute=C_CHINCHILLA)
    n_lo, n_hi = np.quantile(opt["N_opt"].values, [0.05, 0.95])
    d_lo, d_hi = np.quantile(opt["D_opt"].values, [0.05, 0.95])
    assert n_lo < BESIROGLU_N < n_hi and d_lo < BESIROGLU_D < d_hi
    # Hoffmann et al.'s own constants give N* = 3.22e10 (LAWS.md): far outside
    assert 3.22e10 < n_lo
    # the plan records how far it extrapolates: the largest Chinchilla run has 1.6e10 parameters, 3.2e11 tokens
    assert 0.5 < float(opt["extrapolation_N"]) < 0.8 and 0.5 < float(opt["extrapolation_D"]) < 0.8
    # near-optimal region: the optimum is flat, so a wide N range is within 0.01 nats with probability >= 0.9
    near = tree["near_optimal"].to_dataset().sel(compute=C_CHINCHILLA)
    lo90, hi90 = float(near["N_low"].sel(level=0.9)), float(near["N_high"].sel(level=0.9))
    assert lo90 < n_lo and n_hi < hi90 and hi90 / lo90 > 2
    # the proposed run (Chinchilla itself) is nearly optimal: regret well below 0.01 nats in 90% of draws
    prop = tree["proposal"].to_dataset()
    assert np.quantile(prop["regret"].values, 0.95) < 0.01
    assert (prop["regret"].values >= -1e-9).all()  # never better than the optimum (up to solver tolerance)
    text = format_plan(tree)
    for needle in ("N*", "near-optimal N", "regret (FLOP)", "P(L* < 1.96)", "extrapolation N"):
        assert needle in text


def test_loss_at_regret_and_compute_equivalent(small):
    n_star = float(np.median(bs.compute_optimal(small, C_CHINCHILLA)["N_opt"].values))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        at = loss_at(small, [n_star, n_star / 10], [C_CHINCHILLA / (6 * n_star), 10 * C_CHINCHILLA / (6 * n_star)])
    eff = at["compute_efficiency"].values
    assert np.median(eff[..., 0]) > 0.99 and np.median(eff[..., 1]) < 0.5
    # C' inverts the frontier: L*(C') equals the run's loss per draw (bisection to 1e-12 nats; Newton-refined minima)
    c_prime = at["compute_equivalent"].values[0, :20, 1]
    sub = small.isel(chain=slice(0, 1), draw=slice(0, 20))
    frontier = bs.compute_optimal(sub, c_prime)["loss_opt"].values.reshape(20, 20).diagonal()
    np.testing.assert_allclose(frontier, at["loss"].values[0, :20, 1], rtol=1e-9)
    expected = (at["compute"] - at["compute_equivalent"]).transpose(*at["regret_flops"].dims)
    np.testing.assert_allclose(at["regret_flops"], expected)


def test_budget_for_target_is_the_prob_quantile(small):
    target = 1.97
    bt = budget_for_target(small, target, prob=0.9)
    budget = float(bt["budget"])
    reached = bs.compute_optimal(small, [budget, 0.98 * budget])["loss_opt"].values.reshape(-1, 2)
    assert np.mean(reached[:, 0] <= target * (1 + 1e-9)) >= 0.9  # 1e-9: the bisection's tolerance in log-loss
    assert np.mean(reached[:, 1] < target) < 0.9
    assert float(budget_for_target(small, 1.5)["budget"]) == np.inf  # below every draw's E (1.78-1.83)
    with pytest.raises(ValueError, match="target loss must be positive and finite"):
        budget_for_target(small, -1.0)
    with pytest.raises(ValueError, match=r"prob must be in \(0, 1\)"):
        budget_for_target(small, 2.0, prob=1.5)
    p = prob_below(small, 1.97, N=7e10, D=1.4e12)
    assert 0.2 < float(p[0]) < 0.8  # the law's median there is 1.968


def test_near_optimal_region_contains_the_optimum(small):
    reg = near_optimal_region(small, 1e22, epsilon=0.005)
    assert reg["prob_near"].max() == 1.0 and reg["prob_near"][0] < 0.01 and reg["prob_near"][-1] < 0.01
    with pytest.raises(ValueError, match="epsilon must be a positive loss difference"):
        near_optimal_region(small, 1e22, epsilon=0.0)
    with pytest.raises(ValueError, match="near_optimal_region takes one budget"):
        near_optimal_region(small, [1e22, 1e23])


def _shift_e(result, delta):
    """A copy of a fit whose every draw has E shifted by ``delta`` (a recipe that is uniformly better or worse)."""
    other = result.copy(deep=True)
    other["posterior"]["E"] = other["posterior"]["E"] + delta
    return other


def test_compare_fits(small):
    same = compare_fits(small, small, C_CHINCHILLA)
    # independent pairing of two copies of one posterior: P = 0.5 up to Monte Carlo error (sd 0.025 at 400 pairs)
    assert abs(float(same["prob_b_better"][0]) - 0.5) < 0.1
    assert 0.8 < float(same["compute_multiplier"].median()) < 1.25
    # B = A with E lower by 0.05 nats; draws are paired independently, so P(B better) = P(L*_A' - L*_A < 0.05) with
    # two independent draws of L* (posterior sd of L* at 5.76e23 is 0.008): about 1
    better = compare_fits(small, _shift_e(small, -0.05), [1e21, C_CHINCHILLA])
    assert (better["prob_b_better"] > 0.99).all()
    mult = better["compute_multiplier"].median("pair").values
    assert (mult > 1).all() and mult[1] > mult[0]  # a fixed loss gain is worth more compute where L* is flatter
    worse = compare_fits(small, _shift_e(small, 0.05), C_CHINCHILLA)
    assert float(worse["prob_b_better"][0]) < 0.05 and float(worse["compute_multiplier"].median()) < 1


def test_rank_next_experiments_prefers_informative_runs(small):
    target = {"N": 7e10, "D": 1.4e12}
    cands = pd.DataFrame({"N": [7e10, 1e9, 3e8], "D": [1.4e12, 2e10, 6e9], "cost": [1.0, 1.0, 1.0]})
    ranked = rank_next_experiments(small, cands, target=target)
    # a run at the target itself pins it down most; a run amid the fitted data adds little
    assert ranked["N"].iloc[0] == 7e10
    top, rest = ranked["relative_reduction"].iloc[0], ranked["relative_reduction"].iloc[1:]
    assert top > 0.2 and (rest < top / 2).all()
    np.testing.assert_allclose(ranked["interval_shrink"], np.sqrt(1 - ranked["relative_reduction"]))
    # distances beyond the data: the largest fitted run has 1.62e10 parameters, 3.2e11 tokens (0.64 decades short)
    far = ranked.set_index("N")
    np.testing.assert_allclose(far.loc[7e10, "extrapolation_N"], np.log10(7e10 / 1.6183e10), atol=1e-3)
    assert far.loc[3e8, "extrapolation_N"] == 0.0
    assert 0.6 < ranked.attrs["target_extrapolation"]["N"] < 0.7
    with pytest.warns(ExtrapolationWarning, match="the target of rank_next_experiments extrapolates"):
        rank_next_experiments(small, cands, target={"N": 3e12, "D": 1.4e12})
    # default cost 6ND, score = variance reduction per FLOP, sorted
    by_flop = rank_next_experiments(small, cands.drop(columns="cost"), target=target)
    np.testing.assert_allclose(by_flop["cost"], 6 * by_flop["N"] * by_flop["D"])
    np.testing.assert_allclose(by_flop["score"], by_flop["variance_reduction"] / by_flop["cost"])
    assert by_flop["score"].is_monotonic_decreasing
    assert rank_next_experiments(small, cands, target=C_CHINCHILLA).attrs["quantity"] == "N_opt"
    with pytest.raises(ValueError, match=r"candidates need columns \['N', 'D'\]"):
        rank_next_experiments(small, pd.DataFrame({"N": [1e9]}), target=target)
    with pytest.raises(ValueError, match="quantity 'N_opt' with target inputs: must be 'loss'"):
        rank_next_experiments(small, cands, target=target, quantity="N_opt")
    with pytest.raises(ValueError, match="cost must be positive"):
        rank_next_experiments(small, cands.assign(cost=0.0), target=target)
    with pytest.raises(ValueError, match="column 'D' must be positive"):
        rank_next_experiments(small, cands.assign(D=-1.0), target=target)
    with pytest.raises(ValueError, match=r"target inputs: missing \['D'\]"):
        rank_next_experiments(small, cands, target={"N": 7e10})
    with pytest.raises(ValueError, match="budget must be positive"):
        rank_next_experiments(small, cands, target=target, budget=0.0)


def test_rank_next_experiments_within_a_budget(small):
    """Four cheap runs amid the data against one run near the target costing the whole budget: the set is chosen
    jointly, within the budget, and its expected shrink is at least that of any single run."""
    target = {"N": 7e10, "D": 1.4e12}
    cands = pd.DataFrame({"N": [3e8, 4e8, 5e8, 6e8, 2e10], "D": [6e9, 7e9, 8e9, 9e9, 4e11],
                          "cost": [1.0, 1.0, 1.0, 1.0, 4.0]})
    ranked = rank_next_experiments(small, cands, target=target, budget=4.0)
    chosen = ranked[ranked["selected"]]
    assert chosen["cost"].sum() <= 4.0 and ranked.attrs["set_cost"] == chosen["cost"].sum()
    assert list(chosen["N"]) == [2e10] and int(chosen["pick"].iloc[0]) == 1
    assert ranked.attrs["set_interval_shrink"] <= ranked["interval_shrink"].min() + 1e-12
    assert ranked.loc[~ranked["selected"], "pick"].isna().all()


def test_cli_next(small, tmp_path, capsys):
    fit = bs.save(small, tmp_path / "fit.nc")
    cands = tmp_path / "candidates.csv"
    pd.DataFrame({"N": [7e10, 1e9], "D": [1.4e12, 2e10]}).to_csv(cands, index=False)
    assert main(["next", str(fit), str(cands), "--target-at", "N=7e10,D=1.4e12"]) == 0
    assert "variance_reduction" in capsys.readouterr().out
    assert main(["next", str(fit), str(cands), "--target-at", "N=7e10,D=1.4e12", "--budget", "1e21"]) == 0
    out = capsys.readouterr().out
    assert "within 1e+21 FLOP train the runs with a 'pick' number (1.2e+20 FLOP)" in out
    assert main(["next", str(fit), str(cands), "--target-at", "N=7e10,D=1.4e12", "--budget", "-1"]) == 2
    assert "budget must be positive" in capsys.readouterr().err


def test_predict_reports_and_warns_extrapolation(small):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        inside = bs.predict(small, N=1e9, D=1e10)
    assert float(inside["extrapolation_N"][0]) == 0.0 and float(inside["extrapolation_D"][0]) == 0.0
    with pytest.warns(ExtrapolationWarning, match=r"N by 2\.\d+ decades; threshold 1\.5"):
        far = bs.predict(small, N=3e12, D=1e11)
    # largest fitted N is 1.62e10: log10(3e12 / 1.62e10) = 2.27
    np.testing.assert_allclose(float(far["extrapolation_N"][0]), np.log10(3e12 / 1.6183e10), atol=1e-3)
    below = extrapolation(small, N=5.7e5)
    np.testing.assert_allclose(below["N"], [np.log10(5.7334e7 / 5.7e5)], atol=1e-3)  # two decades below the smallest
    with pytest.raises(ValueError, match=r"input 'X': must be one of \['N', 'D'\]"):
        extrapolation(small, X=1.0)


def test_cli_plan_compare(small, tmp_path, capsys):
    fit = bs.save(small, tmp_path / "fit.nc")
    assert main(["plan", str(fit), "--compute", "5.76e23", "--epsilon", "0.005", "--target", "1.96",
                 "--at", "N=7e10,D=1.4e12"]) == 0
    out = capsys.readouterr().out
    assert "near-optimal N" in out and "regret (FLOP)" in out and "smallest C with P(L* < 1.96)" in out
    assert "blank near-optimal rows" not in out  # both regions exist at ε = 0.005 on 240 points
    # ε far below the posterior spread of the optimum: no N is near-optimal with P ≥ 0.9, and the blank row is explained
    assert main(["plan", str(fit), "--compute", "5.76e23", "--epsilon", "1e-7"]) == 0
    out = capsys.readouterr().out
    assert "blank near-optimal rows: no N keeps the loss within ε of the optimum with that probability" in out
    better = bs.save(_shift_e(small, -0.05), tmp_path / "better.nc")
    assert main(["compare", str(fit), str(better), "--compute", "5.76e23"]) == 0
    out = capsys.readouterr().out
    assert "P(B beats A) = 1.000" in out and "compute multiplier, all pairs (inf = never): median" in out
    assert main(["plan", str(fit), "--compute", "5.76e23", "--at", "N=7e10"]) == 2
    assert "a proposed run needs exactly N and D" in capsys.readouterr().err


def test_read_outs_reuse_their_compiled_programs(small):
    """Every read-out parses the result's law text into a new Law; law_program keys the compiled read-out programs by
    that text, so a second plan on a result of the same law traces and compiles nothing again. Laws without a text
    (Python functions, a law at its optimum) are keyed by the object: the same object reuses its program, another
    object gets its own."""
    from bayescale.laws.catalogue import law_program
    from bayescale.results.io import law_of

    bs.compute_optimal(small, [1e21, 1e22])
    first, second = law_of(small), law_of(small)
    assert first is not second
    solver = law_program(first, "compute_optimal", lambda: pytest.fail("compute_optimal's solver was not kept"))
    assert law_program(second, "compute_optimal", lambda: pytest.fail("built again")) is solver
    function_law = bs.Law.from_function(lambda p, N, D: p["E"] + 0.0 * N * D, id="flat", inputs=["N", "D"],
                                        priors={"E": "Uniform(0, 3)"})
    built = []
    for _ in range(2):
        law_program(function_law, "test_probe", lambda: built.append(1) or (lambda: None))
    assert built == [1]
    other = bs.Law.from_function(lambda p, N, D: p["E"] + 0.0 * N * D, id="flat", inputs=["N", "D"],
                                 priors={"E": "Uniform(0, 3)"})
    law_program(other, "test_probe", lambda: built.append(1) or (lambda: None))
    assert built == [1, 1]
