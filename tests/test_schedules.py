"""Schedule laws (bayescale.analyses.schedules): schedules, the two laws against hand-written numpy loops, the block merge,
recovery of known constants from simulated curves and cross-schedule prediction, errors, the example."""

from __future__ import annotations

import runpy
import sys

import numpy as np
import pytest

import bayescale as bs
from bayescale.analyses import schedules as S
from tests import fits

MPL = S.load_schedule_law("luo2025_mpl")
TRUTH = MPL.reference("luo2025_400M").values  # published constants of the 400M model


schedules_400m = fits.schedules_400m


# ---------------------------------------------------------------------------------------------------------
# schedules
def test_schedule_shapes():
    c = dict(total_steps=100, peak_lr=1e-3, warmup_steps=10)
    const = S.lr_schedule("constant", **c)
    assert const.total_steps == 100 and const.warmup_steps == 10
    np.testing.assert_allclose(const.lr[:10], 1e-3 * np.arange(1, 11) / 10)  # linear warmup ending at the peak
    assert const.warmup_area == pytest.approx(1e-3 * 5.5)
    cos = S.lr_schedule("cosine", final_lr=1e-4, **c)
    assert cos.lr[-1] == pytest.approx(1e-4) and np.all(np.diff(cos.lr[10:]) < 0)
    assert cos.lr[54] == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # halfway through the 90 post-warmup steps (step 55)
    wsd = S.lr_schedule("wsd", final_lr=1e-4, decay_steps=20, **c)
    assert np.all(wsd.lr[10:80] == 1e-3) and wsd.lr[-1] == pytest.approx(1e-4) and wsd.lr[80] < 1e-3
    geo = S.lr_schedule("wsd", final_lr=1e-4, decay_steps=20, decay_shape="exponential", **c)
    assert geo.lr[89] == pytest.approx(1e-3 * 0.1**0.5)  # halfway through the decay: geometric mean
    step = S.lr_schedule("step", milestones=[50, 80], decay_factor=0.5, **c)
    assert step.lr[49] == 1e-3 and step.lr[50] == 5e-4 and step.lr[80] == 2.5e-4  # changes at milestone + 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="linear", total_steps=10, peak_lr=1e-3), "must be one of"),
        (dict(kind="constant", total_steps=10, peak_lr=-1.0), "peak_lr must be a finite number > 0"),
        (dict(kind="constant", total_steps=10, peak_lr=1e-3, warmup_steps=10), r"warmup_steps must be in \[0, 9\]"),
        (dict(kind="cosine", total_steps=10.5, peak_lr=1e-3), "total_steps must be an integer"),
        (dict(kind="cosine", total_steps=10, peak_lr=1e-3, final_lr=0.0), "final_lr must be a finite number > 0"),
        (dict(kind="cosine", total_steps=10, peak_lr=1e-3, final_lr=1e-2), "must not exceed peak_lr"),
        (dict(kind="wsd", total_steps=10, peak_lr=1e-3), "needs decay_steps"),
        (dict(kind="wsd", total_steps=10, peak_lr=1e-3, decay_steps=3, decay_shape="sqrt"), "decay_shape"),
        (dict(kind="step", total_steps=10, peak_lr=1e-3, milestones=[5, 3]), "strictly increasing milestones"),
    ],
)
def test_schedule_errors(kwargs, match):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=match):
        S.lr_schedule(kind, **kwargs)


def test_schedule_from_array_errors():
    with pytest.raises(ValueError, match="lr must be > 0 after warmup; step 3"):
        S.schedule_from_array([1e-3, 1e-3, 0.0])
    with pytest.raises(ValueError, match="finite and >= 0; step 2"):
        S.schedule_from_array([1e-3, np.nan, 1e-3])
    assert S.schedule_from_array([0.0, 1e-3, 1e-3], warmup_steps=1).warmup_area == 0.0


