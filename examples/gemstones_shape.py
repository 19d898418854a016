"""Shape sensitivity on real runs: Gemstones (McLeish et al. 2025), 22 width x depth shapes, as Kaplan et al. 2020,
Fig. 5: the % loss increase over the L(N, D) fit against the aspect ratio d_model/n_layer, fitted jointly with the
baseline; the posterior of the best aspect ratio, of the flat region (shapes within 1% of the best, with probability)
and of the compute a 1% shape penalty costs.

    python examples/gemstones_shape.py --out results/gemstones_shape                 # about 3 minutes on 2 CPU cores
    python examples/gemstones_shape.py --out results/gemstones_shape --parameters total
    python examples/gemstones_shape.py --out /tmp/x --quick                         # tiny settings (tests)

Only the aspect ratio varies in Gemstones: every shape has the same parameters per layer (15·d_model² + 2·d_model;
width 384: 14.67·d_model²), so the feed-forward ratio is fixed, and the head dimension is not in the data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import bayescale as bs  # noqa: E402
from bayescale.datasets import gemstones_dir  # noqa: E402
from bayescale.analyses.kaplan.shape import fit_shape, flat_region_probability, plot_shape, read_gemstones, shape_summary  # noqa: E402
from bayescale.infer.settings import MEDIAN_START, add_sampler_arguments, sampler_from_args  # noqa: E402

DATA = gemstones_dir()  # bundled hot and cool_end tables; pass --data for a full copy of the Gemstones folder


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/gemstones_shape")
    parser.add_argument("--data", default=str(DATA), help="the Gemstones folder (with wandb_dfs/)")
    parser.add_argument("--table", default="cool_end", help="Gemstones fitting table (cool_end: ends of LR cooldowns)")
    parser.add_argument("--parameters", default="non_embedding", choices=("non_embedding", "total"))
    add_sampler_arguments(parser, MEDIAN_START)
    parser.add_argument("--quick", action="store_true", help="tiny settings: 1 chain x 100 + 100, 3 checkpoints per run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    table = read_gemstones(args.data, args.table, args.parameters)
    if args.quick:
        args.chains, args.warmup, args.samples = 1, 100, 100
        keep = table.groupby("run")["D"].transform(lambda d: d.isin(sorted(d.unique())[-3:]))
        table = table[keep]
    print(f"Gemstones {args.table}: {len(table)} points of {table['run'].nunique()} runs, aspect ratio "
          f"{table['aspect_ratio'].min():.3g}-{table['aspect_ratio'].max():.3g}, N ({args.parameters}) "
          f"{table['N'].min():.3g}-{table['N'].max():.3g}; fitting ...", flush=True)
    start = time.perf_counter()
    result = fit_shape(table, sampler=sampler_from_args(args), rng_key=args.seed)
    print(f"fit: {time.perf_counter() - start:.0f} s")
    bs.save(result, out / "shape_fit.nc")
    summary = shape_summary(result)
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    summary.to_csv(out / "shape_summary.csv")
    ratios = sorted(table["aspect_ratio"].unique())
    prob = flat_region_probability(result, ratios)
    print("P(within 1% of the best) at the Gemstones aspect ratios:")
    print("  " + ", ".join(f"{x:.3g}: {p:.2f}" for x, p in zip(ratios, prob.values)))
    axes = plot_shape(result)
    axes[0].set_title(f"Gemstones ({args.table}, N {args.parameters.replace('_', '-')}): shape penalty", fontsize=10)
    figure = out / "shape_gemstones.png"
    axes[0].figure.savefig(figure, dpi=130)
    plt.close(axes[0].figure)
    print(f"figure: {figure}")
    return figure


if __name__ == "__main__":
    main()
