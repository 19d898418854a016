"""Model comparison: PSIS-LOO grouped by run, stacking weights across laws, predictions averaged over laws."""

from __future__ import annotations

import numpy as np
import pytest

import bayescale as bs
from bayescale.validation.comparison import compare_laws, log_likelihood_by_run, loo, predict_averaged
from tests.conftest import simulate_table

#: Independent checkpoints (noise "iid"): these tests read the comparison's mechanics (grouping by run, LOO, stacking,
#: averaging), which do not depend on the noise model; the curve model's conditionals compared by LOO over runs are
#: tested in tests/test_noise.py (test_noise_models_are_compared_by_loo_over_runs). The default for these curves,
#: "run+ou", made the two fits cost 25 s instead of 16.
TINY = dict(num_chains=2, num_warmup=300, num_samples=300, rng_key=0, noise="iid")


@pytest.fixture(scope="module")
def fits():
    # 6 runs (one per model size), each logged at 6 token counts: checkpoints of one run share the run id.
    truth = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)
    df = simulate_table("hoffmann2022", truth, sigma=0.005, seed=11)
    df["run"] = [f"N{n:.2g}" for n in df["N"]]
    ds = bs.load_runs(df)
    # kaplan2020_nd has no irreducible loss: on data with E = 1.8 it cannot bend, so LOO must prefer hoffmann2022.
    return {
        "hoffmann2022": bs.fit("hoffmann2022", ds, **TINY),
        "kaplan2020_nd": bs.fit("kaplan2020_nd", ds, **TINY),
    }


def test_log_likelihood_is_summed_over_each_run(fits):
    result = fits["hoffmann2022"]
    grouped = log_likelihood_by_run(result)["log_likelihood"]["loss"]
    assert dict(grouped.sizes) == {"chain": 2, "draw": 300, "run": 6}
    total = result["log_likelihood"]["loss"].sum("point")
    assert np.allclose(grouped.sum("run").values, total.values)
    by_run, by_point = loo(result, group="run"), loo(result, group="point")
    assert by_run.elpd_i.sizes["run"] == 6 and by_point.elpd_i.sizes["point"] == 36
    # Leaving a whole run out moves the posterior more than leaving one checkpoint out: the importance weights are
    # heavier-tailed (larger Pareto k). (The elpd estimates themselves differ by less than their PSIS error here.)
    assert float(by_run.pareto_k.max()) > float(by_point.pareto_k.max())


def test_stacking_prefers_the_true_law_and_averages_predictions(fits):
    table = compare_laws(fits)
    assert table.index[0] == "hoffmann2022"
    # Stacking puts (nearly) all weight on a model that dominates pointwise; 0.9 leaves room for optimiser slack.
    assert table.loc["hoffmann2022", "weight"] > 0.9
    assert np.isclose(table["weight"].sum(), 1.0)
    averaged = predict_averaged(fits, table, N=[1e8, 1e9], D=1e10, num_draws=400)
    assert averaged["loss"].shape == (1, 400, 2)
    share = np.mean(averaged["model"].values == "hoffmann2022")
    assert abs(share - table.loc["hoffmann2022", "weight"]) <= 1 / 400 + 1e-12
    # Equal weights: half the draws from each law, and the mixture's spread covers both laws' medians.
    half = predict_averaged(fits, {"hoffmann2022": 1, "kaplan2020_nd": 1}, N=1e9, D=1e10, num_draws=200)
    assert np.sum(half["model"].values == "kaplan2020_nd") == 100


def test_comparison_errors_name_the_problem(fits):
    with pytest.raises(ValueError, match=r"group 'seed': must be one of \['run', 'point'\]"):
        loo(fits["hoffmann2022"], group="seed")
    with pytest.raises(ValueError, match=r"compare_laws needs at least 2 fits, got 1"):
        compare_laws({"a": fits["hoffmann2022"]})
    with pytest.raises(ValueError, match=r"method 'bic': must be one of \['stacking', 'BB-pseudo-BMA', 'pseudo-BMA'\]"):
        compare_laws(fits, method="bic")
    with pytest.raises(ValueError, match=r"weights must name exactly the fits .*missing \['kaplan2020_nd'\]"):
        predict_averaged(fits, {"hoffmann2022": 1.0}, N=1e9, D=1e10)
    with pytest.raises(ValueError, match=r"weights must be non-negative with a positive sum"):
        predict_averaged(fits, {"hoffmann2022": -1.0, "kaplan2020_nd": 0.0}, N=1e9, D=1e10)
    other = fits["hoffmann2022"].copy()
    other.attrs["data_hash"] = "different"
    with pytest.raises(ValueError, match=r"the fits were made on different data"):
        compare_laws({"a": fits["hoffmann2022"], "b": other})
    bare = fits["hoffmann2022"].copy()
    del bare["log_likelihood"]
    with pytest.raises(ValueError, match=r"loo needs the result's 'log_likelihood' group, which this 'law' result "
                                         r"does not have; refit with"):
        loo(bare)