# ---------------------------------------------------------------------------------------------------------
# the laws against hand-written loops (definitions of LAWS.md, docs/schedules.md conventions)
def mpl_reference(p, lr, steps, warmup, convention):
    """The multi-power law term by term: steps k = 2..s ("all_steps") or W+1..s ("post_warmup"), 1-based."""
    out = []
    for s in steps:
        first = 2 if convention == "all_steps" else warmup + 1
        reduction = sum((lr[max(k - 2, 0)] - lr[k - 1])
                        * (1 - (p["C"] * lr[k - 1] ** -p["gamma"] * lr[k - 1 : s].sum() + 1) ** -p["beta"])
                        for k in range(first, s + 1))
        out.append(p["L0"] + p["A"] * lr[:s].sum() ** -p["alpha"] - p["B"] * reduction)
    return np.array(out)


def annealing_reference(p, lr, steps, warmup, lam, convention):
    eta = np.r_[lr[warmup - 1] if warmup else lr[0], lr[warmup:]]
    m, S2 = 0.0, [0.0]
    for k in range(1, eta.size):
        m = lam * m + (eta[k - 1] - eta[k])
        S2.append(S2[-1] + m)
    area = lr.copy()
    if convention == "warmup_at_peak" and warmup:
        area[:warmup] = lr[warmup - 1]
    return np.array([p["L0"] + p["A"] * area[:s].sum() ** -p["alpha"] - p["C"] * S2[s - warmup] for s in steps])


@pytest.mark.parametrize("kind, extra", [("cosine", {}), ("wsd", dict(decay_steps=40, decay_shape="exponential")),
                                          ("step", dict(milestones=[80, 140]))])
@pytest.mark.parametrize("warmup", [0, 30])
@pytest.mark.parametrize("mpl_convention, annealing_convention", [("all_steps", "warmup_at_peak"),
                                                                   ("post_warmup", "post_warmup")])
def test_laws_match_numpy_loops(kind, extra, warmup, mpl_convention, annealing_convention):
    sc = S.lr_schedule(kind, total_steps=160, peak_lr=3e-4, warmup_steps=warmup, **extra)
    steps = np.array([warmup + 1, 50, 81, 120, 141, 159, 160])
    want = mpl_reference(TRUTH, sc.lr, steps, warmup, mpl_convention)
    common = dict(warmup_steps=warmup, convention=mpl_convention)
    np.testing.assert_allclose(S.multi_power_loss(TRUTH, sc.lr, steps, **common), want, rtol=1e-12)
    jitted = bs.analyses.schedules.jax.jit(S.multi_power_loss, static_argnames=("warmup_steps", "convention"))
    np.testing.assert_allclose(jitted(TRUTH, sc.lr, steps, **common), want, rtol=1e-12)
    # the fit's design path with single terms is the same sum
    design = S._design("multi_power", [sc], [steps], {}, 1, mpl_convention)
    np.testing.assert_allclose(S._mean_multi_power(TRUTH, design), want, rtol=1e-12)
    p = S.TISSUE_TRUTH
    np.testing.assert_allclose(
        S.annealing_loss(p, sc.lr, steps, warmup_steps=warmup, lam=0.99, convention=annealing_convention),
        annealing_reference(p, sc.lr, steps, warmup, 0.99, annealing_convention), rtol=1e-12)


def test_constant_schedule_has_no_decay_term_after_warmup():
    sc = S.lr_schedule("constant", total_steps=200, peak_lr=1e-3, warmup_steps=20)
    steps = np.arange(21, 201, 20)
    area = np.cumsum(sc.lr)[steps - 1]
    np.testing.assert_allclose(S.multi_power_loss(TRUTH, sc.lr, steps, warmup_steps=20, convention="post_warmup"),
                               TRUTH["L0"] + TRUTH["A"] * area ** -TRUTH["alpha"], rtol=1e-13)
    # the authors' convention adds the warmup ramp's negative drops: the loss is higher by up to B * peak
    extra = np.asarray(S.multi_power_loss(TRUTH, sc.lr, steps, warmup_steps=20)) - (TRUTH["L0"] + TRUTH["A"] * area ** -TRUTH["alpha"])
    assert np.all((extra > 0) & (extra < TRUTH["B"] * 1e-3))
    assert np.all(np.asarray(S.annealing_areas(sc.lr, steps, warmup_steps=20)[1]) == 0)
    # warmup at the peak: S1 = (steps) * peak
    np.testing.assert_allclose(S.annealing_areas(sc.lr, steps, warmup_steps=20)[0], steps * 1e-3, rtol=1e-13)


