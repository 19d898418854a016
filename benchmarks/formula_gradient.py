"""The cost of the law's gradient: a sum of positive terms as one n-ary log-sum-exp (bayescale.laws.formula's
``log_sum_exp``, today's) against nested ``jnp.logaddexp`` (before 2026-12-02), side by side in one run.

    PYTHONPATH=. python benchmarks/formula_gradient.py                  # 1e4 and 1e5 rows (about 1 minute, 2 cores)
    PYTHONPATH=. python benchmarks/formula_gradient.py --rows 1e6

Data: benchmarks/scale.py's final-loss tables (hoffmann2022, 1% noise). The model is the one ``bayescale.fit``
builds (Student-t on log-loss, iid); ``grad_ms`` is one jitted evaluation of its potential and gradient at the prior
median, with the data as arguments of the program (as in a fit), the minimum and median of 30 after one that
compiles. Each form runs in its own process, so that no compiled law program is shared between them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _table import markdown  # noqa: E402


def measure(rows: int, nested: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import init_to_median
    from numpyro.infer.util import initialize_model

    import bayescale.laws.formula as formula

    if nested:  # the form before: ((a + b) + c) as logaddexp(logaddexp(a, b), c)
        def nested_logaddexp(logs):
            total = logs[0]
            for value in logs[1:]:
                total = jnp.logaddexp(total, value)
            return total

        formula.log_sum_exp = nested_logaddexp

    import bayescale as bs
    from bayescale.infer.fit import data_statistics, log_inputs_of
    from bayescale.infer.model import ModelSpec, build_model, resolve_priors
    from bayescale.infer.noise import Noise
    from scale import final_losses

    ds = bs.load_runs(final_losses(rows))
    law, noise = bs.load_law("hoffmann2022"), Noise.parse("iid")
    spec = ModelSpec(law, resolve_priors(law, "student_t", None, noise), data_statistics(ds), noise=noise)
    model = build_model(spec, None)
    args, loss = (log_inputs_of(ds, law),), jnp.asarray(ds["loss"].values)
    info = initialize_model(jax.random.PRNGKey(0), model, model_args=args, model_kwargs={"loss": loss},
                            init_strategy=init_to_median, dynamic_args=True)

    @jax.jit
    def grad(z, args, loss):
        return jax.value_and_grad(info.potential_fn(*args, loss=loss))(z)

    z = info.param_info.z
    jax.block_until_ready(grad(z, args, loss))
    times = []
    for _ in range(30):
        t = time.perf_counter()
        jax.block_until_ready(grad(z, args, loss))
        times.append(time.perf_counter() - t)
    return dict(rows=rows, form="nested logaddexp" if nested else "log_sum_exp",
                min_ms=1e3 * min(times), median_ms=1e3 * float(np.median(times)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=float, nargs="+", default=[1e4, 1e5])
    args = p.parse_args(argv)
    table = []
    for rows in args.rows:
        pair = []
        for nested in (True, False):
            out = subprocess.run([sys.executable, __file__, "--one", json.dumps([int(rows), nested])],
                                 capture_output=True, text=True, check=True).stdout
            pair.append(json.loads(out.strip().splitlines()[-1]))
        pair[1]["vs_nested"] = pair[1]["median_ms"] / pair[0]["median_ms"]
        pair[0]["vs_nested"] = 1.0
        table += pair
    import jax

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"jax {jax.__version__} ({jax.devices()[0].platform})\n")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(*json.loads(sys.argv[2]))))
    else:
        sys.exit(main())
