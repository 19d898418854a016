"""The law catalogue (`load_law`, law files) and prior expressions (`bayescale.laws.priors.parse_prior`)."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import bayescale as bs
from bayescale.laws.formula import BinOp, Call, FormulaError, Neg, Sym, evaluate_number
from bayescale.laws.catalogue import positive_support, law_search_path, parse_law_text
from bayescale.laws.priors import DISTRIBUTIONS, parse_prior

CATALOGUE = ["caballero2023_bpl", "chen2025_parscale", "clark2022_moe", "frantar2023_sparsity", "hoffmann2022",
             "kaplan2020_d", "kaplan2020_n", "kaplan2020_nd", "kaplan2020_per_token_steps", "krajewski2024_finegrained",
             "li2025_farseer",
             "muennighoff2023", "ouro2025", "steplaw2025", "tao2024_vocab", "ye2024_mixing"]
MODELS = Path(__file__).resolve().parent.parent / "models"

#: A small valid law file; the malformed cases below are edits of it.
VALID = """\
id = "toy"
title = "Toy law"
formula = "E + A / N**alpha"
citation = "nobody 2025"

[inputs.N]
description = "parameters"

[parameters.E]
prior = "Uniform(0, min_loss)"
[parameters.A]
prior = "LogNormal(log(400), 2)"
[parameters.alpha]
prior = "LogNormal(log(0.3), 0.5)"