# Luo et al.'s and Tissue et al.'s own formulas, written from their code's definitions (github.com/Morphorxz/
# dlt25-final, a copy of the multi-power-law repository: src/evaluation.py, src/lr_schedules.py; and the annealing
# law's released fitting script, scaling_law_main.py there). Both index LRs from 0 and evaluate their step label t
# with the t + 1 learning rates lr[0..t]: bayescale's step t + 1. Loops over steps, sums written out directly.
def luo_authors_loss(p, lr, t):
    """L0 + A·(Σ_{τ≤t} lr)^−α + B·Σ_{i=1..t} (lr[i] − lr[i−1])·(1 − (1 + C·lr[i]^−γ·Σ_{τ=i..t} lr[τ])^−β)."""
    tail = np.cumsum(lr[t:0:-1])[::-1]  # tail[i − 1] = Σ_{τ=i..t} lr[τ], summed from t backwards
    gap = lr[1 : t + 1] - lr[:t]
    drop = np.sum(gap * (1 - (1 + p["C"] * lr[1 : t + 1] ** -p["gamma"] * tail) ** -p["beta"]))
    return p["L0"] + p["A"] * np.sum(lr[: t + 1]) ** -p["alpha"] + p["B"] * drop


def luo_authors_lrs(kind, warmup=2160, total=24000, peak=3e-4, end=3e-5, decay=20000):
    """Their schedule generators: linear warmup from 0 (linspace), then cosine over indices warmup..total−1, or WSD
    with a geometric decay from index ``decay``."""
    i = np.arange(total)
    ramp = np.linspace(0, peak, warmup)
    if kind == "cosine":
        post = end + 0.5 * (peak - end) * (1 + np.cos(np.pi * (i[warmup:] - warmup) / (total - warmup)))
        return np.r_[ramp, post]
    tail = peak ** ((total - i[decay:]) / (total - decay)) * end ** ((i[decay:] - decay) / (total - decay))
    return np.r_[ramp, np.full(decay - warmup, peak), tail]


def tissue_authors_loss(p, lr, warmup, t, lam=0.999):
    """L0 + A·S1^−α − C·S2 with every warmup step at the peak, m_i = λ·m_{i−1} + (η_{i−1} − η_i), S1, S2 to index t."""
    eta = lr.copy()
    eta[:warmup] = lr[warmup - 1]
    m = np.zeros(t + 1)
    for i in range(1, t + 1):
        m[i] = lam * m[i - 1] + (eta[i - 1] - eta[i])
    return p["L0"] + p["A"] * np.sum(eta[: t + 1]) ** -p["alpha"] - p["C"] * np.sum(m)


@pytest.mark.parametrize("source", ["luo2025_400M", "luo2025_100M", "luo2025_25M"])
@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_luo2025_published_constants_reproduce_authors_formula(source, kind):
    lr = luo_authors_lrs(kind)
    published = MPL.reference(source).values
    labels = np.array([2160, 2161, 5000, 12000, 19999, 20001, 21500, 23999])  # their step labels (0-based LR index)
    want = np.array([luo_authors_loss(published, lr, t) for t in labels])
    got = MPL.loss(published, S.schedule_from_array(lr, warmup_steps=2160), labels + 1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)
    # the paper's printed convention (post-warmup drops only) would put the curve 0.11-0.16 nats lower
    post = S.multi_power_loss(published, lr, labels + 1, warmup_steps=2160, convention="post_warmup")
    assert np.all((want - np.asarray(post) > 0.1) & (want - np.asarray(post) < 0.17))


