"""Small real datasets bundled for examples and tests (see README.md here for sources and licences)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import xarray as xr

from bayescale.data import load_runs

__all__ = ["chinchilla_table", "gemstones_dir", "load_chinchilla"]


def chinchilla_table(include_excluded: bool = False) -> pd.DataFrame:
    """The Epoch AI (Besiroglu et al. 2024) reconstruction of the Chinchilla Approach 3 data.

    ``include_excluded=False`` drops the 5 highest-loss points, as Besiroglu et al. do (240 rows remain).
    """
    with resources.files(__package__).joinpath("chinchilla_epoch2024.csv").open() as fh:
        df = pd.read_csv(fh)
    if not include_excluded:
        df = df[~df["excluded_by_epoch_default"]].reset_index(drop=True)
    return df


def load_chinchilla(include_excluded: bool = False) -> xr.Dataset:
    """:func:`chinchilla_table` validated by :func:`bayescale.load_runs` (inputs ``N``, ``D``)."""
    return load_runs(
        chinchilla_table(include_excluded),
        columns={"N": "N_params", "D": "D_tokens", "loss": "loss"},
        source="chinchilla_epoch2024.csv (Besiroglu et al. 2024, from Hoffmann et al. 2022 Fig. 4)",
    )


def gemstones_dir():
    """The bundled Gemstones folder (McLeish et al. 2025, MIT): ``wandb_dfs/`` with the ``hot`` and ``cool_end``
    fitting tables, laid out as in the source repository so readers take it or a full copy alike."""
    return Path(str(resources.files(__package__).joinpath("gemstones")))
