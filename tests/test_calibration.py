"""Simulation-based calibration: the positive control passes; every negative control fails, and the power is stated.

The full study (every law and noise model in models/, as many simulations as a 90% power against a 30% too-narrow
posterior needs) is `benchmarks/sbc.py` and the slow tests below (`make test-slow`); this file's fast versions use
kaplan2020_n (4 sampled parameters, the quickest law to fit) and small designs.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayescale as bs
from bayescale.validation.calibration import (
    MAX_CONTRACTION,
    MAX_DIVERGENT_SHARE,
    MIN_ESS_SHARE,
    check_calibration,
    check_calibration_fit,
    default_design,
    format_verdict,
    sbc_power,
    simulations_for_power,
    verdict_trusted,
)

# 4 bins, thin=1 with 150 draws: autocorrelation makes ranks slightly over-dispersed, which 16-32 simulations cannot
# detect (the benchmark thins by 2). A calibrated fit passes the chi-square test at the Bonferroni level 0.01/4 with
# probability 0.99; seeds are fixed, so the outcome is deterministic, and the tolerance guards against a seed that
# happens to sit in the 1% tail when numerics change.
FAST = dict(num_warmup=150, num_samples=150, thin=1, num_bins=4)
# The batched studies that fit (positive, narrow, law, sigma) all have this size, the narrow control's (its power needs
# 32), on the default design at FAST: a batch compiles one program per (simulations, design, sampler settings), and
# the simulated data are its arguments, so the four share one program. The loop fits one table at a time: 16.
STUDY = 32


@pytest.mark.parametrize("batched, sims", [(True, STUDY), (False, 16)], ids=["fit_batch", "loop"])
def test_positive_control_passes(batched, sims):
    table = check_calibration("kaplan2020_n", num_simulations=sims, rng_key=0, batched=batched, **FAST)
    assert table.attrs["settings"]["batched"] is batched
    # the sampler settings are one bs.NUTS value (calibration.SBC_SAMPLER with the keywords on top), recorded whole
    recorded = table.attrs["settings"]["sampler"]
    assert (recorded["num_warmup"], recorded["num_samples"], recorded["num_chains"], recorded["init"]) == (150, 150, 1,
                                                                                                         "median")
    assert recorded["target_accept_prob"] == 0.9 and recorded["dense_mass"] is True
    assert list(table.index) == ["N_c", "alpha_N", "sigma", "nu"]
    assert table.attrs["passes"], table
    ranks = table.attrs["ranks"]
    assert ranks.shape == (sims, 4) and ranks.min() >= 0 and ranks.max() <= 150
    # Normalised mean ranks of a calibrated fit are 0.5 ± 0.29/sqrt(16) = ±0.07 (±0.05 at 32); 0.25 is > 3 SE.
    assert np.all(np.abs(table["mean_rank"] - 0.5) < 0.25)
    # The data inform the law's parameters and sigma: measured 0.09-0.22 (thresholds in bayescale.validation.calibration).
    assert np.all(table.loc[["N_c", "alpha_N", "sigma"], "contraction"] < 0.5)
    assert set(table.attrs["power"]) == {"narrow_30", "wide_30", "shift_0.5"}
    assert f"PASSES ({sims} simulations" in format_verdict(table)
    # the share of divergent draws over every fit's draws (kaplan2020_n's fits hardly diverge) and, above the
    # limit, a verdict that says it is not to be trusted, pass or fail
    share = table.attrs["divergent_share"]
    assert share == table.attrs["divergences"] / (sims * 150) and share <= MAX_DIVERGENT_SHARE
    assert "NOT TRUSTED" not in format_verdict(table)
    # every fit moved: the smallest bulk ESS per draw of each fit (a stalled chain's is near 0.007) is above the limit
    # with room (measured smallest: 0.084 in the loop, 0.17 in the batch; MIN_ESS_SHARE 0.03)
    shares = table.attrs["ess_share"]
    assert shares.shape == (sims, 4) and table.attrs["stalled_share"] == 0.0
    assert shares.min() > 2 * MIN_ESS_SHARE, shares.min(axis=1)
    table.attrs["divergent_share"] = 0.092
    assert format_verdict(table).endswith("NOT TRUSTED: 9.2% of draws divergent (more than 1%): the fits may not have "
                                          "explored; run more warmup")
    table.attrs["divergent_share"], table.attrs["stalled_share"] = share, 0.25
    assert not verdict_trusted(table)
    assert format_verdict(table).endswith("NOT TRUSTED: 25.0% of fits stalled (effective sample size below 3% of the "
                                          "draws; more than 5%): the fits may not have explored; run more warmup")


def test_a_batch_of_new_data_reuses_the_compiled_program():
    # What lets the studies above share one program: fit_batch passes the tables' values to its compiled program as
    # arguments (not constants baked into it), so a batch of new data of the same shapes reads the program from the
    # persistent compilation cache (tests/conftest.py gives the session one), and with the same model, statistics and
    # settings in one process it runs the very program traced before. Tiny settings: mechanics.
    from collections import Counter
    import warnings

    import jax

    events = []

    def listen(name, **_):
        events.append(name)

    N = np.geomspace(1e7, 1e9, 6)

    def batch(seed, statistics):
        rng = np.random.default_rng(seed)
        tables = [dict(N=N, loss=(8.8e13 / N) ** 0.076 * np.exp(0.01 * rng.standard_normal(6))) for _ in range(2)]
        events.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # R-hat of one chain of 10 draws: not what this test reads
            result = bs.fit_batch("kaplan2020_n", tables, num_chains=1, num_warmup=10, num_samples=10,
                                  progress_bar=False, statistics=statistics, rng_key=0)
        return Counter(events), result.posterior["alpha_N"].values

    jax.monitoring.register_event_listener(listen)
    try:
        _, first = batch(0, {"min_loss": 2.0, "max_loss": 4.0})
        same, second = batch(1, {"min_loss": 2.0, "max_loss": 4.0})  # new data, same statistics (as in SBC)
        other, _ = batch(2, {"min_loss": 1.5, "max_loss": 4.5})  # new data and statistics: the model is traced again
    finally:
        jax.monitoring.unregister_event_listener(listen)
    # the same program object: nothing traced, nothing sent to the compiler; and it read the new tables (same seed:
    # a program with the first tables baked in would return the first draws again)
    assert same["/jax/compilation_cache/compile_requests_use_cache"] == 0, same
    assert not np.allclose(first, second)
    # traced again, and the sampler program found in the cache: nothing compiled that the cache should have held
    assert other["/jax/compilation_cache/cache_hits"] >= 1 and other["/jax/compilation_cache/cache_misses"] == 0, other


def test_prior_returning_sampler_fails():
    # Every "posterior" is fresh prior draws: ranks are uniform (a sampler that ignores the data passes the rank test),
    # so only the contraction check can catch it. Its contraction is the IQR of 150 uniforms over 0.5, 1 ± 0.08 per
    # simulation, ~1 ± 0.03 as a median of 16: far above 0.9.
    table = check_calibration("kaplan2020_n", num_simulations=16, misspecify="prior", rng_key=0, **FAST)
    assert table.attrs["uniform"] and table["uniform"].all()
    assert not table.attrs["contracts"] and not table.attrs["passes"]
    assert np.all(table["contraction"] > MAX_CONTRACTION)
    assert table.attrs["mean_contraction"] > 0.95
    assert "FAILS" in format_verdict(table)


def test_narrow_posterior_fails():
    # Fitted draws shrunk 0.25x around their mean. The test's power against that, per parameter at 32 simulations of
    # 150 draws in 4 bins, is 0.80 (sbc_power), so all four parameters pass with probability 0.2^4 < 0.002; it is the
    # rank test, not the contraction check, that must fail here.
    table = check_calibration("kaplan2020_n", num_simulations=STUDY, misspecify="narrow", distortion=0.25, rng_key=0,
                              **FAST)
    assert table.attrs["distortion"] == 0.25
    assert table.attrs["contracts"] and not table.attrs["uniform"] and not table.attrs["passes"]


def test_data_from_another_law_fail():
    # Data from the law with N replaced by N^1.25: the fitted exponent is 1.25x the true one, so alpha_N ranks low and
    # N_c high in every simulation (measured p ~ 1e-3 and 1e-8 at 12 simulations of a 12-point design against a
    # threshold of 0.0025; the 32 simulations of the 36-point design here only add evidence).
    table = check_calibration("kaplan2020_n", num_simulations=STUDY, misspecify="law", rng_key=0, **FAST)
    assert not table.attrs["passes"]
    assert not table.loc["N_c", "uniform"] and table.loc["N_c", "mean_rank"] > 0.8
    assert table.loc["alpha_N", "mean_rank"] < 0.3


def test_wrong_sigma_control_fails():
    # Residuals 3x larger than the drawn sigma: the posterior of sigma sits at ~3 sigma_true, so the true sigma ranks at
    # (or next to) 0 in every simulation. With 32 simulations in 4 bins, all in the first bin gives chi2 = 96 on 3 df,
    # p ~ 1e-20, far below 0.01/4. This control tests sigma only: 3·sigma·t residuals are the model with
    # sigma' = 3 sigma.
    table = check_calibration("kaplan2020_n", num_simulations=STUDY, misspecify="sigma", rng_key=1, **FAST)
    assert not table.attrs["passes"]
    assert not table.loc["sigma", "uniform"] and table.loc["sigma", "mean_rank"] < 0.05


def test_curve_and_hetero_noise_mechanics():
    # Mechanics only (6 simulations detect nothing subtle): the noise parameters of run effects, OU residuals and a
    # loss-level scale (all three in one model, one compilation) are simulated, fitted and ranked, on a curve design of
    # 4 runs (N) x 4 checkpoints (D).
    noise = "run+ou+hetero"
    design = {"N": np.repeat(np.geomspace(5e7, 5e9, 4), 4), "D": np.tile(np.geomspace(1e9, 1e11, 4), 4),
              "run": np.repeat(["a", "b", "c", "d"], 4)}
    table = check_calibration("kaplan2020_nd", num_simulations=6, noise=noise, likelihood="normal", design=design,
                              rng_key=0, num_warmup=100, num_samples=100, thin=1, num_bins=3)
    extra = ["tau", "ell", "kappa"]
    assert list(table.index) == ["N_c", "D_c", "alpha_N", "alpha_D", "sigma", *extra]
    assert table.attrs["noise"] == noise and table.attrs["ranks"].shape == (6, 4 + 1 + len(extra))
    assert table.attrs["passes"], table


def test_power_of_the_rank_test():
    # The audit of issue 18 measured, with 50 simulations, 100 draws, 5 bins and 7 parameters: 2x too narrow flagged
    # 51%, 30% too narrow 6%, shifted by 0.5 sd 30%. 2000 trials give a Monte Carlo SE of at most 0.011; 0.04 is ~4 SE.
    args = dict(n_parameters=7, num_trials=2000)
    assert sbc_power(50, 100, 5, scale=0.5, **args) == pytest.approx(0.51, abs=0.04)
    assert sbc_power(50, 100, 5, scale=0.7, **args) == pytest.approx(0.06, abs=0.03)
    assert sbc_power(50, 100, 5, shift=0.5, **args) == pytest.approx(0.30, abs=0.04)
    assert sbc_power(50, 100, 5, **args) <= 0.01 / 7 + 0.003  # false alarms at the Bonferroni level (3 SE)
    # More simulations, more power; the default slow study's size reaches 90% against 30% too narrow.
    s = simulations_for_power(0.9, n_draws=100, num_bins=10, n_parameters=8)
    assert 150 <= s <= 300 and sbc_power(s, 100, 10, n_parameters=8, scale=0.7) >= 0.9
    assert sbc_power(s - 50, 100, 10, n_parameters=8, scale=0.7) < 0.9
    with pytest.raises(ValueError, match=r"scale must be > 0"):
        sbc_power(10, 100, 5, n_parameters=1, scale=0.0)
    with pytest.raises(ValueError, match=r"needs more than 100 simulations"):
        simulations_for_power(0.99, n_draws=100, num_bins=5, n_parameters=8, maximum=100)


def test_design_and_errors():
    design = default_design(bs.load_law("hoffmann2022"))
    assert design["N"].size == 36 and np.unique(design["D"]).size == 6 and "run" not in design
    curves = default_design(bs.load_law("hoffmann2022"), "run+ou")
    assert np.unique(curves["run"]).size == 6 and np.unique(curves["D"][curves["run"] == "r0"]).size == 6
    assert default_design(bs.load_law("kaplan2020_d"))["D"].size == 36
    with pytest.raises(ValueError, match=r"misspecify 'noise': must be one of \[None, 'prior', 'narrow', 'law', 'sigma'\]"):
        check_calibration("kaplan2020_n", misspecify="noise")
    with pytest.raises(ValueError, match=r"num_simulations must be a positive integer, got 0"):
        check_calibration("kaplan2020_n", num_simulations=0)
    with pytest.raises(ValueError, match=r"num_samples // thin = 2 draws give too few rank values for 5 bins"):
        check_calibration("kaplan2020_n", num_samples=10, thin=5, num_bins=5)
    with pytest.raises(bs.infer.settings.SamplerSettingsError,
                       match=r"check_calibration \(batched: fit_batch\) starts chains with init='median' only"):
        check_calibration("kaplan2020_n", sampler=bs.NUTS(init="map"))
    with pytest.raises(ValueError, match=r"num_chains \* num_samples // thin = 2 draws give too few rank values"):
        check_calibration("kaplan2020_n", num_chains=2, num_samples=2, thin=2, num_bins=5)
    with pytest.raises(ValueError, match=r"noise='auto' depends on the data"):
        check_calibration("kaplan2020_n", noise="auto")
    with pytest.raises(ValueError, match=r"noise 'run\+ou' needs curves along 'D', and law 'kaplan2020_n' has inputs"):
        check_calibration("kaplan2020_n", noise="run+ou")
    with pytest.raises(ValueError, match=r"design lacks \['run'\]"):
        check_calibration("kaplan2020_nd", noise="run+ou", design={"N": [1e8, 1e9], "D": [1e9, 1e10]})


# ------------------------------------------------------------------ declared models, through their own fit functions
#: Kaplan's batch scan at 4 loss levels (the suite's shared critical-batch design, tests/fits.py): the quickest
#: declared model (5 scalar parameters). Each fit through the fit function costs ~2-3 s here (its programs are traced
#: and lowered again for every call), so the real fits are few: the design fit, the probe, 4 simulations.
DECLARED = dict(sampler={"num_warmup": 150, "num_samples": 150, "num_chains": 1, "init": "median",
                         "progress_bar": False}, thin=1)


@pytest.fixture(scope="module")
def batch_study():
    """The positive control through fit_critical_batch itself, with every result it fitted: (verdict table, results in
    call order (design fit, probe, simulations), progress calls, design table)."""
    from bayescale.analyses.kaplan import batchsize as bb
    from tests.fits import data

    steps = bb.steps_to_loss(data("critical_batch"), None, n_levels=4, min_runs=3)
    results, seen = [], []

    def fit(t, **kw):
        results.append(bb.fit_critical_batch(t, **kw))
        return results[-1]

    table = check_calibration_fit(fit, steps, column="S", num_simulations=3, num_bins=2, rng_key=0,
                                  progress=lambda i, n: seen.append((i, n)), **DECLARED)
    return table, results, seen, steps


def test_declared_model_calibration_runs_through_its_fit_function(batch_study):
    # 3 simulated step tables, each refitted by fit_critical_batch: the mechanics (the study with power is
    # benchmarks/sbc_declared.py and the slow test below). A calibrated fit passes at the Bonferroni level 0.01/5 with
    # probability 0.99; the seed is fixed, so the outcome is deterministic.
    table, results, seen, steps = batch_study
    a = table.attrs
    assert (a["law"], a["result_kind"], a["observed"], a["column"]) == (
        "kaplan2020_critical_batch", "critical_batch", "log_S", "S")  # log S observed, found as the log of column S
    assert set(table.index) == {"log_B_ref", "alpha_B", "sigma", "tau", "sigma_S"}  # every scalar with prior draws
    assert len(results) == 2 + 3 and seen == [(i, 3) for i in range(1, 4)]
    design, probe, *sims = results
    # the probe: the first simulated table fitted with the design fit's key, and the same prior draws
    np.testing.assert_array_equal(probe["prior"]["alpha_B"].values, design["prior"]["alpha_B"].values)
    # each simulation fits one prior-predictive draw of the design fit, written back as S = exp(log S)
    draws = design["prior_predictive"]["log_S"].values.reshape(-1, len(steps))
    for r in (probe, *sims):
        y = r["observed_data"]["log_S"].values
        assert np.isclose(draws, y, rtol=0, atol=1e-9).all(axis=1).any() and not np.allclose(y, np.log(steps["S"]))
    assert a["ranks"].shape == (3, 5) and a["ranks"].max() <= 150
    assert a["passes"], format_verdict(table)
    assert a["mean_contraction"] < 0.6  # 56 crossings inform B_crit and the noise: narrower than the prior


def test_declared_model_calibration_controls_and_refusals(batch_study):
    # The checks that need no new fit run on a fit function that returns the design fit again (a stub).
    _, (design, *_), _, steps = batch_study

    def same(t, **kw):
        return design

    # the prior-returning sampler: ranks among other prior draws are uniform, so only contraction catches it
    prior = check_calibration_fit(same, steps, column="S", num_simulations=8, num_bins=2, misspecify="prior",
                                  **DECLARED)
    assert not prior.attrs["passes"] and not prior.attrs["contracts"] and prior.attrs["mean_contraction"] > 0.9
    # a prior that moved with the simulated data: the probe's prior draws differ from the design fit's
    calls = []

    def moving(t, **kw):
        calls.append(t)
        if len(calls) == 1:
            return design
        out = design.copy()
        out["prior"] = design["prior"].to_dataset().assign(sigma=design["prior"]["sigma"] * 2)
        return out

    with pytest.raises(ValueError, match="prior of 'sigma' changed with the simulated 'S'"):
        check_calibration_fit(moving, steps, column="S", num_simulations=2, **DECLARED)
    with pytest.raises(ValueError, match="neither column 'B' of the table nor its log"):
        check_calibration_fit(same, steps, column="B", num_simulations=2, **DECLARED)

    def no_prior(t, **kw):
        out = design.copy()
        del out["prior"]
        return out

    with pytest.raises(ValueError, match="has no 'prior' group"):
        check_calibration_fit(no_prior, steps, column="S", **DECLARED)
    with pytest.raises(ValueError, match="controls that break a law's formula need check_calibration"):
        check_calibration_fit(same, steps, column="S", misspecify="law")
    with pytest.raises(ValueError, match="with column 'loss'"):
        check_calibration_fit(same, steps)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["critical_batch", "per_token", "shape", "multi_power", "annealing"])
def test_sbc_declared_models(model):
    # benchmarks/sbc_declared.py's designs at 200 simulations in 10 bins with 100 kept draws: power against a posterior
    # 30% too narrow in one parameter >= 0.85 (sbc_power, up to 12 parameters). As in test_sbc_every_law_and_noise, a
    # failure must replicate at a second seed (false alarm 0.01^2 per case).
    import runpy

    fit, table, column, kwargs, kernel = runpy.run_path("benchmarks/sbc_declared.py")["design"](model)
    sampler = kernel | {"num_samples": 200, "num_chains": 1, "init": "median", "progress_bar": False}
    verdicts = []
    for seed in (0, 1):
        tab = check_calibration_fit(fit, table, column=column, num_simulations=200, num_bins=10, sampler=sampler,
                                    rng_key=seed, fit_kwargs=kwargs)
        assert tab.attrs["power"]["narrow_30"] >= 0.85 and tab.attrs["contracts"], format_verdict(tab)
        assert verdict_trusted(tab), format_verdict(tab)  # the fits explored: no more divergent or stalled than allowed
        verdicts.append(format_verdict(tab))
        if tab.attrs["passes"]:
            break
    else:
        pytest.fail("fails at two independent seeds:\n" + "\n".join(verdicts))


#: The slow study: every law and noise model at the size that detects a posterior 30% too narrow in one parameter
#: with probability 0.9 (10 bins, 100 kept draws, Bonferroni over up to 8 parameters: 225 simulations), and the
#: negative controls at the sizes where their failure is certain.
# The laws of issue 17 (tests/test_law_catalogue.py) and the per-token law of (T, S) are not in the SBC study yet: its
# default design (a log grid of N, D and [1, 100] for other inputs) does not fit their inputs (mixture shares, a
# negative target, token positions), and each needs its own design. They are covered by simulated recovery only.
from tests.test_law_catalogue import CASES as _NEW_LAWS  # noqa: E402

SBC_LAWS = [law for law in bs.list_laws() if law not in _NEW_LAWS and law != "kaplan2020_per_token_steps"]
SLOW_NOISE = [("student_t", "iid"), ("normal", "iid"), ("student_t", "hetero"), ("normal", "run+ou")]
# Curve noise needs checkpoints along D: laws of one input, or without D, are studied with the other noise models.
SLOW_CASES = [(law, lk, nz) for law in SBC_LAWS for lk, nz in SLOW_NOISE
              if nz != "run+ou" or ("D" in bs.load_law(law).input_names and len(bs.load_law(law).input_names) > 1)]


@pytest.mark.slow
@pytest.mark.parametrize("law,likelihood,noise", SLOW_CASES, ids=[f"{a}-{b}-{c}" for a, b, c in SLOW_CASES])
def test_sbc_every_law_and_noise(law, likelihood, noise):
    # A calibrated fit fails one study in 100 by chance (family-wise alpha 0.01 over its parameters); over the 26 cases
    # here that is a chance failure in ~23% of runs of the whole study (1 - 0.99^26). So a failure must replicate at
    # an independent seed: false alarm 0.01^2 per case (0.3% over 26), power against a posterior 30% too narrow in
    # one parameter 0.9^2 = 0.81 per case (>= 0.85^2 = 0.72 as asserted). docs/validation.md: kaplan2020_n's nu failed
    # at seed 0 (p 0.0011, truths drawn 2.3 SE low for a parameter the data barely inform) and passed at seed 1.
    sims = simulations_for_power(0.9, n_draws=100, num_bins=10, n_parameters=8)
    verdicts = []
    for seed in (0, 1):
        table = check_calibration(law, num_simulations=sims, num_bins=10, likelihood=likelihood, noise=noise,
                                  rng_key=seed)
        assert table.attrs["power"]["narrow_30"] >= 0.85
        assert table.attrs["contracts"], format_verdict(table)  # contraction does not fail by chance at this size
        verdicts.append(format_verdict(table))
        if table.attrs["passes"]:
            break
    else:
        pytest.fail("fails at two independent seeds:\n" + "\n".join(verdicts))


@pytest.mark.slow
@pytest.mark.parametrize("law", SBC_LAWS)
@pytest.mark.parametrize("misspecify", ["prior", "narrow", "law", "sigma"])
def test_sbc_negative_controls_every_law(law, misspecify):
    # 100 simulations for the 0.5x-narrow posterior: per-parameter power 0.95 (sbc_power, 5 bins); 50 for the others,
    # whose failures are gross (contraction ~1; ranks all at one end).
    sims = 100 if misspecify == "narrow" else 50
    assert not check_calibration(law, num_simulations=sims, misspecify=misspecify, rng_key=0).attrs["passes"]


def test_coverage_standard_errors_are_clustered_by_dataset():
    # benchmarks/curve_coverage.py: 20 datasets x 5 parameters whose intervals are covered or missed together (a whole
    # dataset in or out) against the same share with independent misses. The clustered SE of the first is
    # sqrt(0.9·0.1/19) = 0.069 (sd with ddof 1 over 20 datasets), ~sqrt(5)x the binomial 0.030 that treats 100 intervals as independent.
    import runpy

    import pandas as pd

    pooled_coverage = runpy.run_path("benchmarks/curve_coverage.py")["pooled_coverage"]
    together = np.repeat(np.arange(20) >= 2, 5)  # 18 of 20 datasets covered in every parameter
    apart = np.tile(np.arange(5) > 0, 20) | np.repeat(np.arange(20) >= 10, 5)  # 90% covered, spread over datasets
    rows = pd.DataFrame({"rep": np.tile(np.repeat(np.arange(20), 5), 2), "noise": ["together"] * 100 + ["apart"] * 100,
                         "covered": np.r_[together, apart]})
    table = pooled_coverage(rows)
    assert table.loc["together", "coverage"] == pytest.approx(0.9) and table.loc["apart", "coverage"] == pytest.approx(0.9)
    assert table.loc["together", "se_binomial"] == pytest.approx(0.030, abs=0.001)
    assert table.loc["together", "se_clustered"] == pytest.approx(np.sqrt(0.9 * 0.1 / 19), abs=1e-9)
    assert table.loc["apart", "se_clustered"] < table.loc["apart", "se_binomial"]


def test_sbc_benchmark_smoke(tmp_path):
    # benchmarks/sbc.py with tiny settings: only the prior-returning sampler (no fit, so seconds), which must fail and
    # so make the script exit 0; the CSV holds the row with its rank histogram. 16 simulations: its prior draws are the
    # program of the 16-simulation studies of kaplan2020_n above (loop, prior).
    import runpy

    import pandas as pd

    main = runpy.run_path("benchmarks/sbc.py")["main"]
    out = tmp_path / "sbc.csv"
    assert main(["--laws", "kaplan2020_n", "--noise", "student_t:iid", "--controls", "prior", "--no-positive",
                 "--control-simulations", "16", "--bins", "4", "--out", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert (row["control"], row["simulations"], row["verdict"]) == ("prior", 16, "FAILS")
    assert sum(int(c) for c in row["worst_histogram"].split()) == 16
    assert row["stuck"] == 0  # prior draws spread like the prior: no simulation counts as a chain that stopped
    assert row["stalled"] == 0  # independent prior draws: an ESS of every draw, no simulation counts as one that crept
