"""Sampler settings as one value (bayescale.NUTS): validation, coercion from flat keywords, the attrs record and the
shared argparse flags."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import jax

import bayescale as bs
from bayescale._runtime import GPU_MIN_CHAINS, GPU_MIN_POINTS, DeviceError, available_platforms, choose_platform
from bayescale.infer.fit import place, resolve_chain_method, run_nuts
from bayescale.infer.settings import NUTS, SamplerSettingsError, add_sampler_arguments, sampler_from_args

from tests.conftest import simulate_table
from tests.fits import TRUTH


def test_defaults_and_replace():
    s = NUTS()
    assert (s.num_warmup, s.num_samples, s.num_chains, s.target_accept_prob, s.dense_mass) == (1000, 1000, 4, 0.9, True)
    t = s.replace(num_chains=2, target_accept_prob=0.95)
    assert (t.num_chains, t.target_accept_prob, t.num_warmup) == (2, 0.95, 1000)
    assert s.num_chains == 4  # frozen: replace makes a copy
    with pytest.raises(AttributeError):
        s.num_chains = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"num_chains": 0}, r"num_chains must be a positive integer, got 0"),
        ({"num_warmup": 2.5}, r"num_warmup must be a positive integer, got 2.5"),
        ({"num_samples": True}, r"num_samples must be a positive integer, got True"),
        ({"target_accept_prob": 1.0}, r"target_accept_prob must be a number in \(0, 1\), got 1.0"),
        ({"target_accept_prob": "0.9"}, r"target_accept_prob must be a number in \(0, 1\), got '0.9'"),
        ({"chain_method": "threads"}, r"chain_method 'threads': must be one of \['auto', 'parallel'"),
        ({"init": "random"}, r"init 'random': must be one of \['map', 'median'\]"),
        ({"dense_mass": "yes"}, r"dense_mass must be True or False, got 'yes'"),
        ({"progress_bar": 1}, r"progress_bar must be True, False or None, got 1"),
        ({"device": "cuda"}, r"device 'cuda': must be one of \['auto', 'cpu', 'gpu'\]"),
    ],
)
def test_invalid_settings_are_rejected(change, match):
    with pytest.raises(SamplerSettingsError, match=match):
        NUTS(**change)
    with pytest.raises(SamplerSettingsError, match=match):
        NUTS().replace(**change)


def test_coerce_from_value_mapping_and_flat_keywords():
    assert NUTS.coerce() == NUTS()
    assert NUTS.coerce(NUTS(num_chains=2)) == NUTS(num_chains=2)
    assert NUTS.coerce({"num_chains": 2}, num_samples=50) == NUTS(num_chains=2, num_samples=50)
    assert NUTS.coerce(None, num_warmup=10) == NUTS(num_warmup=10)
    with pytest.raises(SamplerSettingsError, match=r"unknown sampler setting\(s\) \['num_chain'\]: must be among"):
        NUTS.coerce(None, num_chain=2)
    with pytest.raises(SamplerSettingsError, match=r"unknown sampler setting\(s\) \['draws'\]"):
        NUTS.coerce({"draws": 10})
    with pytest.raises(SamplerSettingsError, match="sampler must be a bayescale.NUTS, a dict of its settings or None, "
                                                   "got int"):
        NUTS.coerce(3)


def test_attrs_record_round_trips():
    s = NUTS(num_chains=2, num_warmup=30, num_samples=40, target_accept_prob=0.95, init="median", progress_bar=False)
    text = s.to_attrs(chain_method="parallel", rng_key=0, platform="cpu", placement="auto: no accelerator")
    record = json.loads(text)
    assert record["algorithm"] == "NUTS" and record["rng_key"] == 0 and "progress_bar" not in record
    assert record["device"] == "auto" and record["platform"] == "cpu"
    back = NUTS.from_attrs(text)
    assert back == s.replace(progress_bar=None, chain_method="parallel")
    # a record from before the device policy held the platform as "device": not read as the setting
    old = json.dumps({k: v for k, v in record.items() if k not in ("platform", "placement")} | {"device": "gpu"})
    assert NUTS.from_attrs(old).device == "auto"


def test_argparse_flags_give_the_value():
    parser = argparse.ArgumentParser()
    add_sampler_arguments(parser, NUTS(num_chains=2))
    assert sampler_from_args(parser.parse_args([])) == NUTS(num_chains=2)
    args = parser.parse_args(["--chains", "3", "--warmup", "20", "--samples", "30", "--target-accept", "0.99",
                              "--init", "median", "--device", "cpu", "--no-progress"])
    assert sampler_from_args(args) == NUTS(num_chains=3, num_warmup=20, num_samples=30, target_accept_prob=0.99,
                                           init="median", device="cpu", progress_bar=False)
    with pytest.raises(SamplerSettingsError, match="num_chains must be a positive integer, got 0"):
        sampler_from_args(parser.parse_args(["--chains", "0"]))


# --- the device policy (bayescale._runtime.choose_platform): a pure function of the work and the platforms ---

CPU, GPU = ("cpu",), ("cpu", "gpu")


@pytest.mark.parametrize(
    ("requested", "n_points", "n_chains", "platforms", "want"),
    [
        # a CPU-only machine: everything on the CPU
        ("auto", 10**6, 10_000, CPU, "cpu"),
        ("cpu", 10**6, 10_000, GPU, "cpu"),  # forced
        # a GPU machine: the default Chinchilla fit (240 points, 4 chains) stays on the CPU ...
        ("auto", 240, 4, GPU, "cpu"),
        ("auto", GPU_MIN_POINTS - 1, 4, GPU, "cpu"),
        # ... large data and batches of many chains go to the GPU
        ("auto", GPU_MIN_POINTS, 4, GPU, "gpu"),
        ("auto", 36, GPU_MIN_CHAINS, GPU, "gpu"),  # e.g. a fit_batch of 32 fits x 2 chains
        ("auto", 36, GPU_MIN_CHAINS - 1, GPU, "cpu"),
        ("gpu", 36, 1, GPU, "gpu"),  # forced
        ("auto", 10**6, 4, ("cpu", "tpu"), "tpu"),  # another accelerator
    ],
)
def test_device_policy(requested, n_points, n_chains, platforms, want):
    platform, reason = choose_platform(requested, n_points=n_points, n_chains=n_chains, platforms=platforms)
    assert platform == want
    assert reason.startswith("forced" if requested != "auto" else "auto")


def test_forcing_a_gpu_without_one_is_one_clear_error():
    with pytest.raises(DeviceError, match=r"device='gpu' but JAX finds no GPU here \(platforms: \['cpu'\]\); install"):
        choose_platform("gpu", n_points=10, platforms=CPU)
    with pytest.raises(DeviceError, match=r"device='gpu' but JAX finds no GPU here \(platforms: \['cpu', 'tpu'\]\)"):
        choose_platform("gpu", n_points=10, platforms=("cpu", "tpu"))
    with pytest.raises(DeviceError, match=r"device 'cuda': must be one of"):
        choose_platform("cuda", n_points=10, platforms=GPU)
    assert issubclass(DeviceError, bs.ArgumentError)  # the CLI prints it as one line
    if "gpu" in available_platforms():  # pragma: no cover - this project's machines have no GPU
        pytest.skip("this machine has a GPU")
    # on this (CPU-only) machine, through fit: raised before any work, as one line
    with pytest.raises(DeviceError, match=r"^device='gpu' but JAX finds no GPU here"):
        bs.fit("hoffmann2022", simulate_table("hoffmann2022", TRUTH, seed=1), device="gpu")


def test_available_platforms_reads_jax_devices(monkeypatch):
    """The platforms come from jax.devices: an unknown backend (JAX raises RuntimeError) is simply absent."""
    real = jax.devices

    def fake(backend=None):
        if backend == "gpu":
            return real("cpu")[:1]  # stands in for a GPU device
        if backend == "tpu":
            raise RuntimeError("Unknown backend tpu")
        return real(backend)

    monkeypatch.setattr(jax, "devices", fake)
    assert available_platforms() == ("cpu", "gpu")
    monkeypatch.setattr(jax, "devices", real)
    assert available_platforms() == ("cpu",)  # this project's machines


def test_placement_on_a_gpu_machine(monkeypatch):
    """With a GPU among the platforms (mocked), a small fit is placed on the CPU, where chains run one after another
    (numpyro's 'parallel' maps over the default backend's devices, the GPU's), and a large one on the GPU."""
    import bayescale.infer.fit as inference

    monkeypatch.setattr(inference, "available_platforms", lambda: GPU)
    small, large = place("auto", n_points=240, n_chains=4), place("auto", n_points=10**6, n_chains=4)
    assert (small.platform, large.platform) == ("cpu", "gpu")
    assert small.to_record() == {"platform": "cpu", "placement": small.reason} and "latency-bound" in small.reason
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "local_device_count", lambda: 1)  # one GPU
    assert resolve_chain_method("auto", 4, "cpu") == "sequential"
    assert resolve_chain_method("auto", 4, "gpu") == "vectorized"  # one GPU: chains in lockstep on it
    with pytest.raises(SamplerSettingsError, match="chain_method='parallel' maps chains over the gpu devices, but the "
                                                   "sampler runs on cpu"):
        resolve_chain_method("parallel", 4, "cpu")


