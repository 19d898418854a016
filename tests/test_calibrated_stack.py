"""The stack's interval calibrated on the weights' fold (bayescale.validation.holdout: interval_scale, _calibrated)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from bayescale.laws.catalogue import Target
from bayescale.validation.holdout import Draws, _calibrated, interval_scale


def _normal_draws(loc: np.ndarray, sd: float, y: np.ndarray, n_draws: int = 4000, seed: int = 0) -> Draws:
    """Draws of a Normal(loc, sd) predictive on the log scale of a loss, with its exact link density."""
    rng = np.random.default_rng(seed)
    link = loc[None, :] + sd * rng.standard_normal((n_draws, loc.size))

    def link_lpd(values):
        return scipy.stats.norm.logpdf(values, loc, sd)

    return Draws(y, np.exp(link), np.exp(link), link, link_lpd(np.log(y)) - np.log(y), link_lpd)


def test_interval_scale_is_the_conformal_quantile_of_the_scores():
    n = 19
    loc = np.zeros(n)
    offsets = np.linspace(0.1, 3.0, n)  # distances from the median, alternating sides
    link_y = offsets * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    draws = _normal_draws(loc, 1.0, np.exp(link_y))
    lo, mid, hi = np.quantile(draws.link_pred, [0.05, 0.5, 0.95], axis=0)
    scores = np.where(link_y >= mid, (link_y - mid) / (hi - mid), (mid - link_y) / (mid - lo))
    # k = ceil((19 + 1) * 0.9) = 18: the 18th smallest score
    assert interval_scale(draws, link_y) == pytest.approx(np.sort(scores)[17], rel=1e-12)
    # about offsets[17] / 1.645 (the half-width of a standard normal's 90% interval), up to the draws' quantile error
    assert interval_scale(draws, link_y) == pytest.approx(offsets[17] / 1.6449, rel=0.05)
    # scaled by that factor, the interval covers 18 of the 19 points: the conformal guarantee's count
    s = interval_scale(draws, link_y)
    assert np.sum((link_y >= mid - s * (mid - lo) - 1e-12) & (link_y <= mid + s * (hi - mid) + 1e-12)) == 18


def test_interval_scale_needs_nine_points_at_90_percent():
    draws = _normal_draws(np.zeros(8), 1.0, np.ones(8))
    assert np.isnan(interval_scale(draws, np.zeros(8)))  # ceil(9 * 0.9) = 9 > 8: the conformal quantile is infinite
    draws = _normal_draws(np.zeros(9), 1.0, np.ones(9))
    assert np.isfinite(interval_scale(draws, np.zeros(9)))


def test_a_too_narrow_predictive_is_widened_to_cover():
    # predictive sd 0.05, true scatter 0.15: the 90% interval covers about 39%; scaled, it covers about 90% of new
    # points drawn the same way (1,000 points: binomial sd of the share 0.0095, so 0.86-0.94 is a 4-sd band)
    rng = np.random.default_rng(1)
    fold = rng.normal(0.0, 0.15, 200)
    s = interval_scale(_normal_draws(np.zeros(200), 0.05, np.exp(fold)), fold)
    assert 2.6 < s < 3.4  # 0.15 / 0.05 = 3, up to the 200-point fold's quantile error
    new = rng.normal(0.0, 0.15, 1000)
    mix = _normal_draws(np.zeros(1000), 0.05, np.exp(new))
    cal = _calibrated(mix, [mix], np.array([1.0]), s, Target())
    lo, hi = np.quantile(cal.link_pred, [0.05, 0.95], axis=0)
    assert 0.86 < np.mean((new >= lo) & (new <= hi)) < 0.94


def test_calibrated_density_is_exact_and_integrates_to_one():
    # two components with weights 0.3 / 0.7 at one point; the calibrated density of the loss y is
    # (1/s) sum_k w_k N(m + (log y - m)/s; mu_k, sd_k) / y, with m the mixture's median
    rng = np.random.default_rng(2)
    w = np.array([0.3, 0.7])
    a = _normal_draws(np.array([0.0]), 0.1, np.array([1.0]), seed=3)
    b = _normal_draws(np.array([0.2]), 0.05, np.array([1.0]), seed=4)
    picks = np.concatenate([a.link_pred[rng.choice(4000, 1200, replace=False)],
                            b.link_pred[rng.choice(4000, 2800, replace=False)]])
    s = 1.7
    grid = np.linspace(-1.5, 2.0, 2001)
    mix = Draws(np.exp(grid), np.exp(picks), np.exp(picks), np.repeat(picks, grid.size, axis=1), np.zeros(grid.size))
    a1 = a._replace(link_lpd=lambda v: scipy.stats.norm.logpdf(v, 0.0, 0.1))
    b1 = b._replace(link_lpd=lambda v: scipy.stats.norm.logpdf(v, 0.2, 0.05))
    cal = _calibrated(mix, [a1, b1], w, s, Target())
    m = np.median(picks)
    at = m + (grid - m) / s
    want = np.log((w[0] * scipy.stats.norm.pdf(at, 0.0, 0.1) + w[1] * scipy.stats.norm.pdf(at, 0.2, 0.05)) / s) - grid
    finite = np.isfinite(want)
    np.testing.assert_allclose(cal.lpd[finite], want[finite], rtol=1e-10)
    # a density of the loss: integrates to 1 over y = exp(grid) (trapezoid on 2,001 points: error ~1e-6)
    assert np.trapezoid(np.exp(cal.lpd) * np.exp(grid), grid) == pytest.approx(1.0, abs=1e-4)
