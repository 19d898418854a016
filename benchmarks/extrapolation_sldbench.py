"""Choosing and averaging laws by extrapolation on the SLDBench training splits: one table of held-out scores.

    PYTHONPATH=. python benchmarks/extrapolation_sldbench.py                  # every task (about 40 min, 2 busy cores)
    PYTHONPATH=. python benchmarks/extrapolation_sldbench.py --task parallel  # one task (repeatable)

For each task (bundled in ``bayescale/datasets/sldbench/``, read by ``load_task``) the largest values of the scale
input are held out; each candidate law is fitted on the rest and scored on them (R², log predictive density per
point, 90% predictive coverage), and the laws are stacked with weights fitted on the next-largest values, a fold
nested inside the training part (``bayescale.validate_laws``): the held-out points play no part in the weights. The
``stack_loo`` row stacks the same fits with in-sample PSIS-LOO weights instead, for contrast. Candidates are each
task's catalogue law, simpler or Chinchilla-like alternatives from the catalogue, and the user law files in
``benchmarks/laws/``. Sampler: 2 chains × 300 warmup + 300 draws per fit by default (the shared sampler flags
--chains, --warmup, --samples cut a task that is too slow on a busy machine; each law is fitted twice), seed 0, the
task's likelihood (Student-t). Columns ``rhat`` (largest R-hat of the fit scored) and ``steps`` (leapfrog steps per
draw) come from the fit on the whole training part.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import bayescale as bs
from bayescale.datasets.sldbench import TASKS, load_task
from bayescale.infer.settings import NUTS, add_sampler_arguments, sampler_from_args

sys.path.insert(0, os.path.dirname(__file__))
from _table import markdown  # noqa: E402

LAWS = Path(__file__).resolve().parent / "laws"

#: task → (candidate laws, split along, how many largest values held out, how many next-largest fit the weights).
#: ``domain_mixture`` (no scale axis inside one fit: the mixture law has no N) and ``lr_sweep`` (its largest learning
#: rates are where training diverges, a jump no smooth law extrapolates to) are left out; docs/validation.md says so.
CANDIDATES = {
    "farseer": (["li2025_farseer", "hoffmann2022", "kaplan2020_nd"], "N", 3, 3),
    "moe": (["clark2022_moe", LAWS / "moe_effective_params.toml", LAWS / "power_n_floor.toml"], "N", 1, 1),
    "vocab": (["tao2024_vocab", LAWS / "vocab_no_v.toml"], "N", 1, 1),
    "parallel": (["chen2025_parscale", LAWS / "parscale_power.toml", LAWS / "power_n_floor.toml"], "N", 1, 1),
    "sparsity": (["frantar2023_sparsity", LAWS / "sparsity_chinchilla.toml"], "N_active", 1, 1),
    "data_constrained": (["muennighoff2023", "hoffmann2022"], "N", 2, 2),
    "lr_bsz": (["steplaw2025", "hoffmann2022"], "N", 1, 1),
}
SAMPLER = NUTS(num_chains=2, num_warmup=300, num_samples=300, progress_bar=False)


def _fit_stats(result) -> tuple[float, float]:
    rhat = np.nanmax([p["rhat"] for p in json.loads(result.attrs["diagnostics"])["parameters"]])
    return float(rhat), float(result["sample_stats"]["n_steps"].mean())


def run_task(task: str, seed: int = 0, sampler: NUTS = SAMPLER) -> list[dict]:
    laws, by, holdout, stack_holdout = CANDIDATES[task]
    rows = []
    for group, ds in load_task(task).items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # sampler warnings are in the table (rhat, converged)
            warnings.simplefilter("ignore")
            out = bs.validate_laws(ds, [bs.load_law(law) for law in laws], by=by, holdout=holdout,
                                   stack_holdout=stack_holdout, rng_key=seed,
                                   fit_kwargs={"sampler": sampler, "likelihood": TASKS[task].likelihood})
        wall = time.perf_counter() - t0
        split = out.table.attrs["split"]
        for r in out.table.itertuples():
            rhat, steps = _fit_stats(out.fits[r.law]) if r.law in out.fits else (float("nan"), float("nan"))
            weight = {"stack": "", "stack_loo": ""}.get(r.law, f"{r.weight:.2f} / {r.weight_loo:.2f}")
            rows.append({"task": task if group == "all" else f"{task} / {group}", "held out": split["held_out"],
                         "n test": int(r.n_test), "law": r.law, "weight (extrap. / LOO)": weight, "R²": r.r2,
                         "LPD": r.lpd, "cover90": r.cover90, "LPD stack fold": r.lpd_stack_fold, "rhat": rhat,
                         "steps": steps, "converged": bool(r.converged)})
        print(f"{task} / {group}: {wall:.0f} s ({split['stack_fold']} fitted the weights, "
              f"{split['n_stack_test']} points)", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", choices=sorted(CANDIDATES), help="default: every task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the rows to this JSON file")
    add_sampler_arguments(p, SAMPLER)  # --chains/--warmup/--samples cut a task that is too slow on a busy machine
    args = p.parse_args(argv)
    sampler = sampler_from_args(args)
    rows = []
    for task in args.task or list(CANDIDATES):
        rows += run_task(task, args.seed, sampler)
        if args.json:  # after each task: a long run keeps what it finished
            Path(args.json).write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