def test_forced_cpu_is_recorded():
    """run_nuts records where it ran and why; the result's attrs["sampler"] carries it (device kept as asked)."""
    import numpyro
    import numpyro.distributions as dist

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(mu, 1), obs=y)

    mcmc = run_nuts(model, rng_key=jax.random.PRNGKey(0), y=jax.numpy.zeros(5),
                    sampler=NUTS(num_chains=1, num_warmup=20, num_samples=20, device="cpu", progress_bar=False))
    assert mcmc.placement.platform == "cpu" and mcmc.placement.reason == "forced: device='cpu'"
    from bayescale.infer.fit import sampler_record

    record = json.loads(sampler_record(NUTS(device="cpu"), 0, mcmc.placement))
    assert (record["device"], record["platform"], record["placement"]) == ("cpu", "cpu", "forced: device='cpu'")
    assert NUTS.from_attrs(json.dumps(record)).device == "cpu"
def test_one_positive_integer_check():
    # settings.check_positive_ints serves the sampler settings and every count (calibration's simulations, bins): a
    # bool is refused although Python counts it an int, and the error is an ArgumentError (so a ValueError).
    from bayescale.errors import ArgumentError
    from bayescale.infer.settings import check_positive_ints

    check_positive_ints(num_simulations=3, num_bins=np.int64(2))
    with pytest.raises(ArgumentError, match="num_bins must be a positive integer, got True"):
        check_positive_ints(num_simulations=3, num_bins=True)
    with pytest.raises(SamplerSettingsError, match="n must be a positive integer, got 0"):
        check_positive_ints(error=SamplerSettingsError, n=0)
    assert issubclass(SamplerSettingsError, ArgumentError)


