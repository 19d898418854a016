"""Parameter recovery: data simulated from known constants, each truth inside its 90% posterior interval."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bayescale as bs

from bayescale.validation.simulate import OURO_TRUTH, ouro_curves

from .conftest import simulate_table

TRUTHS = {
    "hoffmann2022": dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
    "kaplan2020_n": dict(N_c=8.8e13, alpha_N=0.076),
    "kaplan2020_d": dict(D_c=5.4e13, alpha_D=0.095),
    "kaplan2020_nd": dict(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103),
    "ouro2025": OURO_TRUTH,
}


#: Laws whose inputs go beyond the N x D grid of this file (learning rate, batch size, unique tokens): their recovery
#: tests live with their data preparation, named here so that a law without any recovery test still fails below.
RECOVERED_ELSEWHERE = {"steplaw2025": "test_lr_bs.test_steplaw_recovery",
                       "kaplan2020_per_token_steps": "test_pertoken.test_per_token_steps_recovers_its_truth",
                       "muennighoff2023": "test_lr_bs.test_muennighoff_recovery",
                       **{law_id: "test_law_catalogue.test_recovery_of_new_laws" for law_id in (
                           "caballero2023_bpl", "chen2025_parscale", "clark2022_moe", "frantar2023_sparsity",
                           "krajewski2024_finegrained", "li2025_farseer", "tao2024_vocab", "ye2024_mixing")}}


def test_every_catalogue_law_has_a_recovery_case():
    import importlib

    assert set(TRUTHS) | set(RECOVERED_ELSEWHERE) == set(bs.list_laws())
    for where in RECOVERED_ELSEWHERE.values():
        module, name = where.split(".")
        assert callable(getattr(importlib.import_module(f"tests.{module}"), name)), where


@pytest.mark.parametrize("law_id", sorted(set(TRUTHS) - {"ouro2025"}))
def test_truth_inside_90_interval(law_id):
    truth = TRUTHS[law_id]
    # 36 points (6 x 6 grid; 6 points for one-input laws) at 0.5% log-noise: between Chinchilla's fitted 0.4%
    # and seed noise. Seeds are fixed, so the outcome is deterministic; a wrong formula, prior or likelihood moves
    # the posterior by many posterior sds and fails.
    table = simulate_table(law_id, truth, sigma=0.005, seed=1)
    result = bs.fit(law_id, table, rng_key=1, num_chains=4, num_warmup=500, num_samples=500, likelihood="normal",
                    pointwise=False)  # the checks read the posterior and prior only
    assert json.loads(result.attrs["diagnostics"])["divergences"] == 0
    post = result.posterior
    for name, value in truth.items():
        lo, hi = np.quantile(post[name].values, [0.05, 0.95])
        assert lo < value < hi, f"{law_id}.{name}: truth {value:.4g} outside 90% interval [{lo:.4g}, {hi:.4g}]"
    # The data, not the prior, made these intervals: 36 points at 0.5% noise pin every constant to a small part of
    # its prior (a sampler that returned the prior would give sd ratios near 1 and pass the coverage check above).
    ratios = bs.summary(result).loc[list(truth), "sd_ratio"]
    assert (ratios < 0.5).all(), ratios


def test_ouro2025_recovered_from_whole_curves():
    # 15 simulated curves (5 sizes x T_m in {2, 4, 8}) of 14 checkpoints each, with the noise the curve model assumes
    # (0.5% run effect, 1% OU residuals). Fixed seeds make the outcome deterministic. The offsets t1 and t3 and the
    # loop term are weakly identified (3 loop counts for C, gamma, t3): their intervals are mostly prior, which must
    # still hold the truth; E, B, beta, t2 are pinned by the curves.
    result = bs.fit("ouro2025", ouro_curves(checkpoints=8, seed=2), rng_key=2, num_chains=2, num_warmup=400,
                    num_samples=400, pointwise=False)  # the checks read the posterior and prior only
    assert bs.provenance(result)["noise"]["spec"] == "run+ou"
    post = result.posterior
    for name, value in OURO_TRUTH.items():
        lo, hi = np.quantile(post[name].values, [0.05, 0.95])
        assert lo < value < hi, f"ouro2025.{name}: truth {value:.4g} outside 90% interval [{lo:.4g}, {hi:.4g}]"
    # E, B, beta and t2 are pinned by the curves (see above): their posteriors must be much narrower than the priors.
    ratios = bs.summary(result).loc[["E", "B", "beta", "t2"], "sd_ratio"]
    assert (ratios < 0.5).all(), ratios
