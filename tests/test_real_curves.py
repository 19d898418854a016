"""examples/real_curves.py on the real Gemstones curves with tiny NUTS settings: table, fit log and figure written, with
the three treatments (final losses, checkpoints iid, run+ou curve model). About 60 s on 2 CPU cores."""

from __future__ import annotations

import runpy
import sys

import numpy as np
import pandas as pd
import pytest


def test_example_real_curves_gemstones(tmp_path, monkeypatch, capsys):
    out = tmp_path / "real"
    # --data-dir without a gemstones folder: the example falls back to the bundled copy (bayescale.datasets)
    monkeypatch.setattr(sys, "argv", ["real_curves.py", "--dataset", "gemstones", "--data-dir", "/nonexistent",
                                      "--out", str(out), "--chains", "1", "--init", "median",
                                      "--warmup", "40", "--samples", "40", "--no-pointwise"])
    runpy.run_path("examples/real_curves.py", run_name="__main__")
    printed = capsys.readouterr().out
    assert "(a) median [90%]" in printed and "(b) median [90%]" in printed and "(c) median [90%]" in printed
    assert "width (b)/(c)" in printed and "width (a)/(c)" in printed

    table = pd.read_csv(out / "gemstones_intervals.csv", index_col="quantity")
    assert list(table.index) == ["E", "A", "B", "alpha", "beta", "N*", "D*"]
    for t in "abc":
        for k in ("median", "lo", "hi", "width"):
            assert f"{t}_{k}" in table
        assert (table[f"{t}_lo"] <= table[f"{t}_median"]).all() and (table[f"{t}_median"] <= table[f"{t}_hi"]).all()
    assert np.isfinite(table[["ratio_b_over_c", "ratio_a_over_c"]].to_numpy()).all()
    assert table.loc["alpha", "published"] == pytest.approx(0.29287)

    fits = pd.read_csv(out / "gemstones_fits.csv")
    assert list(fits["treatment"]) == ["a", "b", "c"]
    assert list(fits["points"]) == [22, 220, 220]
    assert list(fits["noise"]) == ["iid", "iid", "run+ou"]

    import matplotlib.image

    figure = matplotlib.image.imread(out / "gemstones_intervals.png")
    assert figure.shape[1] > 2 * figure.shape[0]  # one panel per quantity, side by side
