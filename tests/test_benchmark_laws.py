"""Law files of the benchmarks: the Box-Cox Farseer law is Farseer's form exactly (benchmarks/farseer.py)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import bayescale as bs

FARSEER = Path(__file__).resolve().parent.parent / "benchmarks" / "farseer_boxcox.toml"


def test_boxcox_farseer_is_farseers_form():
    """Against a hand-written numpy Farseer, L = exp(a3 n^g + b3) + exp(a2 n^be + b2) d^(-exp(a1 n^al + b1)) with
    n = N / 1e9 and d = D / 1e10, at a' = a x and b' = a + b; also under jit (the law's log_fn is pure JAX)."""
    law = bs.load_law(FARSEER)
    rng = np.random.default_rng(0)
    n_raw, d_raw = 10 ** rng.uniform(8, 10, 50), 10 ** rng.uniform(9, 12, 50)
    orig = dict(a1=-0.7, b1=-0.5, alpha=-0.2, a2=1.3, b2=-3.3, beta=-0.15, a3=-0.9, b3=0.1, gamma=0.12)
    n, d = n_raw / 1e9, d_raw / 1e10
    want = (np.exp(orig["a3"] * n ** orig["gamma"] + orig["b3"])
            + np.exp(orig["a2"] * n ** orig["beta"] + orig["b2"]) * d ** -np.exp(orig["a1"] * n ** orig["alpha"] + orig["b1"]))
    params = {}
    for i, x in ((1, "alpha"), (2, "beta"), (3, "gamma")):
        params[x] = orig[x]
        params[f"a{i}"] = orig[f"a{i}"] * orig[x]
        params[f"b{i}"] = orig[f"a{i}"] + orig[f"b{i}"]
    np.testing.assert_allclose(np.asarray(law.predict(params, N=n_raw, D=d_raw)), want, rtol=1e-12)
    jitted = jax.jit(law.log_fn)(params, {"N": jnp.log(n_raw), "D": jnp.log(d_raw)})
    np.testing.assert_allclose(np.exp(np.asarray(jitted)), want, rtol=1e-12)
