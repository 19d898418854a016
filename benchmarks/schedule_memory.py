"""Peak memory of predict_schedule on a long curve: chunked (the default) against one unchunked evaluation.

    PYTHONPATH=. python benchmarks/schedule_memory.py                  # the table of docs/schedules.md ("Memory")
    PYTHONPATH=. python benchmarks/schedule_memory.py --draws 4000 500  # draw counts to measure

A multi-power-law fit (2 chains x 40 + 40 draws on simulated 400M constant + cosine runs, the law file's
convention, max_block 64) is saved once; its posterior is then tiled to each draw count (4000 = the default 4 chains x
1000 draws), and each case runs in a fresh process that loads the fit and predicts a 72,000-step cosine curve
(peak 3e-4, 2160 warmup steps, final LR 3e-5; Luo et al.'s long run) at the default 500 steps. Peak RSS comes from
/proc/self/status (``VmHWM``, reset just before the prediction through /proc/self/clear_refs), next to the RSS just
before the prediction (imports, the loaded fit: ``rss_before_mb``) and the process's peak while loading
(``peak_loading_mb``, from ``resource.getrusage``).
Two comparisons at small draw counts: ``one jitted chunk`` (``chunk_size`` above draws x steps x terms: XLA fuses the
elementwise work into the sum on CPU, so even this stays small) and ``eager (before)``, the evaluation predict_schedule
used before chunking (an eager ``jax.vmap`` over draws of the whole design), which materialises draws x steps x terms
float64 arrays (~16 MB per draw per temporary here) and needs tens of GB at the default draws.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

TOTAL = 72000


def _rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS: resident now; VmHWM: peak resident since the last reset), MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak measures the prediction, not the loading."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def law_names(result) -> list[str]:
    return json.loads(result.attrs["parameters"])


def child(path: str, draws: int, chunk_size: int) -> None:
    """Load the fit, tile its draws, predict the long cosine curve; print one JSON line."""
    import numpy as np
    import xarray as xr

    import bayescale as bs
    from bayescale.analyses import schedules as S

    result = bs.load(path)
    post = result["posterior"].to_dataset()
    n = post.sizes["chain"] * post.sizes["draw"]
    flat = post.stack(sample=("chain", "draw")).isel(sample=np.arange(draws) % n)
    flat = flat.drop_vars(["sample", "chain", "draw"]).rename(sample="draw").expand_dims(chain=1)
    result["posterior"] = xr.DataTree(flat.transpose("chain", "draw", ...))
    schedule = S.lr_schedule("cosine", total_steps=TOTAL, peak_lr=3e-4, warmup_steps=2160, final_lr=3e-5)
    loading, before = _rss_mb(), _status_mb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    if chunk_size == 0:  # the evaluation before chunking: one eager vmap over draws of the whole design
        import jax

        steps = np.unique(np.linspace(2161, TOTAL, 500).round().astype(np.int64))
        design = S._design("multi_power", [schedule], [steps], {}, int(result.attrs["max_block"]),
                           result.attrs["convention"])
        post = result["posterior"].to_dataset()
        draws_ = {n: jax.numpy.asarray(post[n].values.reshape(-1)) for n in law_names(result)}
        np.asarray(jax.vmap(lambda p: S._mean_multi_power(p, design))(draws_))
        print(json.dumps(dict(draws=draws, steps=int(steps.size), terms=int(design["drop"].shape[1]), chunk_size=0,
                              rss_before_mb=round(before), peak_loading_mb=round(loading),
                              peak_rss_mb=round(_status_mb("VmHWM")), seconds=round(time.perf_counter() - t0, 1),
                              final_median=float("nan"))))
        return
    pred = S.predict_schedule(result, schedule, chunk_size=chunk_size)
    blocks = S._mpl_blocks(schedule, pred["step"].values, int(result.attrs["max_block"]), result.attrs["convention"])
    print(json.dumps(dict(draws=draws, steps=int(pred.sizes["step"]), terms=int(blocks["g"].size),
                          chunk_size=chunk_size, rss_before_mb=round(before), peak_loading_mb=round(loading),
                          peak_rss_mb=round(_status_mb("VmHWM")),
                          seconds=round(time.perf_counter() - t0, 1),
                          final_median=round(float(pred["loss_band"].sel(quantile=0.5).values[-1]), 4))))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, nargs="*", default=[4000])
    parser.add_argument("--eager-draws", type=int, nargs="*", default=[10, 20],
                        help="draw counts for the evaluation before chunking (one eager vmap; grows ~1 GB per 8 draws)")
    parser.add_argument("--unchunked-draws", type=int, nargs="*", default=[50, 100, 200])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    import bayescale as bs
    from bayescale.analyses import schedules as S
    from _table import markdown

    law = S.load_schedule_law("luo2025_mpl")
    c = dict(total_steps=24000, peak_lr=3e-4, warmup_steps=2160)
    sched = {"constant": S.lr_schedule("constant", **c), "cosine": S.lr_schedule("cosine", final_lr=3e-5, **c)}
    curves = S.simulate_schedule_curves(law, law.reference("luo2025_400M").values, sched, checkpoints=12, seed=0)
    result = S.fit_schedule(law, curves, sched, num_chains=2, num_warmup=40, num_samples=40, progress_bar=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fit.nc")
        bs.save(result, path)
        cases = ([(d, S.PREDICT_CHUNK) for d in args.draws] + [(d, 10**15) for d in args.unchunked_draws]
                 + [(d, 0) for d in args.eager_draws])
        for draws, chunk in cases:
            out = subprocess.run([sys.executable, __file__, "--child", path, str(draws), str(chunk)],
                                 capture_output=True, text=True, env=os.environ | {"PYTHONWARNINGS": "ignore"})
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["mode"] = {S.PREDICT_CHUNK: "chunked", 0: "eager (before)"}.get(chunk, "one jitted chunk")
            rows.append(row)
            print(row, flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; peak RSS of one process each")
    cols = ["mode", "draws", "steps", "terms", "chunk_size", "rss_before_mb", "peak_rss_mb", "peak_loading_mb",
            "seconds"]
    print(markdown([{k: r[k] for k in cols} for r in rows]))


if __name__ == "__main__":
    main()
