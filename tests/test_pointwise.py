"""Large-data options of fit: pointwise groups left out, block mass matrix for per-run effects."""

from __future__ import annotations

import warnings

import pytest

import bayescale as bs
from bayescale.infer.model import ModelSpec, mass_structure, resolve_priors
from bayescale.infer.noise import Noise

from .conftest import simulate_table
from .quick import TINY

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)


def test_fit_without_pointwise_groups():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 100 draws: ESS warnings by design
        # the suite's TINY settings on its standard 6 x 6 table: programs shared with its other such fits
        result = bs.fit("hoffmann2022", simulate_table("hoffmann2022", TRUTH), sampler=TINY, pointwise=False,
                        num_prior_samples=300)
    assert {"posterior_predictive", "log_likelihood", "prior_predictive"}.isdisjoint(result.children)
    assert set(result["prior"].data_vars) == {"E", "A", "B", "alpha", "beta", "sigma", "nu"}
    assert result["prior"].sizes["draw"] == 300
    assert 0 < float(result["prior"]["E"].max()) < float(result["observed_data"]["loss"].min())  # Uniform(0, min_loss)
    for call, name in [(bs.check_coverage, "check_coverage"), (bs.plot_ppc, "plot_ppc"), (bs.loo, "loo")]:
        with pytest.raises(ValueError, match=rf"{name} needs the result's '\w+' group.*pointwise=True"):
            call(result)
    bs.summary(result)  # what reads the posterior still works


def test_mass_structure_keeps_run_effects_diagonal():
    law = bs.load_law("hoffmann2022")

    def spec(noise):
        return ModelSpec(law, resolve_priors(law, "student_t", None, Noise.parse(noise)), {"min_loss": 2.0},
                         noise=Noise.parse(noise))

    assert mass_structure(True, spec("iid")) is True
    assert mass_structure(False, spec("run+ou")) is False
    assert mass_structure(True, spec("run+ou")) is True  # collapsed run effects: only globals are sampled
    blocks = mass_structure(True, spec("run+ou+latent"))
    assert blocks == [("E", "A", "B", "alpha", "beta", "sigma", "nu", "tau", "ell")]  # z_run left diagonal