[published.paper]
citation = "nobody 2025, Table 1"
values = { E = 1.5, A = 400, alpha = 0.3 }
"""


def _edit(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


# ---------------------------------------------------------------------------------------------------------
# Catalogue
# ---------------------------------------------------------------------------------------------------------
def test_catalogue_ids():
    assert bs.list_laws() == CATALOGUE
    assert MODELS in law_search_path()


@pytest.mark.parametrize("law_id", CATALOGUE)
def test_load_catalogue_law(law_id):
    law = bs.load_law(law_id)
    path = MODELS / f"{law_id}.toml"
    assert law.id == law_id == path.stem
    assert isinstance(law, bs.Law)
    assert law.source_text == path.read_text()
    assert law.title and law.citation and law.formula
    assert set(law.input_names) <= {"N", "D", "T_m", "lr", "batch_size", "U_D", "E", "V", "P", "N_active", "D2", "x", "G",
                                    "r1", "r2", "r3", "r4", "T", "S"} and law.input_names
    # every formula symbol (after [definitions] are substituted) is a parameter or an input, and every parameter is used
    node = law.expression
    assert _names(node) == set(law.input_names) | set(law.parameter_names)
    assert all(p.prior.family in DISTRIBUTIONS for p in law.parameters)
    # every catalogue law cites published constants, or its notes say the paper published none
    assert law.published or "no constants" in law.notes, law_id
    # loading by path gives the same law
    by_path = bs.load_law(path)
    assert by_path.source_hash == law.source_hash and by_path.parameter_names == law.parameter_names


#: The published constants, typed in from the papers (not from the law files).
PUBLISHED = {
    ("hoffmann2022", "hoffmann2022"): dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    ("hoffmann2022", "besiroglu2024"): dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
    ("kaplan2020_n", "kaplan2020"): dict(N_c=8.8e13, alpha_N=0.076),
    ("kaplan2020_d", "kaplan2020"): dict(D_c=5.4e13, alpha_D=0.095),
    ("kaplan2020_nd", "kaplan2020"): dict(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103),
    # Step Law publishes only its optimum laws (eta_opt = c_lr N^a_N D^a_D, B_opt = c_bs D^d_bs), not the loss part
    ("steplaw2025", "li2025"): dict(c_lr=1.79, a_N=-0.713, a_D=0.307, c_bs=0.58, d_bs=0.571),
    ("muennighoff2023", "muennighoff2023"): dict(E=1.869, A=520.8, B=1487.7, alpha=0.3526596, beta=0.3526596,
                                                 R_D_star=15.387756, R_N_star=5.309743),
    # the optimum of the authors' released fitting procedure (QwenLM/ParScale parametric_fit.py): stack E 0.691237,
    # A 1.13062e7, pile E 1.28877, A 1.97352e8, as v = E + (A/1e9)^alpha, s = alpha (A/1e9)^alpha (the file's form)
    ("chen2025_parscale", "chen2025_stack"): dict(v=1.11915, s=0.0810342, alpha=0.189371, k=0.393463),
    ("chen2025_parscale", "chen2025_pile"): dict(v=2.01593, s=0.142766, alpha=0.196333, k=0.334456),
}

#: Parameters whose sign is free: exponents of where an optimum sits (Step Law's eta_opt, B_opt) and a correlation,
#: not decay exponents of a loss term.
SIGNED = {"steplaw2025": {"a_N", "a_D", "d_bs", "rho"},
          # log-linear coefficients and an intercept (Clark et al.), slopes that may change sign (broken power law),
          # stretched-exponential coefficients of N (Farseer), mixture effects of either sign (Ye et al.), and minus
          # the floor of a negative target (Tao et al.: F, a negative normalised loss)
          "clark2022_moe": {"a", "b", "c", "d"}, "caballero2023_bpl": {"c0", "c1"},
          "li2025_farseer": {"a1", "b1", "alpha", "a2", "b2", "beta", "a3", "b3", "gamma"},
          "ye2024_mixing": {"t1", "t2", "t3", "t4"}, "tao2024_vocab": {"F"}, "chen2025_parscale": {"v"}}
#: Laws that are not power laws in an input: log-bilinear in log N and log experts (Clark et al. 2022), exponential in
#: the mixture proportions (Ye et al. 2024); and a power law written in Box-Cox form with expm1, so without a `**`
#: (ParScale: v + s (n^-alpha - 1) / alpha).
NOT_POWER_LAWS = {"clark2022_moe", "ye2024_mixing", "chen2025_parscale"}


def test_published_table_covers_catalogue():
    assert {(law_id, pub.source) for law_id in CATALOGUE for pub in bs.load_law(law_id).published} == set(PUBLISHED)


@pytest.mark.parametrize(("law_id", "source"), list(PUBLISHED))
def test_published_constants_are_numbers(law_id, source):
    law = bs.load_law(law_id)
    pub = law.reference(source)
    assert dict(pub.values) == PUBLISHED[law_id, source]
    assert all(type(v) is float and math.isfinite(v) for v in (*pub.values.values(), *pub.se.values()))
    assert set(pub.se) <= set(pub.values)
    assert pub.citation


def test_besiroglu_standard_errors():
    se = bs.load_law("hoffmann2022").reference("besiroglu2024").se
    assert dict(se) == dict(E=0.03, A=124.58, B=1293.23, alpha=0.02, beta=0.02)


def test_unknown_reference():
    with pytest.raises(bs.LawError, match=r"law 'hoffmann2022' has no published constants 'nope'; must be one of "
                                          r"\['hoffmann2022', 'besiroglu2024'\]"):
        bs.load_law("hoffmann2022").reference("nope")


def test_predict_needs_inputs():
    law = bs.load_law("hoffmann2022")
    with pytest.raises(bs.LawError, match=r"law 'hoffmann2022' needs inputs \['D'\]"):
        law.predict(dict(law.reference("hoffmann2022").values), N=1e9)


@pytest.mark.parametrize("name", ["nope", "Hoffmann2022", "hoffmann", ""])
def test_unknown_law_lists_known_ids(name):
    known = re.escape(str(bs.list_laws()))
    with pytest.raises(bs.LawError, match=rf"unknown law '{name}': must be one of {known} or a path to a \.toml law file"):
        bs.load_law(name)


def test_unknown_law_names_a_file_in_a_sub_folder():
    # downstream and schedule laws are files in models/ sub-folders, not catalogue ids: the error says where they are
    with pytest.raises(bs.LawError, match=r"'bhagia2024_accuracy_nd' is the file '[^']*downstream/bhagia2024_accuracy_nd"
                                          r"\.toml': pass that path"):
        bs.load_law("bhagia2024_accuracy_nd")
    with pytest.raises(bs.LawError, match=r"a schedule law, load it with bayescale\.analyses\.schedules\."
                                          r"load_schedule_law\('luo2025_mpl'\)"):
        bs.load_law("luo2025_mpl")


def test_folder_named_like_a_law_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hoffmann2022").mkdir()
    assert bs.load_law("hoffmann2022").id == "hoffmann2022"


def test_missing_law_file(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(bs.LawError, match=rf"law file '{re.escape(str(path))}' does not exist"):
        bs.load_law(path)
    with pytest.raises(bs.LawError, match=r"law file '.*missing\.toml' does not exist"):
        bs.load_law(str(path))


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_law_file_from_tmp_path(tmp_path, as_str):
    path = tmp_path / "toy_law.toml"
    path.write_text(VALID)
    law = bs.load_law(str(path) if as_str else path)
    assert law.id == "toy" and law.title == "Toy law" and law.citation == "nobody 2025"
    assert law.input_names == ("N",) and law.parameter_names == ("E", "A", "alpha")
    assert [p.prior.text for p in law.parameters] == ["Uniform(0, min_loss)", "LogNormal(log(400), 2)", "LogNormal(log(0.3), 0.5)"]
    assert law.reference("paper").values == {"E": 1.5, "A": 400.0, "alpha": 0.3}
    assert all(type(v) is float for v in law.reference("paper").values.values())  # A = 400 is a TOML integer
    N = np.geomspace(1e6, 1e12, 7)
    np.testing.assert_allclose(np.asarray(law.predict(dict(E=1.5, A=400.0, alpha=0.3), N=N)), 1.5 + 400.0 / N**0.3, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Malformed law files
# ---------------------------------------------------------------------------------------------------------
MALFORMED = [
    ("invalid-toml", _edit('formula = "E + A / N**alpha"', "formula = E + A"), r"not valid TOML: "),
    ("invalid-toml-unclosed", VALID + "\n[parameters.B\n", r"not valid TOML: "),
    ("missing-formula", _edit('formula = "E + A / N**alpha"\n', ""), r"missing required key 'formula'"),
    ("missing-id", _edit('id = "toy"\n', ""), r"missing required key 'id'"),
    ("missing-inputs", _edit('[inputs.N]\ndescription = "parameters"\n', ""), r"missing required key 'inputs'"),
    ("missing-parameters", VALID[: VALID.index("[parameters.E]")], r"missing required key 'parameters'"),
    ("parameter-without-prior", _edit('[parameters.A]\nprior = "LogNormal(log(400), 2)"', '[parameters.A]\ndescription = "amplitude"'),
     r"parameters \['A'\] have no 'prior'"),
    ("parameters-without-prior", _edit('prior = "LogNormal(log(400), 2)"', 'description = "a"').replace(
        'prior = "LogNormal(log(0.3), 0.5)"', 'description = "b"'),
     r"parameters \['A', 'alpha'\] have no 'prior'"),
    ("unknown-symbol", _edit("E + A / N**alpha", "E + A / N**alpha + Q / D**beta"),
     r"in formula 'E \+ A / N\*\*alpha \+ Q / D\*\*beta': unknown symbols \['D', 'Q', 'beta'\] "
     r"\(known: \['A', 'E', 'N', 'alpha'\]\)"),
    ("unknown-function", _edit("E + A / N**alpha", "E + A / gamma(N)**alpha"), r"unknown functions \['gamma'\]"),
    ("unsafe-formula", _edit("E + A / N**alpha", "N.__class__"), r"unsupported syntax 'N\.__class__'"),
    ("bad-formula-syntax", _edit("E + A / N**alpha", "E + A / (N**alpha"), r"cannot parse formula 'E \+ A / \(N\*\*alpha'"),
    ("bad-prior", _edit("LogNormal(log(400), 2)", "Laplace(0, 1)"), r"in prior 'Laplace\(0, 1\)': unknown functions \['Laplace'\]"),
    ("prior-missing-arg", _edit("LogNormal(log(400), 2)", "LogNormal(log(400))"), r"prior 'LogNormal\(log\(400\)\)' is missing arguments \['scale'\]"),
    ("published-unknown-parameter", _edit("values = { E = 1.5, A = 400, alpha = 0.3 }", "values = { E = 1.5, A = 400, alpha = 0.3, Z = 1 }"),
     r"published\[paper\] names unknown parameters \['Z'\]"),
    ("unknown-top-level-key", VALID.replace('title = "Toy law"', 'title = "Toy law"\nformulas = "E"'),
     r"unknown keys \['formulas'\]; must be among \['citation', 'definitions', 'formula', 'id', 'inputs', 'notes', 'optimum', 'parameters', 'published', 'target', 'title'\]"),
    ("input-and-parameter", _edit('[parameters.E]\nprior = "Uniform(0, min_loss)"', '[parameters.E]\nprior = "Uniform(0, min_loss)"\n[parameters.N]\nprior = "LogNormal(0, 1)"'),
     r"names \['N'\] are both inputs and parameters"),
    ("optimum-not-an-input", VALID + '[optimum]\nalpha = "N"\n',
     r"optimum 'alpha' is not an input; must be one of \['N'\]"),
    ("optimum-unknown-symbol", VALID.replace('formula = "E + A / N**alpha"', 'formula = "E + A / N**alpha * lr"')
     .replace("[inputs.N]", "[inputs.lr]\n[inputs.N]") + '[optimum]\nlr = "N * foo"\n',
     r"optimum 'lr': .*unknown symbols \['foo'\]"),
    ("optimum-of-optimum", VALID.replace('formula = "E + A / N**alpha"', 'formula = "E + A / N**alpha * lr * bs"')
     .replace("[inputs.N]", "[inputs.lr]\n[inputs.bs]\n[inputs.N]") + '[optimum]\nlr = "bs * N"\nbs = "N"\n',
     r"optimum 'lr' uses \['bs'\], which have an optimum themselves"),
]


@pytest.mark.parametrize(("text", "match"), [pytest.param(t, m, id=i) for i, t, m in MALFORMED])
def test_malformed_law_file(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(bs.LawError, match=rf"^{re.escape(str(path))}: .*{match}"):
        bs.load_law(path)
    with pytest.raises(bs.LawError, match=rf"^<string>: .*{match}"):
        parse_law_text(text)


def test_law_error_is_value_error():
    assert issubclass(bs.LawError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------------------------------------
STATS = {"min_loss": 1.8, "max_loss": 4.0}

#: (prior text, family, expected arguments after evaluation with STATS, a point in the support)
VALID_PRIORS = [
    ("Uniform(0, min_loss)", "Uniform", dict(low=0.0, high=1.8), 1.0),
    ("Uniform(0.5 * min_loss, max_loss - 0.1)", "Uniform", dict(low=0.9, high=3.9), 2.0),
    ("Uniform(low=0, high=min_loss)", "Uniform", dict(low=0.0, high=1.8), 1.0),
    ("LogNormal(log(500), 2.5)", "LogNormal", dict(loc=math.log(500), scale=2.5), 300.0),
    ("LogNormal(log(1e13), 4)", "LogNormal", dict(loc=math.log(1e13), scale=4.0), 1e12),
    ("Normal(0, 1)", "Normal", dict(loc=0.0, scale=1.0), -0.3),
    ("Normal(loc=1, scale=2)", "Normal", dict(loc=1.0, scale=2.0), 0.5),
    ("Normal(scale=2, loc=1)", "Normal", dict(loc=1.0, scale=2.0), 0.5),
    ("Normal(1, scale=2)", "Normal", dict(loc=1.0, scale=2.0), 0.5),
    ("  Normal(-1, exp(-2))  ", "Normal", dict(loc=-1.0, scale=math.exp(-2)), -1.1),
    ("Normal(sqrt(4), 2**-1)", "Normal", dict(loc=2.0, scale=0.5), 2.2),
    ("Normal(0 * -1, 1)", "Normal", dict(loc=0.0, scale=1.0), 0.1),
    ("Normal(1e300 + 1e10, 1)", "Normal", dict(loc=1e300, scale=1.0), 1e300),
    ("Normal(min_loss - max_loss, max_loss / min_loss)", "Normal", dict(loc=-2.2, scale=4.0 / 1.8), 0.0),
    ("HalfNormal(0.05)", "HalfNormal", dict(scale=0.05), 0.01),
    ("HalfCauchy(1)", "HalfCauchy", dict(scale=1.0), 2.0),
    ("Exponential(2)", "Exponential", dict(rate=2.0), 0.7),
    ("Gamma(2, 0.1)", "Gamma", dict(concentration=2.0, rate=0.1), 15.0),
    ("Beta(2, 5)", "Beta", dict(concentration1=2.0, concentration0=5.0), 0.2),
    ("StudentT(3, 0, 1)", "StudentT", dict(df=3.0, loc=0.0, scale=1.0), 0.4),
    ("TruncatedNormal(0.3, 0.1, 0, 1)", "TruncatedNormal", dict(loc=0.3, scale=0.1, low=0.0, high=1.0), 0.35),
    ("TruncatedNormal(loc=1, scale=1, low=0, high=min_loss)", "TruncatedNormal", dict(loc=1.0, scale=1.0, low=0.0, high=1.8), 1.5),
]


@pytest.mark.parametrize(("text", "family", "expected", "x"), VALID_PRIORS, ids=[c[0].strip() for c in VALID_PRIORS])
def test_valid_prior(text, family, expected, x):
    prior = parse_prior(text)
    assert prior.family == family and prior.text == text.strip()
    evaluated = {name: evaluate_number(node, STATS) for name, node in prior.arguments}
    assert evaluated == pytest.approx(expected, rel=1e-15)
    assert prior.uses_data() == any(s in text for s in STATS)
    d = prior.distribution(STATS)
    assert isinstance(d, dist.Distribution)
    want = DISTRIBUTIONS[family][0](**expected)
    lp, lp_want = float(d.log_prob(x)), float(want.log_prob(x))
    assert math.isfinite(lp) and lp == pytest.approx(lp_want, rel=1e-12)


@pytest.mark.parametrize("text", ["1 + Gamma(2, 0.1)", "Gamma(2, 0.1) + 1", "0.5 * min_loss + 0.1 + Gamma(2, 0.1)"])
def test_shifted_prior(text):
    # c + Gamma(2, 0.1) is the law of c + X: density of X at x - c, support (c, inf), draws all above c
    shift = 1.0 if "min_loss" not in text else 0.5 * STATS["min_loss"] + 0.1
    prior = parse_prior(text)
    assert prior.family == "Gamma" and prior.text == text
    d = prior.distribution(STATS)
    base = dist.Gamma(2.0, 0.1)
    for x in (shift + 1e-3, shift + 3.0, shift + 40.0):
        assert float(d.log_prob(x)) == pytest.approx(float(base.log_prob(x - shift)), rel=1e-12)
    assert float(d.support.lower_bound) == pytest.approx(shift)
    assert not bool(d.support(shift)) and bool(d.support(shift + 1e-9))
    draws = np.asarray(d.sample(jax.random.PRNGKey(0), (4000,)))
    assert draws.min() > shift
    # mean of 4000 draws of Gamma(2, 0.1) + c: sd of the mean 14.1 / sqrt(4000) = 0.22, 5 sd = 1.1
    assert abs(draws.mean() - (shift + 20.0)) < 1.1
    traced = prior.traced_distribution({k: jnp.asarray(v) for k, v in STATS.items()})
    assert float(traced.log_prob(shift + 3.0)) == pytest.approx(float(d.log_prob(shift + 3.0)), rel=1e-12)


def test_shifted_prior_is_positive_only_when_the_shift_is():
    assert positive_support(parse_prior("1 + Gamma(2, 0.1)"))
    assert positive_support(parse_prior("0 + LogNormal(0, 1)"))
    assert not positive_support(parse_prior("-1 + Gamma(2, 0.1)"))


def test_data_statistics_set_bounds():
    prior = parse_prior("Uniform(0, min_loss)")
    for min_loss in (1.2, 2.0, 3.5):
        d = prior.distribution({"min_loss": min_loss, "max_loss": 5.0})
        assert float(d.low) == 0.0 and float(d.high) == min_loss
        assert float(d.log_prob(min_loss * 0.99)) == pytest.approx(-math.log(min_loss))
        assert bool(d.support(min_loss * 0.99)) and not bool(d.support(min_loss * 1.01))


INVALID_PRIORS = [
    ("Laplace(0, 1)", r"in prior 'Laplace\(0, 1\)': unknown functions \['Laplace'\] \(allowed: \['Beta', 'Exponential', "
                      r"'Gamma', 'HalfCauchy', 'HalfNormal', 'LogNormal', 'Normal', 'StudentT', 'TruncatedNormal', 'Uniform', "
                      r"'exp', 'log', 'sqrt'\]\)"),
    ("normal(0, 1)", r"unknown functions \['normal'\]"),
    ("log(2)", r"prior 'log\(2\)' must be a call of one distribution, one of \['Beta', 'Exponential', 'Gamma', "),
    ("3", r"prior '3' must be a call of one distribution"),
    ("min_loss", r"prior 'min_loss' must be a call of one distribution"),
    ("Normal(0, 1) + 1", r"prior 'Normal\(0, 1\) \+ 1': only a distribution bounded below can be shifted, one of "
                         r"\['Gamma', 'LogNormal', 'HalfNormal', 'HalfCauchy', 'Exponential'\]; move Normal's own location"),
    ("1 - Gamma(2, 0.1)", r"prior '1 - Gamma\(2, 0\.1\)' must be a call of one distribution"),
    ("Gamma(2, 1) + Gamma(2, 1)", r"prior 'Gamma\(2, 1\) \+ Gamma\(2, 1\)' must be a call of one distribution"),
    ("Gamma(2, 1) + 2 * HalfNormal(1)", r"distributions cannot be nested"),
    ("exp(1, 2) + Gamma(2, 1)", r"exp\(\) takes 1 positional argument\(s\)"),
    ("mu + Gamma(2, 1)", r"in prior 'mu \+ Gamma\(2, 1\)': unknown symbols \['mu'\]"),
    ("Normal(0)", r"prior 'Normal\(0\)' is missing arguments \['scale'\] of Normal\['loc', 'scale'\]"),
    ("Uniform()", r"prior 'Uniform\(\)' is missing arguments \['low', 'high'\] of Uniform\['low', 'high'\]"),
    ("TruncatedNormal(0, 1, low=0)", r"is missing arguments \['high'\] of TruncatedNormal"),
    ("Normal(0, 1, 2)", r"Normal takes at most 2 arguments \['loc', 'scale'\] in prior 'Normal\(0, 1, 2\)'"),
    ("Normal(0, sigma=1)", r"Normal has no argument 'sigma'; it must be one of \['loc', 'scale'\]"),
    ("Normal(0, 1, loc=2)", r"Normal got argument 'loc' twice in prior 'Normal\(0, 1, loc=2\)'"),
    ("Normal(Normal(0, 1), 1)", r"prior 'Normal\(Normal\(0, 1\), 1\)': distributions cannot be nested"),
    ("Normal(0, scale=exp(HalfNormal(1)))", r"distributions cannot be nested"),
    ("Normal(mu, 1)", r"in prior 'Normal\(mu, 1\)': unknown symbols \['mu'\] \(known: \['max_loss', 'min_loss'\]\)"),
    ("Normal(exp(1, 2), 1)", r"exp\(\) takes 1 positional argument\(s\) in 'Normal\(exp\(1, 2\), 1\)'"),
    ("Normal(log(x=2), 1)", r"log\(\) takes 1 positional argument\(s\)"),
    ("Normal(0, 1", r"cannot parse prior 'Normal\(0, 1'"),
    ("", r"the prior must be a non-empty string, got ''"),
    ("Normal(0, 1).sample", r"unsupported syntax 'Normal\(0, 1\)\.sample'"),
    ("__import__('os')", r"unsupported syntax \"'os'\""),
    ("Normal(**kw)", r"'\*\*' arguments are not allowed"),
]


@pytest.mark.parametrize(("text", "match"), INVALID_PRIORS, ids=[c[0] or "empty" for c in INVALID_PRIORS])
def test_invalid_prior(text, match):
    with pytest.raises(FormulaError, match=match):
        parse_prior(text)


@pytest.mark.parametrize(
    ("text", "stats", "match"),
    [
        ("Normal(log(0), 1)", STATS, r"evaluates to non-finite arguments \{'loc': -inf\}"),
        ("Normal(1 / 0, 1)", STATS, r"evaluates to non-finite arguments \{'loc': inf\}"),
        ("Normal(0 / 0, 1)", STATS, r"evaluates to non-finite arguments \{'loc': nan\}"),
        ("Normal(exp(1000), 1)", STATS, r"evaluates to non-finite arguments \{'loc': inf\}"),
        ("Normal(10**400, 1)", STATS, r"evaluates to non-finite arguments \{'loc': inf\}"),
        ("Normal(0, sqrt(-1))", STATS, r"evaluates to non-finite arguments \{'scale': nan\}"),
        ("Normal(0, (-1)**0.5)", STATS, r"evaluates to non-finite arguments \{'scale': nan\}"),
        ("Uniform(log(min_loss - 2), 1 / (max_loss - 4))", STATS,
         r"prior 'Uniform\(log\(min_loss - 2\), 1 / \(max_loss - 4\)\)' evaluates to non-finite arguments "
         r"\{'low': nan, 'high': inf\}"),
        # finite but invalid arguments
        ("HalfNormal(-1)", STATS, r"prior 'HalfNormal\(-1\)' has invalid arguments \{'scale': -1\.0\}"),
        ("Gamma(0, 1)", STATS, r"prior 'Gamma\(0, 1\)' has invalid arguments \{'concentration': 0\.0, 'rate': 1\.0\}"),
        ("Uniform(1, 0)", STATS, r"prior 'Uniform\(1, 0\)' needs low < high, got \{'low': 1\.0, 'high': 0\.0\}"),
        ("Uniform(min_loss, min_loss)", STATS, r"needs low < high, got \{'low': 1\.8, 'high': 1\.8\}"),
        ("TruncatedNormal(0, 1, max_loss, min_loss)", STATS, r"needs low < high, got \{.*'low': 4\.0, 'high': 1\.8\}"),
    ],
)
def test_prior_with_bad_evaluated_arguments(text, stats, match):
    prior = parse_prior(text)  # parses: the problem shows only once numbers are filled in
    with pytest.raises(FormulaError, match=match):
        prior.distribution(stats)


@pytest.mark.parametrize(
    ("text", "positive"),
    [
        ("LogNormal(0, 1)", True), ("HalfNormal(1)", True), ("HalfCauchy(1)", True), ("Exponential(1)", True),
        ("Gamma(2, 1)", True), ("Beta(2, 2)", True),
        ("Uniform(0, min_loss)", True), ("Uniform(0.5, 2)", True), ("Uniform(min_loss - 0.5, max_loss)", True),
        ("TruncatedNormal(0, 1, 0, 5)", True), ("TruncatedNormal(0, 1, low=0.1, high=5)", True),
        ("Normal(5, 1)", False), ("StudentT(3, 5, 1)", False), ("Uniform(-1, 1)", False),
        ("Uniform(min_loss - 2, max_loss)", False), ("TruncatedNormal(0, 1, -1, 1)", False),
    ],
)
def test_positive_support(text, positive):
    """Parameters with a positive prior are carried in log space; any other must not be (log of a negative is nan)."""
    assert positive_support(parse_prior(text)) is positive


@pytest.mark.parametrize("prior_E", ["Normal(0, 1)", "Uniform(-5, 5)", "StudentT(3, 0, 1)"])
def test_parameter_of_either_sign(prior_E, tmp_path):
    """A parameter whose prior allows negative values evaluates correctly when it is negative."""
    law = parse_law_text(_edit('prior = "Uniform(0, min_loss)"', f'prior = "{prior_E}"'))
    N = np.geomspace(1e6, 1e12, 7)
    for E in (-0.05, 0.0, 0.7):  # the loss stays positive down to N = 1e12
        got = np.asarray(jax.jit(law.log_fn)(dict(E=E, A=400.0, alpha=0.3), {"N": jnp.log(N)}))
        np.testing.assert_allclose(np.exp(got), E + 400.0 / N**0.3, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Catalogue priors: support
# ---------------------------------------------------------------------------------------------------------
def _names(node) -> set[str]:
    if isinstance(node, Sym):
        return {node.name}
    if isinstance(node, Neg):
        return _names(node.operand)
    if isinstance(node, BinOp):
        return _names(node.left) | _names(node.right)
    if isinstance(node, Call):
        return set().union(*(_names(a) for a in node.args)) if node.args else set()
    return set()


def _exponents(node) -> set[str]:
    """Names that appear in the exponent of a power."""
    if isinstance(node, Neg):
        return _exponents(node.operand)
    if isinstance(node, BinOp):
        inner = _exponents(node.left) | _exponents(node.right)
        return inner | (_names(node.right) if node.op == "**" else set())
    if isinstance(node, Call):
        return set().union(*(_exponents(a) for a in node.args)) if node.args else set()
    return set()


@pytest.mark.parametrize("law_id", CATALOGUE)
@pytest.mark.parametrize("min_loss", [0.5, 1.8, 3.2])
def test_catalogue_prior_support(law_id, min_loss):
    """1000 prior draws: E in [0, min_loss), exponents > 0, and every parameter positive (so carried in log space)."""
    law = bs.load_law(law_id)
    stats = {"min_loss": min_loss, "max_loss": min_loss + 2.0}
    signed = SIGNED.get(law_id, set())
    exponents = _exponents(law.expression) - set(law.input_names)
    assert exponents or law_id in NOT_POWER_LAWS, "every catalogue law is a power law"
    exponents -= signed
    key = jax.random.PRNGKey(0)
    for i, p in enumerate(law.parameters):
        if p.name in signed:
            continue
        draws = np.asarray(p.prior.distribution(stats).sample(jax.random.fold_in(key, i), (1000,)))
        assert draws.shape == (1000,) and np.isfinite(draws).all(), p.name
        assert (draws > 0).all(), f"{law_id}: {p.name} ~ {p.prior.text} is not positive"
        assert positive_support(p.prior), p.name
        if p.name == "E":
            assert draws.max() < min_loss, f"{law_id}: E ~ {p.prior.text} exceeds min_loss"
        if p.name in exponents:
            assert draws.min() > 0, p.name
    if "E" in law.parameter_names and law.target.kind == "loss":
        # and the prior density says so too, not just these draws
        e_prior = dict(zip(law.parameter_names, (p.prior for p in law.parameters)))["E"].distribution(stats)
        assert not bool(e_prior.support(min_loss * 1.001)) and not bool(e_prior.support(-1e-3))
        assert bool(e_prior.support(min_loss * 0.999))


@pytest.mark.parametrize(("law_id", "source"), list(PUBLISHED))
def test_published_constants_inside_priors(law_id, source):
    """The published constants have finite prior density (when the smallest loss is above their E)."""
    law = bs.load_law(law_id)
    values = law.reference(source).values
    stats = {"min_loss": 2.0, "max_loss": 4.0}
    priors = {p.name: p.prior for p in law.parameters}
    for name, value in values.items():  # a source may publish only some parameters (Step Law: the optimum laws)
        assert math.isfinite(float(priors[name].distribution(stats).log_prob(value))), name


# ---------------------------------------------------------------------------------------------------------
# Law.from_function, source_hash, search path
# ---------------------------------------------------------------------------------------------------------
def chinchilla(p, N, D):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


HOFFMANN_PRIORS = {
    "E": "Uniform(0, min_loss)",
    "A": "LogNormal(log(500), 2.5)",
    "B": "LogNormal(log(500), 2.5)",
    "alpha": "LogNormal(log(0.3), 0.6)",
    "beta": "LogNormal(log(0.3), 0.6)",
}


@pytest.mark.parametrize("source", ["hoffmann2022", "besiroglu2024"])
def test_from_function(source):
    law = bs.Law.from_function(chinchilla, id="my_chinchilla", inputs=["N", "D"], priors=HOFFMANN_PRIORS)
    assert law.id == "my_chinchilla" and law.title == "my_chinchilla"
    assert law.input_names == ("N", "D") and law.parameter_names == tuple(HOFFMANN_PRIORS)
    assert {p.name: p.prior.text for p in law.parameters} == HOFFMANN_PRIORS
    catalogue = bs.load_law("hoffmann2022")
    params = dict(catalogue.reference(source).values)
    N, D = (m.ravel() for m in np.meshgrid(np.geomspace(1e6, 1e12, 7), np.geomspace(1e8, 1e13, 6)))
    log_inputs = {"N": jnp.log(N), "D": jnp.log(D)}
    got = np.asarray(jax.jit(law.log_fn)(params, log_inputs))
    np.testing.assert_allclose(got, np.log(chinchilla(params, N, D)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, np.asarray(catalogue.log_fn(params, log_inputs)), rtol=0, atol=1e-12)
    assert round(float(law.predict(params, N=70e9, D=1.4e12)), 4) == {"hoffmann2022": 1.9366, "besiroglu2024": 1.9739}[source]


def test_from_function_source_hash():
    law = bs.Law.from_function(chinchilla, id="c", inputs=["N", "D"], priors=HOFFMANN_PRIORS)
    same = bs.Law.from_function(chinchilla, id="c", inputs=["N", "D"], priors=HOFFMANN_PRIORS)
    other = bs.Law.from_function(chinchilla, id="c", inputs=["N", "D"], priors={**HOFFMANN_PRIORS, "E": "Uniform(0, 3)"})
    assert law.source_hash == same.source_hash != other.source_hash
    assert re.fullmatch(r"[0-9a-f]{64}", law.source_hash)


def test_from_function_rejects_bad_prior():
    with pytest.raises(FormulaError, match=r"unknown functions \['Laplace'\]"):
        bs.Law.from_function(chinchilla, id="c", inputs=["N", "D"], priors={**HOFFMANN_PRIORS, "E": "Laplace(0, 1)"})


def test_source_hash_tracks_file_text(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(VALID)
    h = bs.load_law(path).source_hash
    assert h == hashlib.sha256(VALID.encode()).hexdigest()
    assert bs.load_law(path).source_hash == h
    for changed in (VALID + "# a comment\n", _edit("log(400), 2", "log(400), 2.5"), _edit("Toy law", "Toy law 2")):
        path.write_text(changed)
        assert bs.load_law(path).source_hash != h
    for law_id in CATALOGUE:
        assert bs.load_law(law_id).source_hash == hashlib.sha256((MODELS / f"{law_id}.toml").read_bytes()).hexdigest()
    assert len({bs.load_law(i).source_hash for i in CATALOGUE}) == len(CATALOGUE)


def test_law_path_env_adds_folder(tmp_path, monkeypatch):
    extra, other = tmp_path / "extra", tmp_path / "other"
    extra.mkdir()
    other.mkdir()
    (extra / "toy.toml").write_text(VALID)
    (other / "toy2.toml").write_text(_edit('id = "toy"', 'id = "toy2"'))
    with pytest.raises(bs.LawError, match=r"unknown law 'toy'"):
        bs.load_law("toy")
    monkeypatch.setenv("BAYESCALE_LAW_PATH", f"{extra}{__import__('os').pathsep}{tmp_path / 'absent'}{__import__('os').pathsep}{other}")
    assert law_search_path()[:2] == [extra, other]  # absent folders are skipped
    assert bs.list_laws() == sorted([*CATALOGUE, "toy", "toy2"])
    assert bs.load_law("toy").id == "toy" and bs.load_law("toy2").id == "toy2"
    with pytest.raises(bs.LawError, match=r"unknown law 'nope': must be one of \[.*'toy', 'toy2'.*\]"):
        bs.load_law("nope")


def test_law_path_env_takes_precedence(tmp_path, monkeypatch):
    """A folder on BAYESCALE_LAW_PATH is searched before the catalogue, so a local file can override a law."""
    (tmp_path / "hoffmann2022.toml").write_text(_edit('id = "toy"', 'id = "hoffmann2022"'))
    monkeypatch.setenv("BAYESCALE_LAW_PATH", str(tmp_path))
    law = bs.load_law("hoffmann2022")
    assert law.title == "Toy law" and law.input_names == ("N",)
    monkeypatch.delenv("BAYESCALE_LAW_PATH")
    assert bs.load_law("hoffmann2022").input_names == ("N", "D")


@pytest.mark.parametrize("shape", [1.0, 2.0, 7.0, 2.5])
def test_gamma_prior_draws_follow_the_gamma_distribution(shape):
    """A Gamma prior's draws (sums of exponentials for a whole-number shape, numpyro's sampler otherwise) against
    scipy's gamma CDF. 20,000 draws at a fixed key: a correct sampler gives a uniform KS p-value, so p > 0.01 fails
    one seed in 100; one shape off by one (Gamma(k - 1) for k = 2: KS distance ~0.26 at this size) fails at p ~ 0."""
    import scipy.stats

    from bayescale.laws.priors import Gamma

    d = parse_prior(f"Gamma({shape}, 0.1)").distribution({})
    assert isinstance(d, Gamma)
    x = np.asarray(d.sample(jax.random.PRNGKey(0), (20000,)))
    assert np.all(np.isfinite(x)) and np.all(x > 0)
    assert scipy.stats.kstest(x, scipy.stats.gamma(shape, scale=10.0).cdf).pvalue > 0.01
    # numpyro's density; batch shapes and the shift of the default Student-t prior as numpyro's
    np.testing.assert_allclose(d.log_prob(jnp.array([3.0, 40.0])),
                               dist.Gamma(shape, 0.1).log_prob(jnp.array([3.0, 40.0])))
    batch = Gamma(jnp.array([shape, shape]), jnp.array([0.1, 1.0])).sample(jax.random.PRNGKey(1), (4000,))
    assert batch.shape == (4000, 2)
    assert scipy.stats.kstest(np.asarray(batch[:, 1]), scipy.stats.gamma(shape).cdf).pvalue > 0.01
    shifted = np.asarray(parse_prior(f"1 + Gamma({shape}, 0.1)").distribution({}).sample(jax.random.PRNGKey(2), (4000,)))
    assert scipy.stats.kstest(shifted - 1.0, scipy.stats.gamma(shape, scale=10.0).cdf).pvalue > 0.01