def test_every_example_spells_the_sampler_flags_one_way():
    # The CLI and every script in examples/ read the sampler flags with add_sampler_arguments / sampler_from_args
    # and pass one NUTS value: no example defines its own --num-chains.
    from pathlib import Path

    examples = sorted(Path(__file__).resolve().parents[1].joinpath("examples").glob("*.py"))
    assert len(examples) >= 10
    for path in examples:
        text = path.read_text()
        assert "add_sampler_arguments(parser" in text and "sampler_from_args(args)" in text, path.name
        assert "--num-chains" not in text and "--num-warmup" not in text and "--num-samples" not in text, path.name


@pytest.mark.parametrize(
    ("setting", "mass", "sizes", "num_warmup", "want"),
    [
        (None, True, {"E": 1, "A__centred": 1, "alpha": 1, "sigma": 1, "nu": 1}, 1000, False),  # 2 x 5 <= 25
        (None, True, {"a": 18, "tau": 3, "g": 7}, 300, True),  # 28 dimensions, dense: a 25-draw window is singular
        (None, [("E", "alpha")], {"E": 1, "alpha": 1, "z_run": 500}, 300, False),  # the runs' block is diagonal
        (None, [("a", "b")], {"a": 10, "b": 3, "z_run": 500}, 300, True),  # a 13-dimensional dense block
        (None, False, {"z_run": 500}, 300, False),  # diagonal: every variance from the window's 25 draws
        (None, True, {"a": 1, "b": 1, "c": 1, "d": 1}, 300, False),  # the last window: 100 draws >= 10 x 4
        (None, True, {"a": 1, "b": 1, "c": 1, "d": 1}, 150, True),  # one 25-draw window: < 10 draws per dimension
        (None, True, {"a": 8}, 20, True),  # one 15-draw window
        (True, True, {"a": 1}, 1000, True),  # forced either way
        (False, True, {"a": 40}, 300, False),
    ],
)
def test_mass_regularisation_rule(setting, mass, sizes, num_warmup, want):
    from bayescale.infer.fit import regularizes_mass

    z = {name: np.zeros(size) for name, size in sizes.items()}
    assert regularizes_mass(setting, mass, z, num_warmup) is want


