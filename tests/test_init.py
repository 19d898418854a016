"""Where chains start (bayescale.infer.starts): multi-start MAP, Laplace draws per chain, multimodality reported."""

from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.infer.starts import describe_modes, find_start
from bayescale.infer.fit import data_statistics, log_inputs_of
from bayescale.laws.catalogue import parse_law_text
from bayescale.infer.model import ModelSpec, build_model, resolve_priors

from .conftest import simulate_table
from .quick import TINY

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)

# Two power laws in the same input with the same priors: swapping (A, alpha) with (B, beta) leaves the density
# unchanged, so the posterior has two modes of equal height at different places (label switching).
TWIN = """
id = "twin"
formula = "E + A / N**alpha + B / N**beta"
[inputs.N]
[parameters.E]
prior = "Uniform(0, min_loss)"
[parameters.A]
prior = "LogNormal(log(500), 2.5)"
[parameters.B]
prior = "LogNormal(log(500), 2.5)"
[parameters.alpha]
prior = "LogNormal(log(0.3), 0.6)"
[parameters.beta]
prior = "LogNormal(log(0.3), 0.6)"
"""


def _model(law, ds):
    priors = resolve_priors(law, "student_t", None)
    return build_model(ModelSpec(law, priors, data_statistics(ds))), log_inputs_of(ds, law)