# ---------------------------------------------------------------------------------------------------------------------
# compare_fits (bayescale.planning.optimum): two fits of (N, D) at a budget. These read the session's Chinchilla golden fit.

import warnings  # noqa: E402

import xarray as xr  # noqa: E402

from bayescale.cli import main  # noqa: E402
from bayescale.results.extrapolation import ExtrapolationWarning  # noqa: E402
from bayescale.planning.optimum import compare_fits, comparison_summary, format_comparison  # noqa: E402


@pytest.fixture(scope="module")
def small(chinchilla_fit):
    """The first 50 draws of each chain (200 draws): the comparison's logic, not its Monte Carlo precision."""
    return chinchilla_fit.isel(draw=slice(0, 50))


def _scaled(result, **changes):
    """A copy of a fit with posterior draws shifted (``E=+0.1``) or multiplied (``A=("*", 2)``)."""
    other = result.copy(deep=True)
    for name, change in changes.items():
        if isinstance(change, tuple):
            other["posterior"][name] = other["posterior"][name] * change[1]
        else:
            other["posterior"][name] = other["posterior"][name] + change
    return other


def test_infinite_multipliers_are_a_probability_not_nan(small):
    # B's floor E is 0.3 nats below A's: at 1e24 FLOP B's optimal loss (~1.6) is below A's floor (~1.8) in every pair,
    # so A never gets there. The old quantiles printed `nan [x, nan]`; now the share is a probability and the
    # quantiles keep +inf as +inf.
    cmp = compare_fits(small, _scaled(small, E=-0.3), [1e20, 1e24], check_scale=False)
    table = comparison_summary(cmp).set_index("compute")
    assert table.loc[1e24, "prob_a_never"] == 1.0 and table.loc[1e24, "prob_b_better"] == 1.0
    assert np.isinf(table.loc[1e24, ["low", "median", "high"]].astype(float)).all()
    assert np.isnan(table.loc[1e24, "finite_median"])  # no finite part: said, not computed from inf
    # At 1e20 (inside the data) A reaches B's loss in every pair: finite multipliers, no inf
    assert table.loc[1e20, "prob_a_never"] == 0.0 and 1 < table.loc[1e20, "median"] < np.inf
    text = format_comparison(cmp)
    assert "P(B reaches a loss A never reaches) = 1.000" in text and "nan" not in text
    assert "A never gets there in any pair" in text


def test_partly_infinite_multipliers(small):
    # A smaller shift: some pairs finite, some infinite. Quantiles over all valid pairs agree with sorting (inf last),
    # and the finite part's quantiles are finite.
    cmp = compare_fits(small, _scaled(small, E=-0.17), [5.76e23], check_scale=False)
    row = comparison_summary(cmp, prob=0.9).iloc[0]
    m = np.sort(cmp["compute_multiplier"].values[:, 0])
    assert 0 < row["prob_a_never"] < 1, row
    assert row["prob_a_never"] == pytest.approx(np.mean(np.isinf(m)))
    assert row["median"] == m[int(np.ceil(0.5 * m.size)) - 1]  # the inverted-CDF median, inf or not
    assert np.isfinite([row["finite_low"], row["finite_median"], row["finite_high"]]).all()
    assert "of pairs where A gets there: median" in format_comparison(cmp)


