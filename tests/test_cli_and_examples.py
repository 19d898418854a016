"""The command line and every example script, run with tiny settings."""

from __future__ import annotations

import runpy
import sys

import pytest

from bayescale.cli import main
from bayescale.datasets import load_chinchilla

#: Sampler flags that leave the least to compile, which is most of a tiny fit's time: chains start at the prior median
#: (no multi-start MAP), and two chains run one after the other (``sequential``). For these law fits the two programs
#: of ``parallel`` (one chain per host device) took 31-57 s to compile on a shared 2-core machine, the sequential ones
#: 9-14 s in all. Neither the start nor the chain layout is what these tests check.
LEAST_COMPILING = ["--init", "median", "--chain-method", "sequential"]


#: The sampler of the CLI fit and of the Chinchilla example: the same law, data (240 runs) and settings, so the
#: example's fit reuses every program the CLI's fit compiled (in-process, or from the persistent compilation cache).
CHINCHILLA_SAMPLER = ["--chains", "2", "--warmup", "150", "--samples", "150", "--no-progress", *LEAST_COMPILING]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    """The bundled Chinchilla runs as a CSV with its own column names (read back with --column)."""
    path = tmp_path_factory.mktemp("cli") / "runs.csv"
    load_chinchilla().to_dataframe()[["N", "D", "loss"]].rename(columns={"N": "model_n", "D": "tokens"}).to_csv(
        path, index=False)
    return path


def test_cli_round_trip(csv, tmp_path, capsys):
    fit = tmp_path / "fit.nc"
    argv = ["fit", str(csv), "--law", "hoffmann2022", "--out", str(fit), "--column", "N=model_n", *CHINCHILLA_SAMPLER]
    assert main(argv) == 0
    assert "saved" in capsys.readouterr().out and fit.is_file()
    assert main(["summary", str(fit)]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "rhat" in out and "divergences" in out
    assert main(["plan", str(fit), "--compute", "1e21", "--compute", "5.76e23"]) == 0
    assert "N_opt" in capsys.readouterr().out
    assert main(["predict", str(fit), "--at", "N=7e10", "--at", "D=1.4e12"]) == 0
    assert "median" in capsys.readouterr().out
    assert main(["ppc", str(fit), "--out", str(tmp_path / "ppc.png")]) == 0
    assert (tmp_path / "ppc.png").is_file()
    assert main(["report", str(fit), "--out", str(tmp_path / "report")]) == 0
    assert "compute-optimal" in (tmp_path / "report" / "report.md").read_text().lower()
    assert main(["laws"]) == 0
    assert "hoffmann2022" in capsys.readouterr().out


def test_cli_errors_are_one_line(csv, tmp_path, capsys):
    assert main(["fit", str(csv), "--law", "hoffmann2022", "--out", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: missing column for 'N'") and "Traceback" not in err
    assert main(["summary", str(tmp_path / "nope.nc")]) == 2
    assert "no fit result at" in capsys.readouterr().err
    assert main(["fit", str(csv), "--law", "nolaw", "--out", str(tmp_path / "x.nc"), "--column", "N=model_n"]) == 2
    assert "unknown law 'nolaw': must be one of" in capsys.readouterr().err


def test_example_chinchilla(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    monkeypatch.setattr(sys, "argv", ["chinchilla.py", "--out", str(out), *CHINCHILLA_SAMPLER])
    runpy.run_path("examples/chinchilla.py", run_name="__main__")
    printed = capsys.readouterr().out
    assert "N*" in printed and "D*" in printed and "[" in printed
    for name in ("fit.nc", "ppc.png", "report.md"):
        assert (out / name).is_file()


def test_example_ouro_looped_draws_the_3x5_grid(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ouro"
    monkeypatch.setattr(sys, "argv", ["ouro_looped.py", "--out", str(out), "--checkpoints", "6", "--chains", "1",
                                      "--warmup", "40", "--samples", "40", *LEAST_COMPILING])
    runpy.run_path("examples/ouro_looped.py", run_name="__main__")
    printed = capsys.readouterr().out
    assert "fitting ouro2025 (noise run+ou)" in printed and "coverage of the 90% predictive band" in printed
    import matplotlib.image

    grid = matplotlib.image.imread(out / "ouro_grid.png")
    assert grid.shape[1] > 1.5 * grid.shape[0]  # 5 columns (sizes) by 3 rows (loop counts)
    assert (out / "fit.nc").is_file() and (out / "ouro_curves.csv").is_file()


def test_help_of_every_subcommand_prints(capsys):
    # argparse formats help strings with %: a bare "90%" in a help text made `bayescale --help` crash
    import argparse

    from bayescale import cli

    parser = cli._parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--help"])
    assert exit_info.value.code == 0
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        assert name in parser.format_help()
        assert sub.format_help()
    assert "50/90% bands" in capsys.readouterr().out
