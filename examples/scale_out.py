"""Many fits on a Dask cluster: two laws x the Chinchilla data and its leave-largest-out training split.

    python examples/scale_out.py --out results/scale_out                      # a local cluster of 2 processes
    python examples/scale_out.py --out results/scale_out --scheduler tcp://host:8786   # a running cluster

On several machines: start a scheduler (``dask scheduler``) and a worker on each machine (``dask worker
tcp://host:8786 --nthreads 1``), with bayescale installed on every one, and pass the scheduler's address. Each result
is saved in ``--out`` as it arrives; running the same command again loads what is there and runs only the rest.
Needs ``pip install 'bayescale[scale]'`` (Dask distributed).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import bayescale as bs
from bayescale.datasets import load_chinchilla
from bayescale.infer.scaleout import fit_many, job_grid
from bayescale.infer.settings import NUTS, add_sampler_arguments, sampler_from_args
from bayescale.validation.holdout import make_splits

LAWS = ["hoffmann2022", "kaplan2020_nd"]


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/scale_out")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (default: a local "
                                                          "cluster started for this run)")
    parser.add_argument("--workers", type=int, default=2, help="processes of the local cluster (default 2)")
    parser.add_argument("--laws", nargs="+", default=LAWS)
    add_sampler_arguments(parser, NUTS(num_chains=2, num_warmup=500, num_samples=500))
    args = parser.parse_args(argv)

    ds = load_chinchilla()
    split = make_splits(ds, "largest", by="N")[0]  # train on all but the largest model size
    datasets = {"all": ds, "train_" + split.name: ds.isel(point=split.train)}
    jobs = job_grid(args.laws, datasets, sampler=sampler_from_args(args), pointwise=False)

    client = None
    if args.scheduler:
        from dask.distributed import Client

        client = Client(args.scheduler)
    print(f"{len(jobs)} fits ({len(args.laws)} laws x {len(datasets)} datasets) on "
          f"{args.scheduler or f'a local cluster of {args.workers} processes'} ...", flush=True)
    t0 = time.perf_counter()
    results = fit_many(jobs, client=client, out_dir=args.out, n_workers=args.workers,
                       on_result=lambda i, _: print(f"  done: {jobs[i].name}", flush=True))
    print(f"{len(results)} fits in {time.perf_counter() - t0:.1f} s; saved in {Path(args.out).resolve()}")
    for job, result in zip(jobs, results):
        table = bs.summary(result)
        worst = float(table["rhat"].max())
        print(f"  {job.name:40s} max R-hat {worst:.3f}  {dict(table['median'].round(3).items())}")
    if client is not None:
        client.close()
    return results


if __name__ == "__main__":
    main()
