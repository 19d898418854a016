"""Command line: ``bayescale fit | summary | plan | predict | ppc | report | laws``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

__all__ = ["main"]


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bayescale", description="Bayesian inference of neural scaling laws.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="fit a law to a run table (CSV or Parquet) and save the result (netCDF)")
    f.add_argument("table", help="CSV or Parquet run table, one row per run or checkpoint")
    f.add_argument("--law", required=True, help="catalogue id (see `bayescale laws`) or path to a .toml law file")
    f.add_argument("--out", required=True, help="output .nc file (written atomically)")
    f.add_argument("--column", action="append", metavar="NAME=COLUMN", help="map a variable to a column, e.g. N=params")
    f.add_argument("--prior", action="append", metavar="PARAM=EXPR", help='override a prior, e.g. E="Uniform(1, min_loss)"')
    f.add_argument("--likelihood", default="student_t", choices=["student_t", "normal"])
    f.add_argument("--chains", type=int, default=4)
    f.add_argument("--warmup", type=int, default=1000)
    f.add_argument("--samples", type=int, default=1000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-unit-check", action="store_true", help="accept implausible magnitudes (toy data)")
    f.add_argument("--strict", action="store_true", help="fail on sampler trouble instead of warning")
    f.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("summary", help="parameters, intervals, R-hat, ESS, divergences of a saved fit")
    s.add_argument("fit")
    s.add_argument("--prob", type=float, default=0.9)

    pl = sub.add_parser("plan", help="compute-optimal N*, D*, D/N and loss for budgets (C = 6ND)")
    pl.add_argument("fit")
    pl.add_argument("--compute", type=float, action="append", required=True, help="budget in FLOP (repeatable)")
    pl.add_argument("--prob", type=float, default=0.9)

    pr = sub.add_parser("predict", help="loss at given inputs, e.g. --at N=7e10 --at D=1.4e12")
    pr.add_argument("fit")
    pr.add_argument("--at", action="append", required=True, metavar="INPUT=VALUE")
    pr.add_argument("--kind", default="law", choices=["law", "predictive"])
    pr.add_argument("--prob", type=float, default=0.9)

    pp = sub.add_parser("ppc", help="real-vs-predicted figure with 50/90% bands")
    pp.add_argument("fit")
    pp.add_argument("--out", required=True, help="image file (.png, .pdf, .svg)")
    pp.add_argument("--x", default=None)
    pp.add_argument("--group", default=None)

    r = sub.add_parser("report", help="Markdown report with figures")
    r.add_argument("fit")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--compute", type=float, action="append", help="budgets for the plan (FLOP)")

    sub.add_parser("laws", help="list the law catalogue")
    return p


def _run(args: argparse.Namespace) -> int:
    import bayescale as bs
    from bayescale.summary import describe, summary

    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    if args.command == "laws":
        for law_id in bs.list_laws():
            law = bs.load_law(law_id)
            print(f"{law_id:16s} {law.formula}\n{'':16s} {law.citation}")
        return 0
    if args.command == "fit":
        law = bs.load_law(args.law)
        ds = bs.load_runs(
            args.table, columns=_pairs(args.column, "--column"), inputs=law.input_names, check_units=not args.no_unit_check
        )
        print(f"fitting {law.id} to {ds.sizes['point']} points from {args.table} ...", file=sys.stderr)
        try:
            result = bs.fit(
                law,
                ds,
                rng_key=args.seed,
                num_chains=args.chains,
                num_warmup=args.warmup,
                num_samples=args.samples,
                likelihood=args.likelihood,
                priors=_pairs(args.prior, "--prior"),
                strict=args.strict,
                progress_bar=False if args.no_progress else None,
            )
        except bs.SamplingError as err:  # keep the draws: the user decides what to do with a flagged fit
            if err.result is not None:
                bs.save(err.result, args.out)
                print(f"saved the flagged fit to {args.out}", file=sys.stderr)
            raise
        path = bs.save(result, args.out)
        print(summary(result).to_string(float_format="%.4g"))
        print(f"saved {path}")
        return 0
    result = bs.load(args.fit)
    if args.command == "summary":
        table = summary(result, args.prob)
        print(f"{result.attrs['law_id']}: {result.attrs['law_formula']}  ({result.attrs['n_points']} points)")
        print(table.to_string(float_format="%.4g"))
        print(f"divergences: {table.attrs['divergences']}")
        for w in table.attrs["warnings"]:
            print(f"warning: {w}")
        return 0
    if args.command == "plan":
        from bayescale.report import plan_table

        print(plan_table(result, args.compute, args.prob).to_string(float_format="%.4g"))
        return 0
    if args.command == "predict":
        from bayescale.predict import predict

        at = {k: float(v) for k, v in _pairs(args.at, "--at").items()}
        print(describe(predict(result, kind=args.kind, **at), args.prob).drop(columns="prediction").to_string(float_format="%.4g"))
        return 0
    if args.command == "ppc":
        from bayescale.plots import plot_ppc

        plot_ppc(result, x=args.x, group=args.group, path=args.out)
        print(f"wrote {args.out}")
        return 0
    if args.command == "report":
        from bayescale.report import write_report

        path = write_report(result, args.out, budgets=args.compute or [5.76e23])
        print(f"wrote {path}")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one line and exit with status 2 (no traceback)."""
    from bayescale import DataError, FormulaError, LawError, SamplingError

    args = _parser().parse_args(argv)
    warnings.simplefilter("default")
    try:
        return _run(args)
    except SamplingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (DataError, LawError, FormulaError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
