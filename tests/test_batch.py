"""Batched fits (bayescale.infer.batch.fit_batch): one vectorised NUTS run over many datasets."""

from __future__ import annotations

import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest
from numpyro.infer.util import log_density

import bayescale as bs
from bayescale.infer.batch import _batch_arrays, devices_of, fit_batch, map_pairs, select_fit
from bayescale.infer.fit import data_statistics, log_inputs_of
from bayescale.infer.model import ModelSpec, build_model, resolve_priors
from bayescale.infer.noise import Noise, curve_structure
from bayescale.validation.simulate import simulate_curves

from tests import fits
from tests.conftest import simulate_table
from tests.fits import TRUTH
from tests.quick import QUICK


def _curves(seed: int, sizes: int) -> pd.DataFrame:
    runs = pd.DataFrame([{"run": f"r{k}", "N": n} for k, n in enumerate(np.geomspace(5e7, 5e9, sizes))])
    return simulate_curves("hoffmann2022", TRUTH, runs, np.geomspace(1e9, 1e11, 6 + seed), seed=seed,
                           sigma=0.01, tau=0.005, ell=0.5)


def _jit_log_density(model, args, kwargs, params):
    """numpyro's log density of ``model`` at ``params``, compiled as one program (run eagerly, each of its operations
    compiles a program of its own: hundreds for a curve model)."""
    return jax.jit(lambda a, k, p: log_density(model, a, k, p)[0])(args, kwargs, params)


@pytest.mark.parametrize("spec", ["run+ou+hetero", "run+ou+hetero+latent"])
def test_padded_batch_has_the_unbatched_log_density(spec):
    """Padding (points and runs), masking and per-fit statistics leave each fit's log density exactly as fit's, for
    collapsed run effects (per-run sums in the batch, conditional chain terms in fit) and sampled ones."""
    law = bs.load_law("hoffmann2022")
    noise = Noise.parse(spec)
    dss = [bs.load_runs(_curves(0, 3)), bs.load_runs(_curves(3, 5))]  # 18 and 45 points, 3 and 5 runs
    stats = [data_statistics(ds) for ds in dss]
    assert stats[0]["min_loss"] != stats[1]["min_loss"]
    priors = resolve_priors(law, "student_t", None, noise)
    arrays, n_runs = _batch_arrays(law, dss, noise, stats)
    batched = build_model(ModelSpec(law, priors, stats[1], noise=noise), {"n_runs": n_runs}, batched=True)
    # under "hetero" NUTS samples the log noise scale at the data's centre (sigma__centred): the same value in the
    # padded batch and the single fit only if the batch's centre leaves the padded points out
    params = dict(TRUTH, sigma__centred=np.log(0.01), nu=5.0, tau=0.004, ell=0.7, kappa=0.3,
                  z_run=np.linspace(-1, 1, n_runs))
    for i, (ds, st) in enumerate(zip(dss, stats)):
        runs = np.unique(ds["run"].values).size
        spec = ModelSpec(law, priors, st, noise=noise)
        single = build_model(spec, curve_structure(ds, noise))
        want = _jit_log_density(single, (log_inputs_of(ds, law),), {"loss": ds["loss"].values},
                                dict(params, z_run=params["z_run"][:runs]))
        a = jax.tree_util.tree_map(lambda x: x[i], arrays)
        got = _jit_log_density(batched, (a["log_inputs"], a["loss"], a["per_fit"]), {}, params)
        # the padded run slots add their N(0, 1) prior terms (sampled run effects) and nothing else
        extra = 0.0 if noise.collapses else (-0.5 * np.sum(params["z_run"][runs:] ** 2)
                                             - 0.5 * np.log(2 * np.pi) * (n_runs - runs))
        np.testing.assert_allclose(float(got), float(want) + extra, rtol=1e-12)


@pytest.fixture(scope="module")
def batch(shared_fit):
    return fits.data("batch"), shared_fit("batch")  # tests/fits.py


def test_batch_recovers_each_truth_and_matches_single_fits(batch):
    tables, result = batch
    post = result.posterior
    assert post["alpha"].dims == ("fit", "chain", "draw") and post.sizes["fit"] == 3
    assert result["fit_diagnostics"]["divergences"].values.tolist() == [0, 0, 0]
    assert float(result["fit_diagnostics"]["rhat"].max()) < 1.02
    for name, value in TRUTH.items():  # every fit's 99% interval holds the truth (5 params x 3 fits at 1% each)
        lo, hi = post[name].quantile([0.005, 0.995], dim=("chain", "draw")).values
        assert np.all(lo <= value) and np.all(value <= hi), (name, lo, hi)
    # compared on the posterior only; fit 1 (a 6 x 6 table) with the batch's settings (tests/quick.py QUICK): the
    # programs of the suite's other hoffmann2022 fits of this shape and settings serve it
    single = bs.fit("hoffmann2022", tables[1], rng_key=2, sampler=QUICK, pointwise=False)
    for name in ("E", "alpha", "beta"):
        a, b = post[name].isel(fit=1).values.ravel(), single.posterior[name].values.ravel()
        # same posterior, independent chains: means agree within 4 Monte Carlo SEs of the difference (ESS >= 100 each)
        se = np.sqrt(a.var() / 100 + b.var() / 100)
        assert abs(a.mean() - b.mean()) < 4 * se, name
        assert 0.7 < a.std() / b.std() < 1.4, name  # spreads agree within the sampling error of 600-draw SDs


