"""Model comparison: PSIS-LOO grouped by run, stacking weights across laws, predictions averaged over laws."""

from __future__ import annotations

import numpy as np
import pytest

import bayescale as bs
from bayescale.comparison import compare_laws, log_likelihood_by_run, loo, predict_averaged
from tests.conftest import simulate_table

TINY = dict(num_chains=2, num_warmup=300, num_samples=300, rng_key=0)


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