def test_narrow_posterior_gets_its_own_mass_matrix():
    """Stan's shrinkage adds ~1e-5 to every adapted variance; a posterior with sds of 1e-3 (the amplitudes and
    exponents of a large table) then gets a mass matrix of the shrinkage, not of the posterior, and NUTS takes many
    small steps. Two correlated parameters known to 1e-3: with the automatic choice (no shrinkage for two dimensions)
    the adapted matrix matches the posterior and the adapted step size is of order 1; forcing the shrinkage makes the
    step an order of magnitude smaller (measured, seed 0: step size 0.65 and 4.9 leapfrog steps per draw, against
    0.064 and 7.4). The thresholds sit a factor 2-3 from each side."""
    import numpyro
    import numpyro.distributions as dist

    def model(y=None):
        a = numpyro.sample("a", dist.Normal(0, 1))
        b = numpyro.sample("b", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(jax.numpy.stack([a, a + b]), 1e-3), obs=y)

    y = jax.numpy.array([0.3, 0.5])
    stats = {}
    for setting in (None, True):
        mcmc = run_nuts(model, rng_key=jax.random.PRNGKey(0), y=y,
                        sampler=NUTS(num_chains=1, num_warmup=300, num_samples=300, init="median",
                                     regularize_mass=setting, progress_bar=False))
        fields = mcmc.get_extra_fields()
        stats[setting] = (mcmc.placement.mass_regularized, float(mcmc.last_state.adapt_state.step_size),
                          float(np.mean(fields["num_steps"])))
        b = np.asarray(mcmc.get_samples()["b"])
        assert abs(b.mean() - 0.2) < 5e-4 and 0.7e-3 < b.std() < 2.1e-3  # both sample the posterior (sd 1.41e-3)
    (regularized, step, steps), (forced, step_forced, steps_forced) = stats[None], stats[True]
    assert regularized is False and forced is True
    assert step > 0.3 and step_forced < 0.15 and steps < steps_forced, stats


