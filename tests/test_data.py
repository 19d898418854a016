"""Run tables: `bayescale.load_runs` validation and `bayescale.data.check_identifiable`."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale as bs
from bayescale.data import check_identifiable
from bayescale.laws.catalogue import parse_law_text

SIZES = np.array([1e8, 4e8, 1.6e9])
TOKENS = np.array([2e9, 8e9, 3.2e10])


def base_table() -> pd.DataFrame:
    """A valid 3 x 3 grid (9 rows) with Chinchilla-like losses."""
    N, D = (m.ravel() for m in np.meshgrid(SIZES, TOKENS, indexing="ij"))
    loss = 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28
    return pd.DataFrame({"N": N, "D": D, "loss": loss})


def with_value(column, rows, value):
    def make(tmp_path):
        df = base_table()
        df[column] = df[column].astype(object) if isinstance(value, str) else df[column]
        df.loc[list(rows), column] = value
        return df, {}

    return make


def transformed(fn, **kwargs):
    def make(tmp_path):
        return fn(base_table()), kwargs

    return make


def file_with(name, content):
    def make(tmp_path):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path, {}

    return make


BAD = [
    # missing columns: the message names the canonical variable, what it is, the aliases tried, and the fix
    ("missing-D", transformed(lambda df: df.drop(columns="D")),
     r"missing column for 'D' \(training tokens\): none of \['D', 'D_tokens', 'tokens', .*\] is in the table\. "
     r"The table has \['N', 'loss'\]; pass columns=\{'D': '<your column>'\}"),
    ("missing-loss", transformed(lambda df: df.rename(columns={"loss": "xent"})),
     r"missing column for 'loss' \(loss in nats/token\).*The table has \['N', 'D', 'xent'\]; pass columns=\{'loss': "),
    ("missing-N-and-D", transformed(lambda df: df.drop(columns=["N", "D"])),
     r"missing column for 'N' \(parameters\).*; missing column for 'D' \(training tokens\).*pass columns=\{'N': "),
    ("missing-custom-input", transformed(lambda df: df, inputs=("N", "D", "T_m")),
     r"missing column for 'T_m' \(maximum loop steps\): none of \['T_m', 'Tm', 'loops'\]"),
    # non-numeric values: column and rows named, with the offending values
    ("non-numeric-loss", with_value("loss", [2], "abc"), r"column 'loss' \(loss\) must be numeric: rows \[2\] hold 'abc'"),
    ("non-numeric-N", with_value("N", [0, 5], "70B"), r"column 'N' \(N\) must be numeric: rows \[0, 5\] hold '70B', '70B'"),
    # NaN / inf
    ("nan-loss", with_value("loss", [1], np.nan), r"column 'loss' \(loss\) has NaN or infinite values at rows \[1\]"),
    ("inf-D", with_value("D", [3, 4], np.inf), r"column 'D' \(D\) has NaN or infinite values at rows \[3, 4\]"),
    ("minus-inf-N", with_value("N", [8], -np.inf), r"column 'N' \(N\) has NaN or infinite values at rows \[8\]"),
    # non-positive
    ("N-zero", with_value("N", [0], 0.0), r"column 'N' \(N\) must be > 0: rows \[0\] hold 0"),
    ("N-negative", with_value("N", [2, 7], -1e8), r"column 'N' \(N\) must be > 0: rows \[2, 7\] hold -1e\+08, -1e\+08"),
    ("D-zero", with_value("D", [4], 0.0), r"column 'D' \(D\) must be > 0: rows \[4\] hold 0"),
    ("D-negative-when-nonnegative", lambda tmp: (with_value("D", [4], -1.0)(tmp)[0], {"nonnegative": ("D",)}),
     r"column 'D' \(D\) must be >= 0: rows \[4\] hold -1"),
    ("loss-zero", with_value("loss", [6], 0.0), r"column 'loss' \(loss\) must be > 0: rows \[6\] hold 0"),
    ("loss-negative", with_value("loss", [6], -2.5), r"column 'loss' \(loss\) must be > 0: rows \[6\] hold -2\.5"),
    # duplicates: rows named, and the rows they repeat
    ("duplicate-row", transformed(lambda df: pd.concat([df, df.iloc[[0]]], ignore_index=True)),
     r"duplicate rows: rows \[9\] repeat earlier rows \[0\] in every column \(N, D, loss\); drop them or add a run/seed column"),
    ("duplicate-rows", transformed(lambda df: pd.concat([df, df.iloc[[2, 5]], df.iloc[[2]]], ignore_index=True)),
     r"duplicate rows: rows \[9, 10, 11\] repeat earlier rows \[2, 5\]"),
    ("duplicate-with-run", transformed(lambda df: pd.concat([df, df.iloc[[4]]], ignore_index=True).assign(run=[f"r{i}" for i in range(9)] + ["r4"])),
     r"duplicate rows: rows \[9\] repeat earlier rows \[4\] in every column \(run, N, D, loss\)"),
    # implausible units
    ("tokens-in-billions", transformed(lambda df: df.assign(D=df.D / 1e9)),
     r"column 'D' \(D\) looks like it is not in tokens: its largest value is 32, below 100000\. If it is in millions "
     r"or billions, multiply it out; D < N in 9 of 9 rows .*If the data are real, load them with "
     r"load_runs\(\.\.\., allow_unusual=True\) \(--allow-unusual\); for toy data check_units=False"),
    ("params-in-millions", transformed(lambda df: df.assign(N=df.N / 1e6)),
     r"column 'N' \(N\) looks like it is not in parameters: its largest value is 1600, below 100000\..*"
     r"median D/N is 2e\+07 tokens per parameter, above 100000.*check_units=False"),
    ("loss-is-perplexity", transformed(lambda df: df.assign(loss=df.loss.where(df.index % 2 == 0, np.exp(df.loss) * 10))),
     r"column 'loss' \(loss\) has values above 20 at rows \[1, 3, 5, 7\]: losses must be cross-entropy in nats/token, "
     r"not perplexity or bits \(declare loss_unit= to convert\)"),
    # empty tables
    ("empty-frame", lambda tmp: (pd.DataFrame({"N": [], "D": [], "loss": []}), {}), r"the run table has no rows"),
    ("empty-dict", lambda tmp: ({}, {}), r"the run table has no rows"),
    ("csv-header-only", file_with("runs.csv", "N,D,loss\n"), r"the run table has no rows"),
    ("csv-zero-bytes", file_with("runs.csv", ""), r"run table '.*runs\.csv' is empty \(no header, no rows\)"),
    # files
    ("unsupported-suffix", file_with("runs.xlsx", b"PK\x03\x04"),
     r"cannot read '.*runs\.xlsx': the suffix must be one of \['\.csv', '\.tsv', '\.txt', '\.parquet', '\.pq'\]"),
    ("no-suffix", file_with("runs", "N,D,loss\n"), r"cannot read '.*runs': the suffix must be one of"),
    ("nonexistent-path", lambda tmp: (tmp / "nope.csv", {}), r"run table '.*nope\.csv' does not exist"),
    ("nonexistent-str-path", lambda tmp: (str(tmp / "nope.parquet"), {}), r"run table '.*nope\.parquet' does not exist"),
    ("directory", lambda tmp: (tmp, {}), r"run table '.*' does not exist"),
    # columns= mapping to a column the table lacks
    ("columns-to-nonexistent", transformed(lambda df: df, columns={"N": "n_param"}),
     r"columns=\{'N': 'n_param'\}: no column 'n_param'; the table has \['N', 'D', 'loss'\]"),
    # other inputs
    ("not-a-table", lambda tmp: (42, {}),
     r"run table must be a pandas DataFrame, a dict of columns or a CSV/Parquet path, got int"),
    ("ragged-dict", lambda tmp: ({"N": [1e8, 2e8], "D": [1e9], "loss": [3.0, 2.9]}, {}),
     r"cannot make a table of the dict of columns \['N', 'D', 'loss'\]"),
    ("run-empty", transformed(lambda df: df.assign(run=["a", None] + [f"r{i}" for i in range(7)])),
     r"column 'run' \(run\) is empty at rows \[1\]"),
]


@pytest.mark.parametrize(("make", "match"), [pytest.param(m, r, id=i) for i, m, r in BAD])
def test_load_runs_rejects(tmp_path, make, match):
    data, kwargs = make(tmp_path)
    with pytest.raises(bs.DataError, match=match):
        bs.load_runs(data, **kwargs)


def test_data_error_is_value_error():
    assert issubclass(bs.DataError, ValueError)


def test_many_bad_rows_are_elided():
    df = pd.concat([base_table()] * 3, ignore_index=True).assign(run=[f"r{i}" for i in range(27)])
    df.loc[:, "loss"] = -1.0
    with pytest.raises(bs.DataError, match=r"rows \[0, 1, 2, 3, 4, 5, 6, 7, … \(19 more\)\]"):
        bs.load_runs(df)


# ---------------------------------------------------------------------------------------------------------
# Valid tables
# ---------------------------------------------------------------------------------------------------------
def _write(df: pd.DataFrame, tmp_path, fmt: str):
    if fmt == "dict":
        return {k: df[k].tolist() for k in df.columns}
    if fmt == "frame":
        return df
    if fmt == "frame-reindexed":  # a non-default index must not matter
        return df.set_index(pd.Index(np.arange(len(df)) * 10 + 5))
    if fmt == "csv-reordered":
        path = tmp_path / "runs_reordered.csv"
        df[list(reversed(df.columns))].to_csv(path, index=False)
        return path
    path = tmp_path / f"runs.{fmt}"
    if fmt in ("parquet", "pq"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "txt", "parquet", "pq", "dict", "frame", "frame-reindexed", "csv-reordered"])
@pytest.mark.parametrize("with_run", [False, True], ids=["no-run", "run"])
def test_formats_give_the_same_dataset(tmp_path, fmt, with_run):
    df = base_table()
    if with_run:
        df["run"] = [f"model-{i}" for i in range(len(df))]
    ref = bs.load_runs(df)
    ds = bs.load_runs(_write(df, tmp_path, fmt))
    # CSV must round-trip float64 exactly (pandas writes repr precision), so the data are identical
    xr.testing.assert_identical(ds.drop_attrs(deep=False), ref.drop_attrs(deep=False))
    assert ds.attrs["data_hash"] == ref.attrs["data_hash"]
    assert ds.sizes["point"] == len(df)
    np.testing.assert_array_equal(ds["loss"].values, df["loss"].to_numpy())
    if fmt in ("dict", "frame", "frame-reindexed"):
        assert ds.attrs["source"] == "in-memory table"
    else:
        assert ds.attrs["source"] == _write(df, tmp_path, fmt).name


def test_data_hash_tracks_values():
    df = base_table()
    h = bs.load_runs(df).attrs["data_hash"]
    assert len(h) == 64 and int(h, 16) >= 0
    changed = df.copy()
    changed.loc[4, "loss"] = np.nextafter(changed.loc[4, "loss"], 10.0)  # one ulp
    assert bs.load_runs(changed).attrs["data_hash"] != h
    assert bs.load_runs(df.assign(run=[f"r{i}" for i in range(9)])).attrs["data_hash"] != h
    assert bs.load_runs(df.iloc[::-1]).attrs["data_hash"] != h  # order of points is part of the data
    assert bs.load_runs(df).attrs["data_hash"] == h


@pytest.mark.parametrize(
    ("names", "kwargs", "expected_mapping"),
    [
        ({"N": "N_params", "D": "D_tokens"}, {}, "N=N_params, D=D_tokens, loss=loss"),
        ({"N": "params", "D": "tokens", "loss": "final_loss"}, {}, "N=params, D=tokens, loss=final_loss"),
        ({"N": "n_params", "D": "n_tokens", "loss": "eval_loss"}, {}, "N=n_params, D=n_tokens, loss=eval_loss"),
        ({"N": "Model Size", "D": "train_tokens", "loss": "val_loss"}, {}, "N=Model Size, D=train_tokens, loss=val_loss"),
        ({"N": "size", "D": "toks", "loss": "xent"}, {"columns": {"N": "size", "D": "toks", "loss": "xent"}},
         "N=size, D=toks, loss=xent"),
        ({"N": "size"}, {"columns": {"N": "size"}}, "N=size, D=D, loss=loss"),
    ],
)
def test_column_aliases_and_mapping(names, kwargs, expected_mapping):
    ref = base_table()
    ds = bs.load_runs(ref.rename(columns=names), **kwargs)
    assert ds.attrs["columns"] == expected_mapping
    for canonical in ("N", "D", "loss"):
        np.testing.assert_array_equal(ds[canonical].values, ref[canonical].to_numpy())
        assert ds[canonical].attrs["column"] == names.get(canonical, canonical)
    assert ds["N"].attrs["description"] == "parameters"
    assert ds["D"].attrs["description"] == "training tokens"
    assert ds.attrs["data_hash"] == bs.load_runs(ref).attrs["data_hash"]  # the hash is of values, not names


def test_explicit_mapping_wins_over_alias():
    """The table has both 'N' (say, layers) and 'n_params'; columns= picks the latter, and 'N' is not read as N."""
    ref = base_table()
    df = ref.rename(columns={"N": "n_params"}).assign(N=[12.0] * 9)
    ds = bs.load_runs(df, columns={"N": "n_params"})
    np.testing.assert_array_equal(ds["N"].values, ref["N"].to_numpy())
    with pytest.raises(bs.DataError, match=r"column 'N' \(N\) looks like it is not in parameters"):
        bs.load_runs(df)  # without the mapping the alias 'N' is taken first


def test_run_alias_and_mapping():
    df = base_table().assign(run_id=[f"r{i}" for i in range(9)], name=[f"m{i}" for i in range(9)])
    assert list(bs.load_runs(df)["run"].values) == [f"r{i}" for i in range(9)]
    assert list(bs.load_runs(df, columns={"run": "name"})["run"].values) == [f"m{i}" for i in range(9)]


def test_law_input_outside_aliases_found_by_name():
    df = base_table().assign(C=6 * base_table().N * base_table().D)
    ds = bs.load_runs(df, inputs=("C",))
    np.testing.assert_array_equal(ds["C"].values, df["C"].to_numpy())
    assert ds["C"].attrs["column"] == "C"


def test_check_units_false_accepts_toy_magnitudes():
    toy = {"N": [1.0, 2.0, 3.0], "D": [10.0, 20.0, 30.0], "loss": [50.0, 40.0, 35.0]}
    with pytest.raises(bs.DataError, match=r"looks like it is not in parameters"):
        bs.load_runs(toy)
    ds = bs.load_runs(toy, check_units=False)
    np.testing.assert_array_equal(ds["N"].values, toy["N"])
    np.testing.assert_array_equal(ds["loss"].values, toy["loss"])


def test_nonnegative_accepts_zero():
    df = base_table()
    df.loc[[0, 3], "D"] = 0.0
    with pytest.raises(bs.DataError, match=r"column 'D' \(D\) must be > 0: rows \[0, 3\]"):
        bs.load_runs(df)
    ds = bs.load_runs(df, nonnegative=("D",))
    assert ds["D"].values[0] == 0.0 and ds["D"].values[3] == 0.0
    with pytest.raises(bs.DataError, match=r"column 'N' \(N\) must be > 0: rows \[1\]"):  # only the named input
        bs.load_runs(df.assign(N=lambda d: d.N.where(d.index != 1, 0.0)), nonnegative=("D",))


def test_run_column_gives_run_coordinate():
    df = base_table().assign(run_name=[f"chinchilla-{i}" for i in range(9)])
    ds = bs.load_runs(df)
    assert list(ds["run"].values) == [f"chinchilla-{i}" for i in range(9)]
    assert ds["run"].dims == ("point",)
    assert "run" not in ds.data_vars
    assert list(bs.load_runs(base_table())["run"].values) == [f"row{i}" for i in range(9)]
    # numeric run ids become strings
    assert list(bs.load_runs(base_table().assign(run=range(9)))["run"].values) == [str(i) for i in range(9)]


@pytest.mark.parametrize(
    "extra",
    [
        {"loss": [3.1, 3.2]},  # same N, D, another seed's loss
        {"loss": [3.1, 3.1], "run": ["seed0", "seed1"]},  # same everything but the run
        {"loss": [3.1, 3.1], "seed": [0, 1]},  # same everything but the seed column
    ],
    ids=["other-loss", "other-run", "other-seed"],
)
def test_repeats_that_are_not_duplicates(extra):
    rows = pd.DataFrame({"N": [1e8, 1e8], "D": [2e9, 2e9], **extra})
    ds = bs.load_runs(rows)
    assert ds.sizes["point"] == 2


def test_extra_alias_columns_are_kept_and_validated():
    df = base_table().assign(seed=[0, 1, 2] * 3)
    ds = bs.load_runs(df)
    np.testing.assert_array_equal(ds["seed"].values, [0, 1, 2] * 3)
    with pytest.raises(bs.DataError, match=r"column 'seed' \(seed\) has NaN or infinite values at rows \[2, 5, 8\]"):
        bs.load_runs(df.assign(seed=[0, 1, np.nan] * 3))


# ---------------------------------------------------------------------------------------------------------
# Identifiability
# ---------------------------------------------------------------------------------------------------------
def _grid(sizes, tokens):
    N, D = (m.ravel() for m in np.meshgrid(sizes, tokens, indexing="ij"))
    return pd.DataFrame({"N": N, "D": D, "loss": 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28})


MIN_DISTINCT_5 = """
id = "five"
formula = "E + A / N**alpha"
[inputs.N]
min_distinct = 5
[parameters.E]
prior = "Uniform(0, min_loss)"
[parameters.A]
prior = "LogNormal(5, 2)"
[parameters.alpha]
prior = "LogNormal(-1, 0.5)"
"""


@pytest.mark.parametrize(
    ("law", "table", "load_kwargs", "match"),
    [
        ("hoffmann2022", _grid([1e8, 1e9], np.geomspace(1e9, 1e11, 5)), {},
         r"too few distinct values of 'N': 2, but law 'hoffmann2022' needs at least 3 to identify its parameters along N"),
        ("hoffmann2022", _grid(np.geomspace(1e8, 1e10, 5), [1e9, 1e10]), {},
         r"too few distinct values of 'D': 2, but law 'hoffmann2022' needs at least 3"),
        ("kaplan2020_n", _grid([1e8, 1e9], [1e10]), {"inputs": ("N",)},
         r"too few distinct values of 'N': 2, but law 'kaplan2020_n' needs at least 3"),
        ("kaplan2020_nd", _grid([1e8], np.geomspace(1e9, 1e11, 6)), {},
         r"too few distinct values of 'N': 1, but law 'kaplan2020_nd' needs at least 3"),
        (MIN_DISTINCT_5, _grid(np.geomspace(1e8, 1e10, 4), np.geomspace(1e9, 1e11, 3)), {},
         r"too few distinct values of 'N': 4, but law 'five' needs at least 5"),
        ("hoffmann2022", _grid(np.geomspace(1e8, 1e10, 4), [1e10]).drop(columns="D"), {"inputs": ("N",)},
         r"law 'hoffmann2022' needs inputs \['N', 'D'\]; the dataset lacks \['D'\] \(it has \['N'\]\); map them with "
         r"load_runs\(columns=\.\.\.\)"),
    ],
    ids=["2-sizes", "2-token-counts", "kaplan-n-2-sizes", "kaplan-nd-1-size", "min-distinct-from-file",
         "missing-input"],
)
def test_check_identifiable_rejects(law, table, load_kwargs, match):
    law = parse_law_text(law) if "\n" in law else bs.load_law(law)
    ds = bs.load_runs(table, **load_kwargs)
    with pytest.raises(bs.DataError, match=match):
        check_identifiable(ds, law)


@pytest.mark.parametrize(("law", "table", "load_kwargs", "match"), [
    ("hoffmann2022", _grid([1e8, 1e9, 1e10], [1e9, 1e10, 1e11]).iloc[[0, 4, 8, 1, 5, 6]], {},
     r"few points: 6, not more than the 6 parameters of law 'hoffmann2022' with noise; fitting anyway"),
    ("kaplan2020_n", _grid([1e8, 1e9, 1e10], [1e10]), {"inputs": ("N",)},
     r"few points: 3, not more than the 3 parameters of law 'kaplan2020_n' with noise"),
], ids=["too-few-points", "kaplan-n-too-few-points"])
def test_check_identifiable_warns_on_few_points(law, table, load_kwargs, match):
    # with priors a posterior exists for any number of points (Gadre et al. 2024 fit 5 runs): a warning, not an error
    ds = bs.load_runs(table, **load_kwargs)
    with pytest.warns(bs.FewPointsWarning, match=match):
        check_identifiable(ds, bs.load_law(law))


def _points(k: int) -> pd.DataFrame:
    """k <= 27 distinct points that cycle through 3 sizes, 3 token counts and 3 loop counts (T_m, for laws that take
    it), so any k >= 3 has 3 distinct values of each: point i = a + 3b + 9c has N index a, D index (a + b) mod 3 and
    T_m index (a + 2b + c) mod 3, a bijection of the 27 index triples."""
    i = np.arange(k)
    N = np.array([1e8, 1e9, 1e10])[i % 3]
    D = np.array([1e9, 1e10, 1e11])[(i + i // 3) % 3]
    T_m = np.array([2.0, 4.0, 8.0])[(i + 2 * (i // 3) + i // 9) % 3]
    lr = np.array([1e-3, 2e-3, 4e-3])[(i + i // 3) % 3]  # steplaw2025
    batch_size = np.array([2e5, 5e5, 1e6])[(i + 2 * (i // 3)) % 3]
    U_D = D / np.array([1.0, 4.0, 20.0])[(i // 3) % 3]  # muennighoff2023: unique tokens
    # inputs of the other catalogue laws (experts, vocabulary, streams, sparsity, mixture shares, a scaled axis) take
    # 3 distinct values, cycling like D
    others = {name: np.array(values)[(i + i // 3) % 3] for name, values in {
        "E": [1.0, 8.0, 64.0], "V": [4096.0, 16384.0, 65536.0], "P": [1.0, 2.0, 4.0], "N_active": [0.02, 0.1, 0.3],
        "D2": [1.0, 2.0, 4.0], "x": [0.1, 1.0, 10.0], "G": [1.0, 4.0, 16.0], "r1": [0.1, 0.2, 0.3], "r2": [0.1, 0.2, 0.3],
        "r3": [0.05, 0.1, 0.2], "r4": [0.2, 0.1, 0.3]}.items()}
    T = np.array([1.0, 16.0, 256.0])[i % 3]  # kaplan2020_per_token_steps: token position and optimizer step
    S = np.array([1e3, 1e4, 1e5])[(i + i // 3) % 3]
    return pd.DataFrame({"N": N, "D": D, "T_m": T_m, "lr": lr, "batch_size": batch_size, "U_D": U_D, "T": T, "S": S,
                         **others,
                         "loss": 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28})


@pytest.mark.parametrize("law_id", bs.list_laws())
def test_check_identifiable_boundary(law_id):
    """n_params + 1 (noise) parameters: n_params + 2 points pass quietly, one fewer warns (and still fits)."""
    law = bs.load_law(law_id)
    n_needed = len(law.parameters) + 2
    kwargs = dict(inputs=law.input_names, check_units=False)
    ds = bs.load_runs(_points(n_needed), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_identifiable(ds, law) is None
    ds_short = bs.load_runs(_points(n_needed - 1), **kwargs)
    with pytest.warns(bs.FewPointsWarning, match=rf"few points: {n_needed - 1}, not more than the {n_needed - 1} "):
        check_identifiable(ds_short, law)