@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_tissue2024_law_reproduces_authors_formula(kind):
    law = S.load_schedule_law("tissue2024")
    assert law.convention == "warmup_at_peak"
    c = dict(total_steps=24000, peak_lr=2e-4, warmup_steps=500, final_lr=2e-5)  # the script's own setup
    sc = S.lr_schedule(kind, **c, **(dict(decay_steps=4000) if kind == "wsd" else {}))  # a linear warmup, as trained
    labels = np.array([500, 501, 3000, 12000, 19999, 20500, 23999])
    want = np.array([tissue_authors_loss(S.TISSUE_TRUTH, sc.lr, 500, t) for t in labels])
    np.testing.assert_allclose(law.loss(S.TISSUE_TRUTH, sc, labels + 1), want, rtol=1e-10, atol=0)


def test_block_merge_error_is_negligible_on_long_curves():
    # max_block=64 (the fit's default) vs the exact sum on the 24000-step 400M setup: < 1e-4 nats, 20x below the
    # simulated residual scale (0.003 in log-loss ≈ 0.008 nats); the merged sum must also be much smaller
    sc = schedules_400m()["cosine"]
    steps = np.unique(np.linspace(2400, 24000, 40).round().astype(int))
    exact = MPL.loss(TRUTH, sc, steps)
    design = S._design("multi_power", [sc], [steps], {}, 64, MPL.convention)
    assert design["drop"].shape[1] < 1000  # vs 24000 single terms
    assert np.abs(np.asarray(S._mean_multi_power(TRUTH, design)) - exact).max() < 1e-4


# ---------------------------------------------------------------------------------------------------------
# law files
def test_schedule_laws_are_not_formula_laws():
    assert S.list_schedule_laws() == ["luo2025_mpl", "tissue2024"]
    assert not set(S.list_schedule_laws()) & set(bs.list_laws())  # models/schedule_laws/ is outside list_laws()
    assert S.load_schedule_law("tissue2024").fixed == {"lam": 0.999}
    with pytest.raises(bs.LawError, match=r"unknown schedule law 'nope': must be one of \['luo2025_mpl'"):
        S.load_schedule_law("nope")
    with pytest.raises(bs.LawError, match="schedule_law 'power': must be one of"):
        S.parse_schedule_law('id = "x"\nschedule_law = "power"\n[parameters.L0]\nprior = "Uniform(0, 1)"')
    with pytest.raises(bs.LawError, match="needs fixed constants"):
        S.parse_schedule_law('id = "x"\nschedule_law = "annealing"\n[parameters.L0]\nprior = "Uniform(0, 1)"')


# ---------------------------------------------------------------------------------------------------------
# recovery and cross-schedule prediction
@pytest.fixture(scope="module")
def mpl_fit(shared_fit):
    """Multi-power law fitted to constant + cosine + WSD runs simulated at the published 400M constants; 2 chains x
    200/200 (tests/fits.py)."""
    curves, sched = fits.data("multi_power")
    return shared_fit("multi_power"), curves, sched


def test_multi_power_recovery(mpl_fit):
    result, _, _ = mpl_fit
    post = result["posterior"].to_dataset()
    for name in ("L0", "A", "alpha", "B"):
        draws = post[name].values.ravel()
        lo, hi = np.quantile(draws, [0.005, 0.995])
        assert lo < TRUTH[name] < hi, (name, lo, hi)  # 99% interval: 4 checks at fixed seed
    # informative: the asymptote and amplitude are pinned far tighter than their priors (L0 ~ U(0, min_loss): width
    # ~2.4; A ~ LogNormal(log 0.5, 1): 90% width ~2.3)
    assert np.diff(np.quantile(post["L0"].values, [0.05, 0.95]))[0] < 0.4
    assert np.diff(np.quantile(post["A"].values, [0.05, 0.95]))[0] < 0.5
    assert result.attrs["schedule_law"] == "multi_power" and result["constant_data"]["lr"].sizes["run"] == 3