def test_nan_optima_are_left_out_not_counted_as_a_win(small):
    # 40 of B's 200 draws (20 in each of 2 of the 4 chains) with beta ~ 0: the data term never falls, so those draws have no interior optimum (NaN).
    # Before, a NaN optimum counted as "A wins"; now those pairs are left out of P and the quantiles, and said so.
    broken = small.copy(deep=True)
    beta = broken["posterior"]["beta"].values.copy()
    beta[:2, :20] = 1e-9
    broken["posterior"]["beta"] = xr.DataArray(beta, dims=("chain", "draw"))
    with pytest.warns(UserWarning, match=r"pairs have no interior optimum in A or B and are left out"):
        cmp = compare_fits(small, broken, 5.76e23, check_scale=False)
    n_valid = int(cmp["n_valid"][0])
    assert n_valid == 200 - 40
    valid = cmp["valid"].values[:, 0]
    assert np.isnan(cmp["compute_multiplier"].values[~valid, 0]).all()
    assert not cmp["b_better"].values[~valid, 0].any()
    expected = np.mean(cmp["loss_opt_b"].values[valid, 0] < cmp["loss_opt_a"].values[valid, 0])
    assert float(cmp["prob_b_better"][0]) == pytest.approx(expected)
    assert "40 of 200 pairs without an interior optimum are left out" in format_comparison(cmp)


def test_losses_on_different_scales_are_refused(small):
    # The same fit in bits/token: every loss 1/ln 2 = 1.44x larger (E, A and B scale; the exponents do not).
    bits = _scaled(small, E=("*", 1 / np.log(2)), A=("*", 1 / np.log(2)), B=("*", 1 / np.log(2)))
    with pytest.raises(ValueError, match=r"the two fits' losses differ by 1\.44x at N=.* more than 1\.25x: are both in "
                                         r"nats/token on the same evaluation data and tokenizer\?"):
        compare_fits(small, bits, 1e22)
    assert compare_fits(small, bits, 1e22, check_scale=False).attrs["scale_check"] == {}
    # A recipe 5% worse everywhere passes the check, which records what it compared
    worse = compare_fits(small, _scaled(small, E=0.09), 1e22)
    # (+0.09 nats at the centre of the data, where the law's loss is ~2.6: a ratio of ~1.035)
    assert 1.02 < worse.attrs["scale_check"]["ratio"] < 1.05
    other = small.copy()
    other.attrs["evaluation"] = "OpenWebText2 validation"
    same = small.copy()
    same.attrs["evaluation"] = "RefinedWeb validation"
    with pytest.raises(ValueError, match=r"fit A's losses are on evaluation 'RefinedWeb validation' and fit B's on "
                                         r"'OpenWebText2 validation'"):
        compare_fits(same, other, 1e22)


def test_extrapolation_and_snapshot_warnings(small, tmp_path, capsys):
    # Chinchilla's largest run by compute has C = 6ND = 1.3e22: 1e25 FLOP is 2.9 decades beyond it.
    const = small["constant_data"].to_dataset()
    c_max = float((6 * const["N"] * const["D"]).max())
    with pytest.warns(ExtrapolationWarning, match=r"compare_fits: fit A's optimum extrapolates"):
        cmp = compare_fits(small, small, [1e22, 1e25])
    assert float(cmp["extrapolation_a_C"].sel(compute=1e25)) == pytest.approx(np.log10(1e25 / c_max), abs=1e-9)
    assert float(cmp["extrapolation_b_C"].sel(compute=1e22)) == 0.0
    assert any(f"budget C lies {np.log10(1e25 / c_max):.2f}" in w for w in cmp.attrs["warnings"])
    # The same points labelled as checkpoints of 24 runs, fitted with iid noise: intervals too narrow, said so.
    snap = small.copy(deep=True)
    const = snap["constant_data"].to_dataset()
    snap["constant_data"] = xr.DataTree(const.assign_coords(run=("point", np.arange(const.sizes["point"]) % 24)))
    with pytest.warns(UserWarning, match=r"fit B has 240 points from 24 runs but noise 'iid'"):
        compare_fits(small, snap, 1e22)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for two fits of independent points inside their data
        compare_fits(small, small, 1e22)
    # The CLI prints the same, warnings included, with finite numbers
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    bs.save(small, a)
    bs.save(_scaled(small, E=-0.02), b)
    assert main(["compare", str(a), str(b), "--compute", "1e25"]) == 0
    printed = capsys.readouterr()
    out = printed.out
    assert "P(B beats A) = " in out and "beyond the data (decades): A: C 2.89" in out
    assert "warning: fit A's budget C lies 2.89 decades beyond its data" in out and "nan" not in out
    # each extrapolation is said once: not again as the ExtrapolationWarning compare_fits also raises
    assert out.count("fit A's budget C lies 2.89 decades") == 1 and "optimum extrapolates" not in printed.err