def test_select_fit_serves_posterior_readers(batch):
    """One fit of a batch reads like a result of bs.fit for what needs the posterior alone: its data statistics,
    noise parameters and law travel with it, so planning and the next-run ranking work on it."""
    tables, result = batch
    one = select_fit(result, 1)
    assert one.posterior["alpha"].dims == ("chain", "draw")
    np.testing.assert_array_equal(one.posterior["alpha"].values, result.posterior["alpha"].isel(fit=1).values)
    assert json.loads(one.attrs["data_statistics"]) == json.loads(result.attrs["data_statistics"])[1]
    assert one.attrs["n_points"] == len(tables[1]) and "sigma" in json.loads(one.attrs["noise_parameters"])
    opt = bs.compute_optimal(one, 1e21)
    assert np.isfinite(opt["N_opt"]).all()
    ranked = bs.rank_next_experiments(one, {"N": [1e9, 2e10], "D": [2e10, 4e11]}, target={"N": 7e10, "D": 1.4e12})
    by_n = ranked.set_index("N")["relative_reduction"]
    assert by_n[2e10] > by_n[1e9]  # the run nearer the target tells more about it
    with pytest.raises(IndexError, match="fit 3 of a batch of 3"):
        select_fit(result, 3)


def test_chees_batch_matches_nuts_and_keeps_each_fits_chains_in_lockstep(batch):
    """kernel="chees": the same posterior as the NUTS batch, every chain of a fit taking the same number of leapfrog
    steps at each draw (what lets a vectorised batch stop waiting for its deepest NUTS tree), and the record."""
    tables, nuts = batch
    result = fit_batch("hoffmann2022", tables, rng_key=1, num_chains=4, num_warmup=300, num_samples=300,
                       kernel="chees")
    sampler = json.loads(result.attrs["sampler"])
    assert sampler["algorithm"] == "ChEES-HMC" and sampler["kernel"] == "chees"
    assert "mass_regularized" not in sampler  # a NUTS setting; ChEES adapts a diagonal metric of its own
    steps = result["sample_stats"]["n_steps"]
    assert (steps == steps.isel(chain=0)).all()  # one trajectory length per fit and draw, whatever the chain
    assert (steps.isel(chain=0) != steps.isel(chain=0, draw=0)).any()  # ... jittered from draw to draw
    diag = result["fit_diagnostics"]
    assert diag["divergences"].values.tolist() == [0, 0, 0]
    # 4 chains x 300 draws of ChEES mix a little slower than NUTS (benchmarks/batch.py): R-hat within 1.05 flags a
    # chain stuck elsewhere (the worst fit of 20 at 500 draws measured 1.025)
    assert float(diag["rhat"].max()) < 1.05
    post, ref = result.posterior, nuts.posterior
    for name, value in TRUTH.items():  # every fit's 99% interval holds the truth (5 params x 3 fits at 1% each)
        lo, hi = post[name].quantile([0.005, 0.995], dim=("chain", "draw")).values
        assert np.all(lo <= value) and np.all(value <= hi), (name, lo, hi)
    ess = diag["ess_bulk"]
    for name in ("E", "alpha", "beta"):
        a, b = post[name].mean(("chain", "draw")), ref[name].mean(("chain", "draw"))
        # same posteriors: each fit's means agree within 4 Monte Carlo SEs of the difference (each kernel's own ESS)
        se = np.sqrt(post[name].var(("chain", "draw")) / ess.sel(parameter=name)
                     + ref[name].var(("chain", "draw")) / nuts["fit_diagnostics"]["ess_bulk"].sel(parameter=name))
        assert (abs(a - b) < 4 * se).all(), name
        ratio = post[name].std(("chain", "draw")) / ref[name].std(("chain", "draw"))
        assert ((0.7 < ratio) & (ratio < 1.4)).all(), name  # spreads agree within the error of few-hundred-ESS SDs


