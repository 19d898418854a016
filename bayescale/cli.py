"""Command line: ``bayescale fit | summary | plan | compare | next | predict | ppc | report | validate | laws``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.errors import ArgumentError, DataError
from bayescale.infer.settings import add_sampler_arguments, sampler_from_args

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
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    common.add_argument("--strict", action="store_true",
                        help="exit non-zero (4) on any warning (for scripts); fit: fail on sampler trouble (exit 3)")
    gate = argparse.ArgumentParser(add_help=False)
    gate.add_argument("--allow-unconverged", action="store_true",
                      help="give numbers from a fit that did not converge (printed under a warning)")
    unusual = argparse.ArgumentParser(add_help=False)
    unusual.add_argument("--allow-unusual", action="store_true",
                         help="accept unusual but real data (swapped-looking N/D, extreme magnitudes) with a warning")
    unusual.add_argument("--loss-unit", default="nats", choices=["nats", "bits", "perplexity"],
                         help="unit of the loss column, converted to nats")
    p = argparse.ArgumentParser(prog="bayescale", description="Bayesian inference of neural scaling laws.")
    sub = p.add_subparsers(dest="command", required=True)
    _add = sub.add_parser

    def add_parser(name, *, parents=(), **kwargs):
        return _add(name, parents=[common, *parents], **kwargs)

    sub.add_parser = add_parser  # every command takes --debug and --strict

    f = sub.add_parser("fit", parents=[unusual], help="fit a law to a run table (CSV or Parquet) and save the result (netCDF)")
    f.add_argument("table", help="CSV or Parquet run table, one row per run or checkpoint")
    f.add_argument("--law", required=True, help="catalogue id (see `bayescale laws`) or path to a .toml law file")
    f.add_argument("--out", required=True, help="output .nc file (written atomically)")
    f.add_argument("--column", action="append", metavar="NAME=COLUMN", help="map a variable to a column, e.g. N=params")
    f.add_argument("--prior", action="append", metavar="PARAM=EXPR", help='override a prior, e.g. E="Uniform(1, min_loss)"')
    f.add_argument("--likelihood", default="student_t", choices=["student_t", "normal"])
    f.add_argument("--noise", default="auto",
                   help="residual structure: auto (iid for final losses, run+ou for curves), iid, or run/ou/hetero joined by +")
    f.add_argument("--min-tokens", type=float, default=None, help="drop checkpoints with fewer tokens D than this")
    add_sampler_arguments(f)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-unit-check", action="store_true", help="accept implausible magnitudes (toy data)")
    f.add_argument("--no-pointwise", action="store_true",
                   help="leave out the draws x points groups (posterior predictive, pointwise log-likelihood)")

    s = sub.add_parser("summary", help="parameters, intervals, R-hat, ESS, divergences of a saved fit")
    s.add_argument("fit")
    s.add_argument("--prob", type=float, default=0.9)

    pl = sub.add_parser("plan", parents=[gate], help="compute plan under the posterior: optimum, near-optimal region, a run, a target")
    pl.add_argument("fit")
    pl.add_argument("--compute", type=float, action="append", required=True, help="budget in FLOP (repeatable)")
    pl.add_argument("--prob", type=float, default=0.9)
    pl.add_argument("--epsilon", type=float, default=0.01, help="loss tolerance (nats) of the near-optimal region")
    pl.add_argument("--target", type=float, default=None, help="target loss: P(L* < target), budget to reach it")
    pl.add_argument("--at", default=None, metavar="N=..,D=..", help="a proposed run, e.g. --at N=7e10,D=1.4e12")
    pl.add_argument("--flops-per-param-token", type=float, default=6.0, help="k in C = k*N*D")

    cmp = sub.add_parser("compare", parents=[gate], help="compare two fits: P(B beats A) and B's compute multiplier over A")
    cmp.add_argument("fit_a")
    cmp.add_argument("fit_b")
    cmp.add_argument("--compute", type=float, action="append", required=True, help="budget in FLOP (repeatable)")
    cmp.add_argument("--prob", type=float, default=0.9)
    cmp.add_argument("--ignore-scale", action="store_true",
                     help="compare even when the two fits' losses differ by more than 1.25x inside their data")

    nx = sub.add_parser("next", parents=[gate], help="rank candidate runs (CSV: N, D[, cost]) by expected uncertainty reduction per FLOP")
    nx.add_argument("fit")
    nx.add_argument("candidates", help="CSV with columns N, D and optionally cost (FLOP)")
    nx_target = nx.add_mutually_exclusive_group(required=True)
    nx_target.add_argument("--target-at", metavar="N=..,D=..", help="pin down the loss at these inputs")
    nx_target.add_argument("--target-compute", type=float, help="pin down the compute-optimal N* (or L*) at this budget")
    nx.add_argument("--quantity", default=None, choices=["loss", "N_opt", "loss_opt"])
    nx.add_argument("--budget", type=float, default=None, help="FLOP for new runs: choose the set to train within it")

    pr = sub.add_parser("predict", parents=[gate], help="loss at given inputs, e.g. --at N=7e10 --at D=1.4e12")
    pr.add_argument("fit")
    pr.add_argument("--at", action="append", required=True, metavar="INPUT=VALUE")
    pr.add_argument("--kind", default="law", choices=["law", "predictive"])
    pr.add_argument("--prob", type=float, default=0.9)

    pp = sub.add_parser("ppc", help="real-vs-predicted figure with 50/90%% bands")
    pp.add_argument("fit")
    pp.add_argument("--out", required=True, help="image file (.png, .pdf, .svg)")
    pp.add_argument("--x", default=None)
    pp.add_argument("--group", default=None)

    r = sub.add_parser("report", parents=[gate], help="self-contained HTML and Markdown report with figures")
    r.add_argument("fit")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--compute", type=float, action="append",
                   help="budgets for the plan (FLOP; default 5.76e23, Chinchilla's compute, and the report says so)")
    r.add_argument("--recipe", action="append", metavar="KEY=TEXT",
                   help='recipe notes, e.g. --recipe "parameter counting=all parameters incl. embeddings"')
    r.add_argument("--flops-per-param-token", type=float, default=6.0, help="k in C = k*N*D")

    v = sub.add_parser("validate", parents=[unusual], help="held-out validation: fit on part of the runs, score predictions of the rest")
    v.add_argument("table", help="CSV or Parquet run table")
    v.add_argument("--law", required=True, action="append",
                   help="catalogue id or path to a .toml law file; repeat it to rank several laws on one largest-scale "
                        "split by held-out log predictive density and stack them (docs/validation.md)")
    v.add_argument("--split", default="largest", choices=["largest", "rollout", "leave_one_out", "prefix"])
    v.add_argument("--by", default=None,
                   help="variable the split runs along: an input, C (=6ND) or a covariate (default N; prefix: D; leave_one_out: C)")
    v.add_argument("--fraction", type=float, action="append", help="prefix: share of each curve to fit on (repeatable; default 0.25 0.5 0.75)")
    v.add_argument("--noise", default="auto", help="noise model of the Bayesian fit: auto, iid, or run/ou/hetero joined by +")
    v.add_argument("--holdout", type=int, default=1, help="largest: how many of the largest values to hold out")
    v.add_argument("--stack-holdout", type=int, default=1,
                   help="several --law: how many of the next-largest values fit the stacking weights (nested fold)")
    v.add_argument("--min-train", type=int, default=3, help="rollout: fewest values to fit on")
    v.add_argument("--max-folds", type=int, default=3, help="rollout: keep the last folds only")
    v.add_argument("--baseline", action="store_true", help="also fit the classic Huber + bootstrap baseline")
    v.add_argument("--bootstrap", type=int, default=200, help="baseline bootstrap resamples")
    v.add_argument("--column", action="append", metavar="NAME=COLUMN")
    add_sampler_arguments(v)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--no-unit-check", action="store_true")
    v.add_argument("--out", default=None, help="figure file (.png, .pdf, .svg); the table is printed")
    v.add_argument("--csv", default=None, help="also write the table as CSV")

    sub.add_parser("laws", help="list the law catalogue")
    return p


def _load_table(args: argparse.Namespace, law):
    import bayescale as bs

    return bs.load_runs(
        args.table, columns=_pairs(args.column, "--column"), inputs=law.input_names, check_units=not args.no_unit_check,
        allow_unusual=args.allow_unusual, loss_unit=args.loss_unit,
        target=law.target.kind,
    )


def _validate_laws(args: argparse.Namespace) -> int:
    """``validate`` with several ``--law``: one largest-scale split, laws ranked by held-out LPD, and their stack."""
    import types

    import bayescale as bs

    if args.baseline or args.out:
        raise ArgumentError("--baseline and --out take one --law (with several, the table ranks the laws and their stack)")
    laws = [bs.load_law(law) for law in args.law]
    inputs = tuple(dict.fromkeys(n for law in laws for n in law.input_names))
    ds = _load_table(args, types.SimpleNamespace(input_names=inputs, target=laws[0].target))
    out = bs.validate_laws(ds, laws, args.split, by=args.by, holdout=args.holdout, stack_holdout=args.stack_holdout,
                           rng_key=args.seed,
                           fit_kwargs=dict(sampler=sampler_from_args(args).replace(progress_bar=False), noise=args.noise))
    split = out.table.attrs["split"]
    print(f"held out: {split['held_out']}; stacking weights fitted on {split['stack_fold']} "
          f"({split['n_stack_test']} points, the laws fitted without them)")
    print(out.table.to_string(index=False, float_format="%.4g"))
    if args.csv:
        out.table.to_csv(args.csv, index=False)
    return 0


def _run(args: argparse.Namespace) -> int:
    import bayescale as bs
    from bayescale.results.summary import describe, summary

    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    if args.command == "laws":
        for law_id in bs.list_laws():
            law = bs.load_law(law_id)
            print(f"{law_id:16s} {law.formula}\n{'':16s} {law.citation}")
        return 0
    if args.command == "fit":
        from bayescale.results.io import check_destination

        check_destination(args.out, inputs=[args.table, args.law], what="--out")  # before minutes of sampling
        law = bs.load_law(args.law)
        ds = _load_table(args, law)
        print(f"fitting {law.id} to {ds.sizes['point']} points from {args.table} ...", file=sys.stderr)
        try:
            result = bs.fit(
                law,
                ds,
                sampler=sampler_from_args(args),
                rng_key=args.seed,
                likelihood=args.likelihood,
                noise=args.noise,
                min_tokens=args.min_tokens,
                priors=_pairs(args.prior, "--prior"),
                strict=args.strict,
                pointwise=not args.no_pointwise,
            )
        except bs.SamplingError as err:  # keep the draws: the user decides what to do with a flagged fit
            if err.result is not None:
                bs.save(err.result, args.out, inputs=[args.table])
                print(f"saved the flagged fit to {args.out}", file=sys.stderr)
            raise
        path = bs.save(result, args.out, inputs=[args.table])
        print(summary(result).to_string(float_format="%.4g"))
        _print_verdict(result)
        _residual_warning(result)
        print(f"saved {path}")
        return 0
    if args.command == "validate":
        from bayescale.validation.holdout import plot_validation, validate

        if len(args.law) > 1:
            return _validate_laws(args)
        law = bs.load_law(args.law[0])
        ds = _load_table(args, law)
        table = validate(
            law, ds, args.split, by=args.by, holdout=args.holdout, min_train=args.min_train, max_folds=args.max_folds,
            fractions=tuple(args.fraction or (0.25, 0.5, 0.75)),
            methods=("bayes", "baseline") if args.baseline else ("bayes",), rng_key=args.seed,
            fit_kwargs=dict(sampler=sampler_from_args(args).replace(progress_bar=False), noise=args.noise),
            baseline_kwargs=dict(num_bootstrap=args.bootstrap),
        )
        print(table.drop(columns=["fold"]).to_string(index=False, float_format="%.4g"))
        if args.csv:
            table.to_csv(args.csv, index=False)
        if args.out:
            plot_validation(table, path=args.out)
            print(f"wrote {args.out}")
        return 0
    result = bs.load(args.fit_a if args.command == "compare" else args.fit)
    if args.command == "summary":
        table = summary(result, args.prob)
        print(f"{result.attrs['law_id']}: {result.attrs['law_formula']}  ({result.attrs['n_points']} points)")
        print(table.to_string(float_format="%.4g"))
        print(f"divergences: {table.attrs['divergences']}")
        for w in table.attrs["warnings"]:
            _warn(w)
        _print_verdict(result)
        _residual_warning(result)
        return 0
    if args.command == "plan":
        from bayescale.planning.optimum import format_plan, plan

        at = None
        if args.at:
            at = {k: _float(v, f"--at {k}") for k, v in _pairs(args.at.split(","), "--at").items()}
        _banner(result, args)
        tree = plan(result, args.compute, epsilon=args.epsilon, target=args.target, at=at, prob=args.prob,
                    flops_per_param_token=args.flops_per_param_token, allow_unconverged=args.allow_unconverged)
        print(format_plan(tree))
        _residual_warning(result)
        return 0
    if args.command == "compare":
        from bayescale.planning.optimum import compare_fits, format_comparison
        from bayescale.results.extrapolation import ExtrapolationWarning

        other = bs.load(args.fit_b)
        _banner(result, args)
        _banner(other, args)
        with warnings.catch_warnings(record=True) as caught:  # format_comparison prints the comparison's warnings
            warnings.simplefilter("always")
            cmp = compare_fits(result, other, args.compute, check_scale=not args.ignore_scale,
                               allow_unconverged=args.allow_unconverged)
        print(format_comparison(cmp, args.prob, names=(args.fit_a, args.fit_b)))
        listed = [str(w) for w in cmp.attrs.get("warnings", [])]
        _WARNINGS.extend(_one_line(w) for w in listed)  # printed above; --strict counts them
        for w in caught:  # the others (a fit that did not converge, passed with --allow-unconverged), once each
            if issubclass(w.category, ExtrapolationWarning):
                continue  # compare_fits lists every extrapolation past its threshold in attrs["warnings"], printed above
            if not any(str(w.message) in text or text in str(w.message) for text in listed):
                _warn(str(w.message))
        return 0
    if args.command == "next":
        from bayescale.planning.design import rank_next_experiments

        candidates = _read_candidates(args.candidates)
        _banner(result, args)
        if args.target_at:
            target = {k: _float(v, f"--target-at {k}") for k, v in _pairs(args.target_at.split(","), "--target-at").items()}
        else:
            target = args.target_compute
        ranking = rank_next_experiments(result, candidates, target=target, quantity=args.quantity, budget=args.budget,
                                        allow_unconverged=args.allow_unconverged)
        print(f"target: {ranking.attrs['quantity']} at {ranking.attrs['target']}; ranked by expected variance "
              "reduction (log scale) per FLOP, each run alone")
        print(ranking.to_string(float_format="%.4g"))
        if args.budget is not None:
            a = ranking.attrs
            print(f"within {args.budget:.3g} FLOP train the runs with a 'pick' number ({a['set_cost']:.3g} FLOP): "
                  f"expected posterior sd of the target x{a['set_interval_shrink']:.3f}")
        return 0
    if args.command == "predict":
        from bayescale.results.predict import predict

        at = {k: _float(v, f"--at {k}") for k, v in _pairs(args.at, "--at").items()}
        _banner(result, args)
        print(describe(predict(result, kind=args.kind, allow_unconverged=args.allow_unconverged, **at), args.prob).drop(columns="prediction").to_string(float_format="%.4g"))
        return 0
    if args.command == "ppc":
        from bayescale.results.plots import plot_ppc

        plot_ppc(result, x=args.x, group=args.group, path=args.out)
        print(f"wrote {args.out}")
        return 0
    if args.command == "report":
        from bayescale.report import write_report

        path = write_report(result, args.out, budgets=args.compute, recipe=_pairs(args.recipe, "--recipe"),
                            flops_per_param_token=args.flops_per_param_token, allow_unconverged=args.allow_unconverged)
        if not bs.convergence(result).converged:
            _warn(f"{args.fit} did not converge: the report opens with a warning banner"
                  + (" and its plan is not trustworthy" if args.allow_unconverged else " and shows no plan"))
        print(f"wrote {path}")
        return 0
    raise AssertionError(args.command)


_WARNINGS: list[str] = []  # the warnings this command printed (for --strict)


def _one_line(text: str) -> str:
    """A multi-line message as one line: sub-items joined by '; '."""
    return "; ".join(part.strip() for part in str(text).replace(":\n", "\n").splitlines() if part.strip())


def _warn(text: str) -> None:
    line = _one_line(text)
    _WARNINGS.append(line)
    print(f"warning: {line}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning for the command line: one clean line, no source file or line."""
    _warn(str(message))


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ArgumentError(f"{what}: {text!r} is not a number") from None