def test_cross_schedule_prediction_covers_held_out_step_decay(mpl_fit):
    result, curves, sched = mpl_fit
    held = curves[curves["run"] == "step"]
    pred = S.predict_schedule(result, sched["step"], held["step"].to_numpy(), rng_key=1)
    band = pred["loss_band"]
    lo, hi = band.sel(quantile=0.05).values, band.sel(quantile=0.95).values
    obs = held["loss"].to_numpy()
    assert np.mean((obs >= lo) & (obs <= hi)) >= 0.8  # 90% band over 15 correlated points of one run
    truth_final = MPL.loss(TRUTH, sched["step"], held["step"].to_numpy()[-1:])[0]
    assert lo[-1] < truth_final < hi[-1]
    assert hi[-1] - lo[-1] < 0.15  # informative: a new run's final loss within ±0.075 nats (loss ~2.6)
    # the step decay lowers the predicted loss at its milestones as the truth does
    assert band.sel(quantile=0.5).values[-1] < band.sel(quantile=0.5).sel(step=12000, method="nearest").values - 0.05


@pytest.fixture(scope="module")
def annealing_fit():
    """The annealing law fitted to constant + cosine runs simulated at TISSUE_TRUTH; the WSD run (held out) is a
    cooldown branching from the constant run at step 19200. 2 chains x 200/200."""
    law = S.load_schedule_law("tissue2024")
    sched = schedules_400m()
    curves = S.simulate_schedule_curves(law, S.TISSUE_TRUTH, sched, checkpoints=12, seed=4, branches={"wsd": "constant"})
    result = S.fit_schedule(law, curves[curves["run"].isin(["constant", "cosine"])], sched, rng_key=0,
                            num_chains=2, num_warmup=200, num_samples=200)
    return law, sched, curves, result


def test_annealing_law_recovery_and_prediction(annealing_fit):
    law, sched, curves, result = annealing_fit
    assert result.attrs["convention"] == "warmup_at_peak"
    post = result["posterior"].to_dataset()
    for name, value in S.TISSUE_TRUTH.items():
        lo, hi = np.quantile(post[name].values, [0.005, 0.995])
        assert lo < value < hi, (name, lo, hi)
    c_lo, c_hi = np.quantile(post["C"].values, [0.05, 0.95])
    assert c_hi - c_lo < 0.5 * S.TISSUE_TRUTH["C"] * 2  # C informed: 90% interval narrower than ±50%
    held = curves[curves["run"] == "wsd"]
    band = S.predict_schedule(result, sched["wsd"], held["step"].to_numpy())["loss_band"]
    obs = held["loss"].to_numpy()
    assert np.mean((obs >= band.sel(quantile=0.05).values) & (obs <= band.sel(quantile=0.95).values)) >= 0.8


def test_branch_prediction_is_conditioned_on_the_fitted_run(annealing_fit):
    law, sched, curves, result = annealing_fit
    held = curves[curves["run"] == "wsd"]
    steps, obs = held["step"].to_numpy(), held["loss"].to_numpy()
    branch = S.predict_schedule(result, sched["wsd"], steps, branch_from="constant", rng_key=2)
    fresh = S.predict_schedule(result, sched["wsd"], steps, rng_key=2)
    const_steps = curves.loc[curves["run"] == "constant", "step"].to_numpy()
    assert branch.attrs["branch_step"] == 19200 and branch.attrs["branch_from"] == "constant"
    assert branch.attrs["conditioned_on_step"] == const_steps[const_steps <= 19200].max()
    width = {name: (p["loss_band"].sel(quantile=0.95) - p["loss_band"].sel(quantile=0.05)).values
             for name, p in (("branch", branch), ("fresh", fresh))}
    # the fresh band carries a new run's offset (tau: posterior ~ its HalfNormal(0.01) prior with two runs) and a
    # stationary OU residual; the branch knows the run's effect and its residual at step 18540, so its band is
    # narrower everywhere and far narrower near the branch (measured: 0.20x at the first point, 0.35x on average)
    assert np.all(width["branch"] < width["fresh"]) and width["branch"].mean() < 0.6 * width["fresh"].mean()
    assert width["branch"][0] < 0.4 * width["fresh"][0]
    lo, hi = branch["loss_band"].sel(quantile=0.05).values, branch["loss_band"].sel(quantile=0.95).values
    assert np.mean((obs >= lo) & (obs <= hi)) >= 0.8  # 90% band over 12 correlated points of one run