def test_laplace_inverse_mass_follows_the_mass_structure():
    """The MAP's Laplace covariance (sites sorted, as ravel_pytree orders them) is cut into numpyro's blocks: the dense
    block in the block's own site order, the other sites' variances; eigenvalues above 1 (directions the Hessian sees
    as flat) are capped at numpyro's default of 1."""
    from bayescale.infer.fit import laplace_inverse_mass

    z = {"b": np.zeros(2), "a": np.zeros(()), "c": np.zeros(())}  # sorted order: a, b[0], b[1], c
    cov = np.diag([1e-4, 4e-4, 9e-4, 1e-6])
    cov[0, 3] = cov[3, 0] = 5e-6
    dense = laplace_inverse_mass(cov, True, z)
    assert list(dense) == [("a", "b", "c")]
    np.testing.assert_allclose(dense[("a", "b", "c")], cov, atol=1e-15)
    blocks = laplace_inverse_mass(cov, [("c", "a")], z)
    np.testing.assert_allclose(blocks[("c", "a")], [[1e-6, 5e-6], [5e-6, 1e-4]], atol=1e-15)
    np.testing.assert_allclose(blocks[("b",)], [4e-4, 9e-4])
    assert list(laplace_inverse_mass(cov, False, z)) == [("a", "b", "c")]
    flat = np.diag([1e8, 1e-4, 1e-4, 1e-4])  # a direction the Hessian could not see
    np.testing.assert_allclose(np.diag(laplace_inverse_mass(flat, True, z)[("a", "b", "c")]), [1, 1e-4, 1e-4, 1e-4])


def test_warmup_starts_from_the_laplace_matrix():
    """With init="map" the warmup starts from the MAP's Laplace matrix (passed with the start, so that it is an input of
    the compiled sampler, not a constant), not the identity, and the result records it. On a posterior with sds of
    1e-3 in two directions and of 1 in a third (the scales of a large table's amplitudes and of its noise's tail
    index), the first 75 warmup iterations (numpyro keeps its initial matrix for 100) then take a few leapfrog steps
    each instead of hundreds, since from the identity the step must fit the narrow directions and the trajectory the
    wide one (measured, seed 0: 5.3 against 260 on average; the thresholds sit 4x and 2.6x from them)."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC
    from bayescale.infer.fit import NUTSKernel, StartWithMass

    def model(y=None):
        a = numpyro.sample("a", dist.Normal(0, 1))
        b = numpyro.sample("b", dist.Normal(0, 1))
        numpyro.sample("c", dist.Normal(0, 1))  # the prior alone: a wide direction
        numpyro.sample("y", dist.Normal(jax.numpy.stack([a, a + b]), 1e-3), obs=y)

    y = jax.numpy.array([0.3, 0.5])
    cov = np.diag([0.0, 0.0, 1.0])
    cov[:2, :2] = 1e-6 * np.array([[1.0, -1.0], [-1.0, 2.0]])  # the exact posterior covariance of (a, b, c)
    z = {"a": jax.numpy.array(0.3), "b": jax.numpy.array(0.2), "c": jax.numpy.array(0.0)}
    key = jax.random.PRNGKey(0)
    steps = {}
    for name, start in (("laplace", StartWithMass(z, {("a", "b", "c"): jax.numpy.asarray(cov)})), ("identity", z)):
        mcmc = MCMC(NUTSKernel(model, dense_mass=True), num_warmup=200, num_samples=1, progress_bar=False)
        mcmc.warmup(key, y=y, init_params=start, collect_warmup=True, extra_fields=("num_steps",))
        steps[name] = float(np.mean(np.asarray(mcmc.get_extra_fields()["num_steps"])[:75]))
    assert steps["laplace"] < 20 and steps["identity"] > 100, steps
    mcmc = run_nuts(model, rng_key=key, y=y, sampler=NUTS(num_chains=2, num_warmup=100, num_samples=100,
                                                          init="map", progress_bar=False))
    assert mcmc.start_record["initial_mass"] == "laplace"
    b = np.asarray(mcmc.get_samples()["b"])
    assert abs(b.mean() - 0.2) < 5e-4 and 0.7e-3 < b.std() < 2.1e-3  # the posterior: b = 0.2 ± 1.41e-3
