"""Why `bayescale fit muennighoff2023` on the SLDBench data-constrained split disagrees with Muennighoff et al.'s
R_D* = 15.4 and R_N* = 5.3 (docs/laws.md, "The data-constrained law on the SLDBench table").

    python benchmarks/dataconstrained_sldbench.py --csv ../shared/data/sldbench_train/data_constrained_scaling_law.csv

Prints: how the split relates to the bundled C4 runs, the published law's residuals on it, and Huber fits (the
authors' loss: delta 1e-3 on log loss, summed) of subsets of the constants with the others held at their published
values, on all rows and on the rows load_datablations keeps (<= 100 epochs, loss <= 6). Point fits only, in seconds.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.optimize import minimize

import bayescale as bs
from bayescale.validation.baseline import huber
from bayescale.datasets.datablations import datablations_table

LAW = bs.load_law("muennighoff2023")
PUBLISHED = dict(LAW.published[0].values)


def huber_fit(df: pd.DataFrame, free: list[str], starts: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Huber fit of the ``free`` constants (log scale), the others at their published values."""
    x = {k: df[k].values for k in ("N", "D", "U_D")}
    log_y = np.log(df["loss"].values)

    def constants(u):
        return PUBLISHED | dict(zip(free, np.exp(u)))

    def objective(u):
        with np.errstate(all="ignore"):
            r = log_y - np.log(np.asarray(LAW.predict(constants(u), **x)))
        value = float(np.sum(huber(r, 1e-3)))
        return value if np.isfinite(value) else 1e9

    rng = np.random.default_rng(seed)
    x0 = np.log([PUBLISHED[k] for k in free])
    best = min((minimize(objective, x0 + (0 if i == 0 else rng.normal(0, 0.7, x0.size)), method="L-BFGS-B")
                for i in range(starts)), key=lambda r: r.fun)
    fitted = constants(best.x)
    return fitted, log_y - np.log(np.asarray(LAW.predict(fitted, **x)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="the SLDBench data_constrained_scaling_law.csv (training split)")
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args(argv)
    table = pd.read_csv(args.csv).rename(columns={"params": "N", "tokens": "D", "unique_tokens": "U_D"})
    epochs = table["D"] / table["U_D"]
    runs = datablations_table(None, None)
    print(f"{len(table)} rows; {len(table.merge(runs, on=['N', 'D', 'U_D', 'loss']))} match a bundled C4 run exactly; "
          f"{int((epochs > 100).sum())} with > 100 epochs, {int((table['loss'] > 6).sum())} with loss > 6")
    subsets = {"all rows": table, "<= 100 epochs, loss <= 6": table[(epochs <= 100) & (table["loss"] <= 6)]}
    for name, df in subsets.items():
        x = {k: df[k].values for k in ("N", "D", "U_D")}
        r = np.log(df["loss"].values) - np.log(np.asarray(LAW.predict(PUBLISHED, **x)))
        print(f"\n{name} ({len(df)}): published law, log residual mean {r.mean():+.3f}, sd {r.std():.3f}")
        for free in (["R_D_star", "R_N_star"], ["E", "R_D_star", "R_N_star"], list(LAW.parameter_names)):
            fitted, r = huber_fit(df, free, args.starts)
            print(f"  free {free}: " + ", ".join(f"{k} {fitted[k]:.4g}" for k in free) + f"; residual sd {r.std():.4f}")


if __name__ == "__main__":
    main()