# ---------------------------------------------------------------------------------------------------------
# memory: chunked prediction
def test_chunked_prediction_matches_whole_and_bounds_arrays(mpl_fit, monkeypatch):
    result, _, sched = mpl_fit
    steps = np.arange(2200, 24001, 700)
    whole = S.predict_schedule(result, sched["step"], steps, rng_key=1, chunk_size=10**9)
    sizes = []
    evaluate = S._evaluate_chunk

    def spy(form, draws, rows):
        sizes.append(next(iter(draws.values())).shape[0] * rows["drop"].size)  # draws × steps × terms of this chunk
        return evaluate(form, draws, rows)

    monkeypatch.setattr(S, "_evaluate_chunk", spy)
    small = S.predict_schedule(result, sched["step"], steps, rng_key=1, chunk_size=3000)
    assert len(sizes) > 10 and max(sizes) <= 3000
    np.testing.assert_allclose(small["law"], whole["law"], rtol=1e-12)
    np.testing.assert_allclose(small["loss"], whole["loss"], rtol=1e-12)
    assert small.attrs["convention"] == "all_steps" and small.attrs["chunk_size"] == 3000


# ---------------------------------------------------------------------------------------------------------
# branches in the simulator
def test_simulated_branch_shares_its_parent_run_effect_and_path():
    sched = schedules_400m()
    # no OU noise: the branch's log-residual is its parent's run effect exactly
    curves = S.simulate_schedule_curves(MPL, TRUTH, sched, checkpoints=6, sigma=0.0, tau=0.05, seed=1,
                                        branches={"wsd": "constant"})
    resid = {r: np.log(part["loss"].to_numpy()) - np.log(MPL.loss(TRUTH, sched[r], part["step"].to_numpy()))
             for r, part in curves.groupby("run")}
    np.testing.assert_allclose(resid["wsd"], resid["constant"][0], atol=1e-12)
    assert np.ptp(resid["constant"]) < 1e-12 and abs(resid["cosine"][0] - resid["constant"][0]) > 1e-3
    assert curves.loc[curves["run"] == "wsd", "step"].min() > 19200  # logged after the branch point only
    # a nearly frozen OU path (ell huge): the branch continues its parent's residual at the branch point
    curves = S.simulate_schedule_curves(MPL, TRUTH, sched, checkpoints=6, sigma=0.05, tau=0.0, ell=1e6, seed=1,
                                        branches={"wsd": "constant"})
    resid = {r: np.log(part["loss"].to_numpy()) - np.log(MPL.loss(TRUTH, sched[r], part["step"].to_numpy()))
             for r, part in curves.groupby("run")}
    np.testing.assert_allclose(resid["wsd"], resid["constant"][-1], atol=1e-3)
    with pytest.raises(ValueError, match=r"branches 'wsd' -> 'nope': both must be runs"):
        S.simulate_schedule_curves(MPL, TRUTH, sched, branches={"wsd": "nope"})
    with pytest.raises(ValueError, match=r"branch 'cosine' of run 'constant': the schedule's LR differs .* at step 2161"):
        S.simulate_schedule_curves(MPL, TRUTH, sched, branches={"cosine": "constant"})