def test_kernel_setting():
    from bayescale.infer.batch import batch_kernel
    from bayescale.infer.settings import SamplerSettingsError

    four = bs.NUTS(num_chains=4)
    assert [batch_kernel(four, p) for p in ("cpu", "gpu", "tpu")] == ["nuts", "chees", "chees"]
    assert batch_kernel(bs.NUTS(num_chains=2), "gpu") == "nuts"  # ChEES pools a fit's chains: too few to gain
    assert batch_kernel(bs.NUTS(kernel="nuts"), "gpu") == "nuts" and batch_kernel(bs.NUTS(kernel="chees"), "cpu") == "chees"
    with pytest.raises(SamplerSettingsError, match=r"kernel 'hmc': must be one of \['auto', 'nuts', 'chees'\]"):
        bs.NUTS(kernel="hmc")
    table = simulate_table("hoffmann2022", TRUTH, seed=0)
    with pytest.raises(SamplerSettingsError, match="kernel='chees' is for fit_batch"):
        bs.fit("hoffmann2022", table, kernel="chees")
    assert bs.NUTS.from_attrs(bs.NUTS(kernel="chees").to_attrs(algorithm="ChEES-HMC")).kernel == "chees"


def test_batch_errors():
    tables = [simulate_table("hoffmann2022", TRUTH, seed=s) for s in range(2)]
    with pytest.raises(ValueError, match="datasets is empty"):
        fit_batch("hoffmann2022", [])
    with pytest.raises(TypeError, match="datasets must be a list"):
        fit_batch("hoffmann2022", tables[0])
    with pytest.raises(ValueError, match="num_chains must be a positive integer, got 0"):
        fit_batch("hoffmann2022", tables, num_chains=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer or None"):
        fit_batch("hoffmann2022", tables, batch_size=0)
    one_d = tables[1][tables[1]["D"] == tables[1]["D"].min()]
    with pytest.raises(ValueError, match=r"^dataset 1: .*D"):
        fit_batch("hoffmann2022", [tables[0], one_d])
    curves = _curves(0, 3)
    with pytest.raises(ValueError, match="resolves to different structures"):
        fit_batch("hoffmann2022", [tables[0], curves])


def test_map_pairs_sharded_routes_every_pair_like_unsharded():
    """map_pairs over 2 CPU host devices (jax.shard_map over the (fit, chain) pairs) computes every pair with its own
    index and key, in order, with the padding of an uneven split dropped: bit for bit the unsharded result for a
    computation that is exact (integer PRNG bits and a gather)."""
    assert jax.local_device_count() >= 2  # import bayescale set up the host devices (bayescale/_runtime.py)
    data = jax.numpy.arange(5.0) * 10

    def one(index, key):
        return {"value": data[index] + jax.random.uniform(key), "index": index}

    index = jax.numpy.repeat(jax.numpy.arange(5), 1)  # 5 pairs over 2 devices: 3 + 3, one padded
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    devices = devices_of("cpu")
    single = map_pairs(one, index, keys, devices[:1])
    sharded = map_pairs(one, index, keys, devices[:2], batch_size=2)
    np.testing.assert_array_equal(sharded["index"], np.arange(5))
    np.testing.assert_array_equal(sharded["value"], single["value"])
    assert np.all(np.diff(np.floor(sharded["value"] / 10)) == 1)  # each pair read its own fit's data


def test_sharded_batch_gives_the_same_draws():
    """fit_batch sharded over 2 CPU host devices gives the draws of the unsharded batch with the same seed. Not bit
    for bit: the sharded program is compiled differently (XLA fuses and orders floating-point work differently), and
    NUTS turns last-bit differences into different trajectories after some iterations (docs/performance.md). So the
    check is a short run of 5 + 5 iterations, where the draws agree to 1e-9 relative (measured: 7e-15 at most; a pair
    given the wrong key or data would differ at order 1), plus the longer sharded batch of the suite (tests/fits.py "batch", default num_devices: all host
    devices), which recovers each truth and matches single fits (test_batch_recovers_each_truth_...)."""
    tables = [simulate_table("hoffmann2022", TRUTH, seed=s) for s in range(2)]
    options = dict(num_chains=2, num_warmup=5, num_samples=5, rng_key=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.SamplingWarning)  # 5 + 5 draws do not converge: only equality counts
        sharded = fit_batch("hoffmann2022", tables, num_devices=2, **options)
        single = fit_batch("hoffmann2022", tables, num_devices=1, **options)
    assert json.loads(sharded.attrs["sampler"])["num_devices"] == 2
    assert json.loads(single.attrs["sampler"])["num_devices"] == 1
    for name in ("E", "A", "alpha", "B", "beta", "sigma"):
        np.testing.assert_allclose(sharded.posterior[name].values, single.posterior[name].values, rtol=1e-9)
    # the fits and chains got different keys: the shards are not copies of one another
    assert not np.array_equal(sharded.posterior["E"].values[0], sharded.posterior["E"].values[1])
    with pytest.raises(bs.ArgumentError, match=r"num_devices=64 but there are \d+ cpu devices"):
        fit_batch("hoffmann2022", tables, num_devices=64, **options)
    with pytest.raises(bs.ArgumentError, match="num_devices must be a positive integer or None, got 0"):
        fit_batch("hoffmann2022", tables, num_devices=0, **options)
