"""What a small fit costs when the compiled programs exist already: fits of new data of one shape, in one process.

    PYTHONPATH=. python benchmarks/compile.py          # about 2 minutes on 2 CPU cores

hoffmann2022 on simulated 36-point tables (6 sizes x 6 token counts, 1% noise, a new seed per fit), 2 chains x 200
warmup + 200 draws, the default start (multi-start MAP) and per-point groups, with a new, empty persistent compilation
cache (``BAYESCALE_CACHE_DIR`` a temporary folder): JAX reuses a compiled program for a new function object only
through that cache, so it is what serves a second fit in the same process as in a new one. Row 1 is the first fit of the
process; rows 2-3 fit new data of the same shape; row 4 data of a new shape (48 points). Columns: wall and process
CPU seconds of the fit, XLA compilation seconds (a program read from the cache counts its reading), the number of
programs and how many of them were read from the persistent cache (``jax_log_compiles``), and
the ratio of each fit's CPU seconds to the first fit's, measured in the same run.

Data, data statistics and the amplitudes' centres are arguments of every compiled program of a fit
(``infer/fit.py``: ``model_of_data``, ``chains_on_devices``), so new data of one shape compile nothing new in the
NUTS program, the predictive programs or the optimiser's objective.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import time
import warnings

import tempfile

os.environ["BAYESCALE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bayescale-compile-")  # before bayescale: an empty cache

import jax  # noqa: E402

import bayescale as bs  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from _table import markdown  # noqa: E402
from tests.conftest import simulate_table  # noqa: E402

TRUTH = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def main() -> int:
    log = io.StringIO()  # jax_log_compiles: one "Finished XLA compilation" line per program compiled or read
    handler = logging.StreamHandler(log)
    logging.getLogger("jax").addHandler(handler)
    logging.getLogger("jax").setLevel(logging.WARNING)
    jax.config.update("jax_log_compiles", True)
    warnings.simplefilter("ignore")
    rows, first_cpu = [], None
    cases = [("first fit in the process", 6, 0), ("new data, same shape", 6, 1), ("new data, same shape", 6, 2),
             ("new data, new shape (48 points)", 8, 3)]
    for what, n_sizes, seed in cases:
        log.truncate(0)
        log.seek(0)
        table = simulate_table("hoffmann2022", TRUTH, seed=seed, n_sizes=n_sizes)
        wall, cpu = time.perf_counter(), time.process_time()
        bs.fit("hoffmann2022", table, rng_key=seed, num_chains=2, num_warmup=200, num_samples=200)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        text = log.getvalue()
        compiled = [float(s) for s in re.findall(r"Finished XLA compilation of \S+ in ([0-9.]+) sec", text)]
        hits = text.count("Persistent compilation cache hit")
        first_cpu = first_cpu or cpu
        rows.append({"fit": what, "points": len(table), "wall (s)": wall, "CPU (s)": cpu,
                     "compilation (s)": sum(compiled), "programs": len(compiled), "read from the cache": hits,
                     "CPU vs first": cpu / first_cpu})
    print(f"jax {jax.__version__}, {jax.default_backend()}, {os.cpu_count()} cores")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
