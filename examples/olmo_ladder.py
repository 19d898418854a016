"""Task accuracy of the OLMo 2 7B and 13B models predicted from the OLMo ladder (Bhagia et al. 2024), with intervals.

    python examples/olmo_ladder.py                          # all eight tasks, both targets
    python examples/olmo_ladder.py --task hellaswag_val     # one task (or several)
    python examples/olmo_ladder.py --quick                  # smoke run (tiny sampler, one task, thinned step 2)
    python examples/olmo_ladder.py --quick --init median --chain-method sequential --no-pointwise   # the tests' run

Data: the bundled ladder table (bayescale/datasets/olmo_ladder, Apache-2.0): 16 ladder runs (190M-1.3B parameters,
1-10x Chinchilla tokens) and the two held-out targets, 7B-4T and 13B-5T. Per task:

- step 1: ``hoffmann2022`` fitted to the 16 runs' final task loss (bits per byte of the correct continuation);
- step 2: ``bhagia2024_sigmoid`` fitted to (task loss, accuracy) at every ladder checkpoint after the first 10% of each
  run, with run effects (``noise="run+latent"``: checkpoints of one run share an offset from the curve), the floor's prior
  around the task's chance rate;
- chained: :func:`bayescale.downstream.predict_chained` at each target's (N, D): step 1's posterior predictive pushed through
  step 2's posterior draws (independent fits, draws paired at random), with step 2's noise for a new run;
- one step: ``bhagia2024_accuracy_nd`` fitted to the 16 runs' final accuracy, predicted at the targets.

The sampler flags set step 2; the two 16-point fits (step 1, one step) run at no less than 4 chains x 1000 warmup +
1000 draws and target acceptance 0.99 (``SMALL_FIT_LEAST``: step 1's posterior tail needs the warmup and the small
steps, and these fits are cheap), ``--quick`` aside.

Prints per task and target: the predicted accuracy (median) with its 90% interval, the actual accuracy, the relative
error |median - actual| / actual, whether the interval covers the actual value, and the paper's relative error (the
repository's 13B-5T reproduction; none is bundled for 7B-4T). Also the one-step prediction and the step-2-only interval
(step 2 at the target's actual task loss), to show what step 1's uncertainty adds. ``--out`` writes the table as CSV.
``--no-pointwise`` fits without the per-point groups, which the table does not read (less to compile; the smoke test
runs so, with ``--quick --init median --chain-method sequential``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.datasets import olmo_ladder
from bayescale.analyses.downstream import load_downstream_law
from bayescale.infer.settings import NUTS, add_sampler_arguments, sampler_from_args

#: ± around the chance rate allowed for the accuracy floor (length-normalised accuracy of a model that knows nothing
#: sits within a few points of 1/options on these tasks: the 190M runs' first evaluations, 0.21-0.28 on 4-way tasks).
FLOOR_WIDTH = 0.05

#: Least sampler settings for the two 16-point fits (step 1, one step); they cost a minute or two, and step 2 (~630
#: points, the cost of a task) keeps the flags' settings. Step 1's posterior has a long, narrowing tail towards a low
#: floor E with a small exponent alpha (HellaSwag: E 0.45-0.62, alpha 0.16-0.42, A 7-460 in the 90% interval):
#: - 500 warmup steps did not adapt to it: PIQA's step 1 at 2 chains x 500 + 500 gave R-hat 1.21, one chain spending
#:   its first 200 draws at E ~ 0.4, alpha ~ 0.12, outside the converged 90% interval (E 0.61-0.83); at 4 x 1000 + 1000
#:   R-hat 1.008, ESS 570;
#: - the default step size diverges in the tail's narrow end: HellaSwag's step 1 at 4 x 1000 + 1000 and acceptance
#:   0.9 gave 6 divergent transitions, R-hat 1.047, ESS 103 (two chains reached E 0.436, two 0.477); at 0.99 none,
#:   R-hat 1.005, ESS 880 (74-141 leapfrog steps per draw instead of 28-57).
SMALL_FIT_LEAST = dict(num_chains=4, num_warmup=1000, num_samples=1000, target_accept_prob=0.99)


def floor_prior(task: str) -> str:
    chance = olmo_ladder.CHANCE[task]
    return f"Uniform({chance - FLOOR_WIDTH:.4f}, {chance + FLOOR_WIDTH:.4f})"


def interval(values: np.ndarray) -> tuple[float, float, float]:
    lo, mid, hi = np.quantile(values.reshape(-1), [0.05, 0.5, 0.95])
    return float(mid), float(lo), float(hi)


def small_fit_sampler(sampler: NUTS) -> NUTS:
    """The settings of the 16-point fits: ``sampler`` with chains, warmup, draws and target acceptance each raised to
    at least :data:`SMALL_FIT_LEAST` (the other fields kept)."""
    return sampler.replace(**{name: max(getattr(sampler, name), least) for name, least in SMALL_FIT_LEAST.items()})


def fit_task(task: str, sampler: NUTS, seed: int, thin: int = 1, pointwise: bool = True,
             small_sampler: NUTS | None = None) -> dict:
    """The three fits of one task (step 1, step 2, one step); step 2 on every ``thin``-th checkpoint; ``pointwise``:
    keep the per-point groups (``bs.fit``), which the table does not read; ``small_sampler``: the settings of the
    16-point fits (step 1, one step; default ``sampler``)."""
    step1_data = bs.load_runs(olmo_ladder.step1_table(task), check_units=False,  # bits per byte, not nats per token
                              source=f"OLMo ladder, {task} final bpb")
    step2_data = bs.load_runs(olmo_ladder.step2_table(task).iloc[::thin], inputs=("L",), target="unit_interval",
                              check_units=False, source=f"OLMo ladder, {task} checkpoints (bpb, accuracy)")
    final = olmo_ladder.final_accuracy(task, role="ladder")
    one_data = bs.load_runs(final[["run", "N", "D"]].assign(loss=final["accuracy"]), target="unit_interval",
                            source=f"OLMo ladder, {task} final accuracy")
    floor = {"c": floor_prior(task)}
    small = dict(sampler=sampler if small_sampler is None else small_sampler, pointwise=pointwise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.FewPointsWarning)  # 16 points for 6-8 parameters: the priors carry it
        fits = {
            "step1": bs.fit(bs.load_law("hoffmann2022"), step1_data, rng_key=seed, **small),
            "step2": bs.fit(load_downstream_law("bhagia2024_sigmoid"), step2_data, rng_key=seed,
                            noise="run+latent", priors=floor, sampler=sampler, pointwise=pointwise),
            "one_step": bs.fit(load_downstream_law("bhagia2024_accuracy_nd"), one_data, rng_key=seed, priors=floor,
                               **small),
        }
    return fits


def predict_targets(task: str, fits: dict, allow: bool) -> list[dict]:
    targets = olmo_ladder.final_accuracy(task, role="target")
    paper = olmo_ladder.paper_errors()
    rows = []
    for _, t in targets.iterrows():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bs.ExtrapolationWarning)  # the targets are 0.7-1 decade beyond on purpose
            chained = bs.downstream.predict_chained(fits["step1"], fits["step2"], N=t["N"], D=t["D"], allow_unconverged=allow)
            alone = bs.predict(fits["step2"], kind="predictive", L=t["loss"], allow_unconverged=allow)
            one = bs.predict(fits["one_step"], kind="predictive", N=t["N"], D=t["D"], allow_unconverged=allow)
        mid, lo, hi = interval(chained["loss"].values)
        loss_mid, loss_lo, loss_hi = interval(chained["intermediate"].values)
        _, alone_lo, alone_hi = interval(alone["loss"].values)
        one_mid, one_lo, one_hi = interval(one["loss"].values)
        actual = float(t["accuracy"])
        rows.append(dict(
            task=task, target=t["run"], pred=mid, lo=lo, hi=hi, actual=actual,
            rel_error=abs(mid - actual) / actual, covered=bool(lo <= actual <= hi),
            paper_rel_error=float(paper.loc[task, "Rel Error"]) if t["run"] == "13B-5T" else np.nan,
            loss_pred=loss_mid, loss_lo=loss_lo, loss_hi=loss_hi, loss_actual=float(t["loss"]),
            loss_covered=bool(loss_lo <= t["loss"] <= loss_hi),
            step2_only_width=alone_hi - alone_lo, chained_width=hi - lo,
            one_step_pred=one_mid, one_step_lo=one_lo, one_step_hi=one_hi,
            one_step_rel_error=abs(one_mid - actual) / actual, one_step_covered=bool(one_lo <= actual <= one_hi),
        ))
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", nargs="+", default=["all"], choices=["all", *olmo_ladder.TASKS],
                        help="one or more tasks (default: all eight)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one task, 2 chains x 50 warmup + 50 draws for every fit (the other sampler "
                             "flags kept), step 2 on every 8th checkpoint")
    parser.add_argument("--no-pointwise", action="store_true",
                        help="fit without the per-point groups (posterior predictive, log-likelihood, prior "
                             "predictive), which the table does not read: less to compile, the same posterior")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the table as CSV here")
    add_sampler_arguments(parser, NUTS(num_chains=4, num_warmup=1000, num_samples=1000))
    args = parser.parse_args(argv)
    sampler = sampler_from_args(args)
    tasks = olmo_ladder.TASKS if "all" in args.task else tuple(args.task)
    small = small_fit_sampler(sampler)
    if args.quick:  # a smoke run: every fit at the tiny settings
        sampler = small = sampler.replace(num_chains=2, num_warmup=50, num_samples=50, progress_bar=False)
        tasks = tasks[:1]
    print(f"step 2: {sampler.num_chains} chains x {sampler.num_warmup} warmup + {sampler.num_samples} draws, target "
          f"acceptance {sampler.target_accept_prob}; step 1 and one step: {small.num_chains} x {small.num_warmup} + "
          f"{small.num_samples}, {small.target_accept_prob}")
    rows, notes = [], []
    for task in tasks:
        start = time.perf_counter()
        fits = fit_task(task, sampler, args.seed, thin=8 if args.quick else 1, pointwise=not args.no_pointwise,
                        small_sampler=small)
        verdicts = {name: bs.convergence(fit) for name, fit in fits.items()}
        bad = [name for name, v in verdicts.items() if not v.converged]
        rhat = {name: float(bs.summary(fit)["rhat"].max()) for name, fit in fits.items()}
        steps = {name: float(fit["sample_stats"]["n_steps"].mean()) for name, fit in fits.items()}
        for row in predict_targets(task, fits, allow=bool(bad)):
            row.update(seconds=time.perf_counter() - start, unconverged=",".join(bad),
                       **{f"rhat_{k}": v for k, v in rhat.items()}, **{f"steps_{k}": v for k, v in steps.items()})
            rows.append(row)
        if bad:
            notes.append(f"{task}: NOT CONVERGED ({', '.join(bad)}): its numbers are not to be acted on")
        if args.out is not None:  # after every task, so a long run keeps what it has done
            args.out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    show = table.assign(
        predicted=[f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in zip(table["pred"], table["lo"], table["hi"])],
        rel=[f"{v:.1%}" for v in table["rel_error"]],
        paper=[f"{v:.1%}" if np.isfinite(v) else "-" for v in table["paper_rel_error"]],
        one_step=[f"{p:.3f} ({e:.1%}{', in' if c else ', out'})" for p, e, c in
                  zip(table["one_step_pred"], table["one_step_rel_error"], table["one_step_covered"])],
        widths=[f"{a:.3f} / {c:.3f}" for a, c in zip(table["step2_only_width"], table["chained_width"])],
        max_rhat=table[["rhat_step1", "rhat_step2", "rhat_one_step"]].max(axis=1).map(lambda v: f"{v:.3f}"),
    )
    print(show[["task", "target", "predicted", "actual", "rel", "covered", "paper", "one_step", "widths",
                "max_rhat"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    chained = table["covered"].mean()
    print(f"\nchained 90% interval covers {table['covered'].sum()}/{len(table)} ({chained:.0%}); one step "
          f"{table['one_step_covered'].sum()}/{len(table)}; step 1 task-loss interval covers "
          f"{table['loss_covered'].sum()}/{len(table)}")
    print(f"mean relative error: chained {table['rel_error'].mean():.1%}, one step "
          f"{table['one_step_rel_error'].mean():.1%}; paper (13B-5T) {table['paper_rel_error'].mean():.1%} vs ours "
          f"(13B-5T) {table.loc[table['target'] == '13B-5T', 'rel_error'].mean():.1%}")
    for note in notes:
        print(note)
    if args.out is not None:
        print(f"table: {args.out}")
    return table


if __name__ == "__main__":
    main()