# ---------------------------------------------------------------------------------------------------------
# errors at the boundary
def test_fit_schedule_errors():
    sched = {"a": S.lr_schedule("constant", total_steps=100, peak_lr=1e-3, warmup_steps=10)}
    import pandas as pd

    ok = pd.DataFrame({"run": "a", "step": [20, 40, 60], "loss": [3.0, 2.9, 2.8]})
    with pytest.raises(ValueError, match=r"curves has runs \['b'\] with no schedule"):
        S.fit_schedule(MPL, ok.assign(run="b"), sched)
    with pytest.raises(ValueError, match=r"step 5 lies outside the schedule's post-warmup steps \[11, 100\]"):
        S.fit_schedule(MPL, ok.assign(step=[5, 40, 60]), sched)
    with pytest.raises(ValueError, match="column 'loss': row 1"):
        S.fit_schedule(MPL, ok.assign(loss=[3.0, -1.0, 2.8]), sched)
    with pytest.raises(ValueError, match="step 40 appears twice"):
        S.fit_schedule(MPL, ok.assign(step=[20, 40, 40]), sched)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['loss'\]"):
        S.fit_schedule(MPL, ok.drop(columns="loss"), sched)
    with pytest.raises(ValueError, match="'hetero' is not available"):
        S.fit_schedule(MPL, ok, sched, noise="run+hetero")
    with pytest.raises(ValueError, match="likelihood 'huber': must be one of"):
        S.fit_schedule(MPL, ok, sched, likelihood="huber")
    with pytest.raises(bs.LawError, match="prior given for 'D'"):
        S.fit_schedule(MPL, ok, sched, priors={"D": "Uniform(0, 1)"})
    with pytest.raises(ValueError, match="not a fit_schedule result"):
        S.predict_schedule(bs.analyses.schedules.xr.DataTree(), sched["a"])


def test_convention_errors():
    with pytest.raises(ValueError, match=r"convention 'authors' for form 'multi_power': must be one of \['all_steps'"):
        S.multi_power_loss(TRUTH, np.full(10, 1e-3), [5], convention="authors")
    with pytest.raises(ValueError, match=r"convention 'all_steps' for form 'annealing': must be one of"):
        S.annealing_loss(S.TISSUE_TRUTH, np.full(10, 1e-3), [5], convention="all_steps")
    with pytest.raises(bs.LawError, match=r"convention 'all_steps' for form 'annealing': must be one of \['warmup_at_peak'"):
        S.parse_schedule_law('id = "x"\nschedule_law = "annealing"\nconvention = "all_steps"\n[fixed]\nlam = 0.99\n'
                             '[parameters.L0]\nprior = "Uniform(0, 1)"')
    # a file without convention is read as "post_warmup", what results saved before conventions existed used
    text = MPL.source_text.replace('convention = "all_steps"\n', "")
    assert S.parse_schedule_law(text).convention == "post_warmup"
    with pytest.raises(ValueError, match="learning rate falls to 0 at step 3"):
        S._mpl_blocks(S.schedule_from_array([0.0, 1e-4, 0.0, 1e-4, 1e-4], warmup_steps=3), np.array([5]), 1, "all_steps")


def test_branch_prediction_errors(mpl_fit):
    result, _, sched = mpl_fit
    with pytest.raises(ValueError, match=r"branch_from 'nope' is not a run of the fit; must be one of"):
        S.predict_schedule(result, sched["wsd"], branch_from="nope")
    with pytest.raises(ValueError, match="the run has 2160 warmup steps, the schedule 100"):
        S.predict_schedule(result, S.lr_schedule("constant", total_steps=24000, peak_lr=3e-4, warmup_steps=100),
                           branch_from="constant")
    with pytest.raises(ValueError, match="differs from the run's at step 2161, inside or right after the warmup"):
        S.predict_schedule(result, sched["cosine"], branch_from="constant")
    with pytest.raises(ValueError, match=r"step 2500 is at or before step \d+, the last checkpoint of run 'constant'"):
        S.predict_schedule(result, sched["step"], [2500, 20000], branch_from="constant")
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        S.predict_schedule(result, sched["step"], chunk_size=0)


# ---------------------------------------------------------------------------------------------------------
def test_example_lr_schedules(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["lr_schedules.py", "--out", str(tmp_path), "--quick", "--laws", "tissue2024"])
    runpy.run_path("examples/lr_schedules.py", run_name="__main__")
    assert (tmp_path / "schedule_prediction.png").stat().st_size > 10_000
    assert "tissue2024   wsd" in capsys.readouterr().out
