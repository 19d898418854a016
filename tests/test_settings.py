"""Sampler settings as one value (bayescale.NUTS): validation, coercion from flat keywords, the attrs record and the
shared argparse flags."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from bayescale.settings import NUTS, SamplerSettingsError, add_sampler_arguments, sampler_from_args


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
    text = s.to_attrs(chain_method="parallel", rng_key=0, device="cpu")
    record = json.loads(text)
    assert record["algorithm"] == "NUTS" and record["rng_key"] == 0 and "progress_bar" not in record
    back = NUTS.from_attrs(text)
    assert back == s.replace(progress_bar=None, chain_method="parallel")


def test_argparse_flags_give_the_value():
    parser = argparse.ArgumentParser()
    add_sampler_arguments(parser, NUTS(num_chains=2))
    assert sampler_from_args(parser.parse_args([])) == NUTS(num_chains=2)
    args = parser.parse_args(["--chains", "3", "--warmup", "20", "--samples", "30", "--target-accept", "0.99",
                              "--init", "median", "--no-progress"])
    assert sampler_from_args(args) == NUTS(num_chains=3, num_warmup=20, num_samples=30, target_accept_prob=0.99,
                                           init="median", progress_bar=False)
    with pytest.raises(SamplerSettingsError, match="num_chains must be a positive integer, got 0"):
        sampler_from_args(parser.parse_args(["--chains", "0"]))


def test_one_positive_integer_check():
    # settings.check_positive_ints serves the sampler settings and every count (calibration's simulations, bins): a
    # bool is refused although Python counts it an int, and the error is an ArgumentError (so a ValueError).
    from bayescale.errors import ArgumentError
    from bayescale.settings import check_positive_ints

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