def _read_candidates(path: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise DataError(f"candidates table {path!r} does not exist")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the candidates table {path!r} as CSV: {_one_line(err)}") from None


def _print_verdict(result) -> None:
    import bayescale as bs
    from bayescale.infer.diagnostics import describe_convergence

    verdict = bs.convergence(result)
    if verdict.checked and not verdict.converged:
        _warn(f"the fit did NOT converge ({'; '.join(verdict.reasons)}): plan, predict, compare and next refuse it "
              "unless --allow-unconverged")
    else:
        print(f"convergence: {describe_convergence(result)}")


def _residual_warning(result) -> None:
    """Warn when the fit misses systematically along an input (:func:`bayescale.check_residuals`); results without
    the per-point groups it reads (``pointwise=False``, baselines, batch members) are not checked."""
    import bayescale as bs
    from bayescale.results.contract import ResultError

    try:
        table = bs.check_residuals(result)
    except ResultError:
        return
    if not table.attrs["passes"]:
        _warn(table.attrs["message"])


def _banner(result, args) -> None:
    """The loud banner over numbers computed from a non-converged fit with --allow-unconverged."""
    import bayescale as bs

    verdict = bs.convergence(result)
    if not verdict.converged and getattr(args, "allow_unconverged", False):
        print("!" * 100)
        print(f"!! NOT CONVERGED ({result.attrs.get('law_id')}): {'; '.join(verdict.reasons)}")
        print("!! the numbers below were computed anyway (--allow-unconverged) and are NOT trustworthy")
        print("!" * 100)


def main(argv: list[str] | None = None) -> int:
    """Entry point. User mistakes print one line ``error: ...`` and exit 2 (3: a fit that did not converge or failed
    ``--strict`` sampling checks; 4: ``--strict`` and a warning was printed); ``--debug`` shows the traceback.
    Warnings print as one line ``warning: ...``."""
    from bayescale import BayescaleError, ConvergenceError, FormulaError, SamplingError

    args = _parser().parse_args(argv)
    _WARNINGS.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        try:
            code = _run(args)
        except (SamplingError, ConvergenceError) as err:
            if args.debug:
                raise
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 3
        except (BayescaleError, FormulaError, ValueError, OSError) as err:
            if args.debug:
                raise
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            if args.debug:
                raise
            print("error: interrupted", file=sys.stderr)
            return 130
        except Exception as err:  # a bug, not a user mistake: still one line, the traceback on request
            if args.debug:
                raise
            print(f"error: internal error {type(err).__name__}: {_one_line(err)} (rerun with --debug for the "
                  "traceback, and please report it)", file=sys.stderr)
            return 1
    if args.strict and _WARNINGS and code == 0:
        print(f"error: --strict: {len(_WARNINGS)} warning(s) above", file=sys.stderr)
        return 4
    return code


if __name__ == "__main__":
    sys.exit(main())