def test_chains_start_at_distinct_points_near_the_mode():
    law = bs.load_law("hoffmann2022")
    ds = bs.load_runs(simulate_table("hoffmann2022", TRUTH, seed=0))
    model, log_inputs = _model(law, ds)
    start = find_start(model, (log_inputs,), {"loss": jnp.asarray(ds["loss"].values)}, rng_key=jax.random.PRNGKey(0),
                       num_chains=4, num_starts=3)
    alpha = np.exp(np.asarray(start.init_params["alpha"]))  # LogNormal: unconstrained value is log alpha
    assert np.unique(alpha).size == 4  # distinct starts, so R-hat means something
    # near the truth: 36 points with 1% noise pin alpha to about +-0.02 (posterior sd ~0.01)
    assert np.all(np.abs(alpha - TRUTH["alpha"]) < 0.06)
    best = start.record["modes"][0]["values"]
    assert best["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.03)
    assert not start.record["multimodal"] and describe_modes(start.record) is None


def test_two_modes_of_equal_height_are_reported():
    law = parse_law_text(TWIN)
    n = np.geomspace(1e7, 1e10, 30)
    loss = np.asarray(law.predict(dict(E=1.7, A=30.0, B=3e3, alpha=0.15, beta=0.45), N=n))
    loss = loss * np.exp(0.003 * np.random.default_rng(0).standard_normal(n.size))
    ds = bs.load_runs(pd.DataFrame({"N": n, "loss": loss}), inputs=("N",))
    model, log_inputs = _model(law, ds)
    start = find_start(model, (log_inputs,), {"loss": jnp.asarray(ds["loss"].values)}, rng_key=jax.random.PRNGKey(1),
                       num_chains=2, num_starts=8)
    record = start.record
    assert record["multimodal"], record["modes"]
    top = [m for m in record["modes"] if record["modes"][0]["log_density"] - m["log_density"] < 1e-3 + 1.0]
    assert sorted(round(m["values"]["alpha"] < m["values"]["beta"]) for m in top[:2]) == [0, 1]  # the swapped pair
    assert "multimodal: 8 optimiser starts reached" in describe_modes(record)


def test_fit_records_the_start_and_summary_reads_it():
    ds = bs.load_runs(simulate_table("hoffmann2022", TRUTH, seed=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the suite's TINY settings (tests/quick.py) and 36 points: programs shared with its other such fits
        dt = bs.fit("hoffmann2022", ds, sampler=TINY, pointwise=False, num_starts=2)
    record = json.loads(dt.attrs["init"])
    assert record["method"] == "map" and record["num_starts"] == 2
    assert bs.summary(dt).attrs["multimodality"] is None
    with pytest.raises(ValueError, match=r"init 'prior': must be one of \['map', 'median'\]"):
        bs.fit("hoffmann2022", ds, init="prior")
    with pytest.raises(ValueError, match="num_starts must be a positive integer"):
        bs.fit("hoffmann2022", ds, num_starts=0)


def test_median_starts_are_the_samplers_own():
    """run_nuts finds the prior-median starts outside the compiled sampler (bayescale.infer.starts.median_starts):
    they must be the points numpyro's NUTS finds inside it for the same key (its per-chain key split, its search),
    to rounding: the program then leaves the search out and is shared with init="map" fits."""
    import jax
    from numpyro.infer import NUTS, init_to_median

    import bayescale.infer.fit as fitting
    from bayescale.infer.starts import median_starts

    captured = {}
    original = fitting.run_nuts

    def capture(model, *args, **kwargs):
        captured.update(model=model, args=args, kwargs={"loss": kwargs["loss"]})
        return original(model, *args, **kwargs)

    table = simulate_table("hoffmann2022", dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32), seed=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fitting, "run_nuts", capture)
        bs.fit("hoffmann2022", table, sampler=TINY, init="median", pointwise=False)
    key = jax.random.PRNGKey(7)
    ours = median_starts(captured["model"], captured["args"], captured["kwargs"], rng_key=key, num_chains=2)
    kernel = NUTS(captured["model"], init_strategy=init_to_median)
    for c, chain_key in enumerate(jax.random.split(key, 2)):
        state = kernel.init(chain_key, 10, model_args=captured["args"], model_kwargs=captured["kwargs"])
        for name, value in state.z.items():
            np.testing.assert_allclose(ours[name][c], value, rtol=1e-12, atol=1e-12)
    # two chains, two different draws of the prior median (numpyro's median of 15 prior draws is per key)
    assert not np.allclose(ours["E"][0], ours["E"][1])


def test_every_fit_function_takes_map_starts(shared_fit):
    """The start search is one lever in the one sampler path (run_nuts): a declared model's fit function starts
    from a MAP when asked and records it as law fits do; the default starts are recorded too, and a batch
    (vectorised: one start for every fit) refuses a MAP start."""
    from bayescale.analyses import schedules as S
    from bayescale.analyses.kaplan import batchsize as bb, pertoken as pt, shape as sh

    from .fits import MPL, data

    tiny = dict(num_chains=1, num_warmup=20, num_samples=20, progress_bar=False, init="map", num_starts=2)
    curves, schedules = data("multi_power")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 + 20 draws: no diagnostic can pass
        fits = [pt.fit_per_token(data("per_token"), rng_key=0, **tiny),
                bb.fit_critical_batch(data("critical_batch"), n_levels=4, rng_key=0, **tiny),
                # the shape model reads an argument in Python: its start search keeps the arguments built in
                sh.fit_shape(data("shape"), rng_key=0, **tiny),
                S.fit_schedule(S.load_schedule_law(MPL), curves[curves["run"] == "cosine"], schedules, rng_key=0,
                               max_block=256, **tiny)]
    for dt in fits:
        record = json.loads(dt.attrs["init"])
        assert record["method"] == "map" and record["num_starts"] == 2 and record["modes"]
        assert bs.summary(dt).attrs["multimodality"] is None
    # the suite's shared fits at their defaults: the prior median, and the critical batch's own data-informed start
    assert json.loads(shared_fit("per_token").attrs["init"]) == {"method": "median"}
    assert json.loads(shared_fit("critical_batch").attrs["init"]) == {"method": "given"}
    with pytest.raises(bs.infer.settings.SamplerSettingsError, match=r"fit_batch starts chains with init='median' only"):
        bs.fit_batch("hoffmann2022", [simulate_table("hoffmann2022", TRUTH, seed=s) for s in range(2)], init="map")
