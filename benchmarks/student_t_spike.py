"""The Student-t posterior is improper in the corner nu -> 0, sigma -> 0: a demonstration on simulated data.

    PYTHONPATH=. python benchmarks/student_t_spike.py

kaplan2020_n on 36 log-spaced model sizes, losses simulated at the published constants with Student-t(3) noise of
scale 0.01 on log-loss. Put the law exactly through the first and the last point (k = 2 points fitted exactly, n = 36)
and follow the log posterior density, in the coordinates NUTS samples (log sigma, log nu, so with their Jacobians), as
sigma shrinks at fixed nu. The exactly fitted points contribute about -log sigma each and the others about
nu * log sigma each, so the density behaves like sigma^((n - k) nu - k + 1): it falls for nu above (k - 1)/(n - k) =
1/34 and rises without bound below, whatever the data (Fernandez & Steel 1999, "Multivariate Student-t regression
models: pitfalls and inference", Biometrika 86:153). Any prior with density near nu = 0 (the former default
Gamma(2, 0.1)) therefore gives an improper posterior in exact arithmetic. In float64 the rise stops near sigma = 1e-16,
where the rounding of the two "exact" residuals shows, so the corner holds a negligible share of the computed posterior
(its log density stays far below the one at the truth, printed last); but it is a trap: at small sigma a smaller nu is
favoured and at small nu a smaller sigma, so a chain that wanders in does not come back. docs/validation.md
(simulation-based calibration) found single-chain SBC fits caught there.

The table is printed twice: under the former prior nu ~ Gamma(2, 0.1) and under the default nu ~ 1 + Gamma(2, 0.1)
(bayescale.infer.model.NOISE_PRIORS), each in its own sampler coordinates (log nu, resp. log(nu - 1)). Under the
default, nu < 1 has no density (-inf) and at every nu >= 1 the density falls as sigma shrinks: the corner is gone.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import log_density

import bayescale as bs
from bayescale.data import load_runs
from bayescale.infer.model import NOISE_PRIORS, ModelSpec, build_model, resolve_priors
from bayescale.infer.noise import Noise, curve_structure


def main() -> None:
    law = bs.load_law("kaplan2020_n")
    rng = np.random.default_rng(0)
    n_points = np.geomspace(5e7, 5e9, 36)
    log_n = np.log(n_points)
    log_y = 0.076 * (np.log(8.8e13) - log_n) + 0.01 * rng.standard_t(3, n_points.size)
    table = load_runs({"N": n_points, "loss": np.exp(log_y)}, inputs=law.input_names)
    noise = Noise.parse("iid")
    alpha = (log_y[0] - log_y[-1]) / (log_n[-1] - log_n[0])  # the law through the first and the last point
    log_nc = log_y[0] / alpha + log_n[0]
    sigmas = (1e-2, 1e-4, 1e-8, 1e-12, 1e-16, 1e-32)
    for nu_prior, nu_floor in (("Gamma(2, 0.1)", 0.0), (NOISE_PRIORS["nu"], 1.0)):
        spec = ModelSpec(law=law, priors=resolve_priors(law, "student_t", {"nu": nu_prior}, noise), statistics={},
                         noise=noise)
        model = build_model(spec, curve_structure(table, noise))

        def log_post(params):  # in the sampler's coordinates: log sigma and log(nu - nu_floor), Jacobians included
            lp, _ = log_density(model, ({"N": jnp.asarray(log_n)},), {"loss": jnp.asarray(np.exp(log_y))}, params)
            return float(lp) + np.log(params["sigma"]) + np.log(params["nu"] - nu_floor)

        print(f"\nnu ~ {nu_prior}: log posterior (sampler coordinates) at sigma =", ", ".join(f"{s:g}" for s in sigmas))
        for nu in (2.0, 1.0001, 0.1, 1 / 34, 0.02, 0.005):
            if nu <= nu_floor:  # outside the prior's support: no density at all
                print(f"nu {nu:7.4f}: outside the support (log density -inf)")
                continue
            row = [log_post({"N_c": jnp.exp(log_nc), "alpha_N": alpha, "sigma": s, "nu": nu}) for s in sigmas]
            print(f"nu {nu:7.4f}: " + "  ".join(f"{v:9.1f}" for v in row))
        truth = log_post({"N_c": 8.8e13, "alpha_N": 0.076, "sigma": 0.01, "nu": 3.0})
        print(f"at the truth (N_c 8.8e13, alpha_N 0.076, sigma 0.01, nu 3): {truth:.1f}")


if __name__ == "__main__":
    main()
