"""The law catalogue: declarative law files (TOML) compiled into JAX functions.

A law file (see ``models/*.toml``) declares the formula, its inputs, a prior for each parameter, the citation and
published constants. Adding a law is adding a file; the engine never special-cases a law.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from bayescale.laws.formula import (
    BinOp,
    Call,
    FormulaError,
    Neg,
    Num,
    Sym,
    symbols_of,
    compile_log_formula,
    evaluate_number,
    parse_formula,
)
from bayescale._runtime import kept
from bayescale.errors import LawError
from bayescale.laws.priors import Prior, parse_prior

__all__ = ["Law", "Parameter", "Input", "Published", "Target", "TARGET_KINDS", "load_law", "list_laws", "law_search_path",
           "LawError", "require_loss_target", "law_program"]


@dataclass(frozen=True)
class Parameter:
    """One free parameter of a law, named by the paper's symbol."""

    name: str
    prior: Prior
    description: str = ""


@dataclass(frozen=True)
class Input:
    """One input of a law (a column of the run table)."""

    name: str
    description: str = ""
    min_distinct: int = 3  # a power law with an offset has 3 free parameters along one axis


@dataclass(frozen=True)
class Published:
    """Constants published for a law, with their source."""

    source: str
    citation: str
    values: Mapping[str, float]
    se: Mapping[str, float] = field(default_factory=dict)
    #: Data hashes (``load_runs(...).attrs["data_hash"]``) of the tables the constants were fitted on: reports and
    #: summaries use the constants as references only for fits to these data.
    data_hashes: tuple[str, ...] = ()


#: What a law predicts (the ``[target]`` section of a law file), and the scale its likelihood works on:
#: ``"loss"`` (the default): a positive loss, noise on log-loss (relative noise, the practice of Hoffmann et al. 2022);
#: ``"real"``: any real number (a normalised loss, a log-ratio, a difference), additive noise on the natural scale;
#: ``"unit_interval"``: a value strictly inside (0, 1) (accuracy, a rate), noise on its logit (logit-normal or
#: logit-Student-t). The logit link keeps every prediction inside (0, 1) and lets the same noise structures (run
#: effects, residuals correlated along a curve, Student-t tails) apply unchanged on the link scale; a Beta likelihood
#: would fit i.i.d. accuracies equally well but has no correlated-curve form, and a binomial needs the number of test
#: questions, which run tables rarely carry.
TARGET_KINDS = ("loss", "real", "unit_interval")
#: Noise parameters a ``[target]`` section may give a prior for (their scale depends on the target's units).
_TARGET_NOISE = ("sigma", "nu", "tau", "ell", "kappa")


@dataclass(frozen=True)
class Target:
    """The kind of value a law predicts and the link between it and the scale of the likelihood.

    ``link``: log (loss), identity (real) or logit (unit_interval); the law's mean is ``inverse(link_fn(...))``
    where the noise is symmetric on the link scale (the median of a new observation). ``priors``: noise priors on the
    link scale that replace :data:`bayescale.infer.model.NOISE_PRIORS` (e.g. a residual sd in the target's own units).
    """

    kind: str = "loss"
    description: str = ""
    priors: Mapping[str, str] = field(default_factory=dict)

    @property
    def scale(self) -> str:
        """The likelihood's scale in words (reports): log-loss, the target's own scale, or its logit."""
        return {"loss": "log-loss", "unit_interval": "the logit of the target"}.get(self.kind, "the target's own scale")

    def link(self, y: Any, xp: Any = np) -> Any:
        """The observed value on the likelihood's scale."""
        if self.kind == "loss":
            return xp.log(y)
        if self.kind == "unit_interval":
            return xp.log(y) - xp.log1p(-y)
        return y

    def inverse(self, eta: Any, xp: Any = np) -> Any:
        """The value from the likelihood's scale (exp, identity or the logistic function)."""
        if self.kind == "loss":
            return xp.exp(eta)
        if self.kind == "unit_interval":
            return 1.0 / (1.0 + xp.exp(-eta))
        return eta

    def log_jacobian(self, y: Any) -> Any:
        """log |d link / dy|: added to a density on the link scale to make it a density of the value itself, so that
        log-likelihoods of the same data under different laws (and kinds) are comparable."""
        y = np.asarray(y, dtype=float)
        if self.kind == "loss":
            return -np.log(y)
        if self.kind == "unit_interval":
            return -np.log(y) - np.log1p(-y)
        return np.zeros_like(y)

    def transform(self):
        """The numpyro transform from the link scale to the value (None for ``"real"``)."""
        from numpyro.distributions.transforms import ExpTransform, SigmoidTransform

        return {"loss": ExpTransform(), "unit_interval": SigmoidTransform()}.get(self.kind)


def require_loss_target(law: "Law", what: str) -> None:
    """Raise :class:`LawError` when ``law`` does not predict a positive loss: ``what`` works on log-losses only
    (compute-optimal planning minimises a loss; the Huber baseline fits log residuals)."""
    if law.target.kind != "loss":
        raise LawError(f"{what} needs a law of a positive loss (target kind 'loss'); law {law.id!r} predicts a "
                       f"target of kind {law.target.kind!r}")


@dataclass(frozen=True, eq=False)
class Law:
    """A scaling law: formula, inputs, parameters with priors, citation, published constants.

    Use :func:`load_law` for catalogue laws and :meth:`Law.from_function` for a Python function.
    ``log_fn(params, log_inputs)`` returns the log of the predicted loss; it is pure JAX and jit-able.
    """

    id: str
    title: str
    inputs: tuple[Input, ...]
    parameters: tuple[Parameter, ...]
    log_fn: Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
    formula: str | None = None
    citation: str = ""
    notes: str = ""
    published: tuple[Published, ...] = ()
    source_text: str | None = None
    #: The formula's syntax tree with the law file's [definitions] substituted (None for Law.from_function).
    expression: Any = field(default=None, compare=False, repr=False)
    #: The law file's [optimum]: (input, syntax tree) pairs, the value of a tuning input (learning rate, batch size)
    #: at which the loss is least for given other inputs. :meth:`at_optimum` substitutes them.
    optimum: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)
    #: What the law predicts (``[target]``; a positive loss by default) and, for other kinds, the law's value on the
    #: natural scale, ``lin_fn(params, log_inputs)`` (a negative value has no log, so ``log_fn`` cannot carry it).
    target: Target = field(default_factory=Target, compare=False)
    lin_fn: Callable[[Mapping[str, Any], Mapping[str, Any]], Any] | None = field(default=None, compare=False, repr=False)

    def link_fn(self, params: Mapping[str, Any], log_inputs: Mapping[str, Any]) -> Any:
        """The law's value on the likelihood's scale (:meth:`Target.link`): log for a loss (``log_fn`` itself),
        the value for a real target, its logit for a unit-interval target. Pure JAX."""
        if self.target.kind == "loss":
            return self.log_fn(params, log_inputs)
        value = self.lin_fn(params, log_inputs)
        return value if self.target.kind == "real" else jnp.log(value) - jnp.log1p(-value)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def source_hash(self) -> str:
        """sha256 of the law file's text (or of the formula and priors for a Python-function law)."""
        text = self.source_text or f"{self.id}|{self.formula}|" + "|".join(
            f"{p.name}~{p.prior.text}" for p in self.parameters
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def predict(self, params: Mapping[str, Any], **inputs: Any):
        """Evaluate the law (linear loss) at ``inputs`` for one parameter set; a convenience for checks.

        >>> law = load_law("hoffmann2022")
        >>> round(float(law.predict(dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28), N=7e10, D=1.4e12)), 4)
        1.9366
        """
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise LawError(f"law {self.id!r} needs inputs {missing}")
        log_inputs = {n: jnp.log(jnp.asarray(inputs[n], dtype=float)) for n in self.input_names}
        return self.target.inverse(self.link_fn(params, log_inputs), jnp)

    @property
    def tuned_inputs(self) -> tuple[str, ...]:
        """The inputs the law file gives an [optimum] for (empty for most laws)."""
        return tuple(n for n, _ in self.optimum)

    def at_optimum(self) -> "Law":
        """The law with every input of its [optimum] set to its optimal value: a law of the remaining inputs (for
        ``steplaw2025``, the loss over (N, D) at the optimal learning rate and batch size)."""
        if not self.optimum:
            raise LawError(f"law {self.id!r} declares no [optimum] for any input")
        subst = dict(self.optimum)
        node = _substitute(self.expression, subst)
        inputs = tuple(i for i in self.inputs if i.name not in subst)
        return Law(
            id=f"{self.id} at optimal {', '.join(subst)}", title=self.title, inputs=inputs, parameters=self.parameters,
            log_fn=compile_log_formula(node, positive_parameters(self.parameters), {i.name for i in inputs}),
            formula=self.formula, citation=self.citation, notes=self.notes, published=self.published,
            source_text=None, expression=node, target=self.target,
            lin_fn=_compile_linear(node, positive_parameters(self.parameters), {i.name for i in inputs}),
        )

    def optimal_inputs(self, params: Mapping[str, Any], log_inputs: Mapping[str, Any]) -> dict[str, Any]:
        """log of each [optimum] input at ``log_inputs`` (the others), for parameters ``params``; pure JAX."""
        names = set(self.input_names) - set(self.tuned_inputs)
        positive = positive_parameters(self.parameters)
        return {n: compile_log_formula(node, positive, names)(params, log_inputs) for n, node in self.optimum}

    def reference(self, source: str) -> Published:
        for p in self.published:
            if p.source == source:
                return p
        raise LawError(
            f"law {self.id!r} has no published constants {source!r}; must be one of {[p.source for p in self.published]}"
        )

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        id: str,
        inputs: list[str],
        priors: Mapping[str, str],
        title: str = "",
        citation: str = "",
        target: str = "loss",
    ) -> "Law":
        """Build a law from a Python function ``fn(params: dict, **inputs) -> loss`` written with ``jax.numpy``.

        Parameters
        ----------
        fn
            Returns the (positive) loss; it receives parameter values as a dict and inputs as keyword arrays.
        id
            Name recorded in results. A function law cannot be reloaded from a saved fit by itself: pass
            ``law=`` to :func:`bayescale.results.predict` after :func:`bayescale.load`.
        inputs
            Names of the inputs (run-table variables).
        priors
            Prior expression per parameter, e.g. ``{"E": "Uniform(0, min_loss)", "alpha": "LogNormal(-1, 0.5)"}``.
        target
            One of :data:`TARGET_KINDS`: what ``fn`` returns (a positive loss by default).
        """
        params = tuple(Parameter(n, parse_prior(t)) for n, t in priors.items())
        ins = tuple(Input(n) for n in inputs)
        kind = _target_of({"kind": target}, "Law.from_function")

        def lin_fn(p, log_inputs):
            return fn(dict(p), **{k: jnp.exp(v) for k, v in log_inputs.items()})

        def log_fn(p, log_inputs):
            return jnp.log(lin_fn(p, log_inputs))

        return cls(id=id, title=title or id, inputs=ins, parameters=params, log_fn=log_fn, citation=citation,
                   target=kind, lin_fn=lin_fn)


# ---------------------------------------------------------------------------------------------------------
def law_search_path() -> list[Path]:
    """Folders searched for ``<id>.toml``: ``$BAYESCALE_LAW_PATH`` entries, the installed catalogue, ``models/``."""
    paths = [Path(p) for p in os.environ.get("BAYESCALE_LAW_PATH", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parents[1]  # the bayescale package (laws/ is one level down)
    paths += [here / "_models", here.parent / "models"]
    return [p for p in paths if p.is_dir()]


def list_laws() -> list[str]:
    """Ids of all laws on the search path."""
    ids = set()
    for folder in law_search_path():
        ids |= {p.stem for p in folder.glob("*.toml")}
    return sorted(ids)



#: Compiled read-out programs of laws, by (program name, law id, law file text): see :func:`law_program`.
_PROGRAMS: dict[tuple, Any] = {}
#: Past this many entries the oldest is dropped (a process reading results of many different law files).
_PROGRAMS_MAX = 64


def law_program(law: Law, name: str, build: Callable[[], Callable]) -> Callable:
    """The jit-compiled function ``name`` of ``law``, made by ``build()`` once per law file text in a process.

    A result stores its law as text, and every read-out (``predict``, ``compute_optimal``, ``plan`` and what it
    calls) parses it again into a new :class:`Law`; a ``jax.jit`` of a new function traces and compiles again even
    for arrays of the shapes it has seen (programs that compile in under a second are not in the persistent cache
    either). Keyed by the law file's text, a read-out repeated on results of one law reuses the traced and compiled
    program. ``build`` must depend on nothing but ``law`` (data enter the returned function as arguments). Laws
    without a file text (:meth:`Law.from_function`, :meth:`Law.at_optimum`) are keyed by the object itself (a
    :class:`Law` compares by identity; the key keeps it alive): the same object reuses its programs, and the planning
    law at its optimum is itself kept per law text (:func:`bayescale.planning.optimum.planning_law`). ``build`` may
    return any object that depends only on ``law``.
    """
    key = (name, law.id, law.source_text) if law.source_text is not None else (name, law)
    return kept(_PROGRAMS, key, build, _PROGRAMS_MAX)


def load_law(name: str | os.PathLike) -> Law:
    """Load a law by catalogue id (``"hoffmann2022"``) or from a TOML file path.

    Raises
    ------
    LawError
        If the law is not found (the error lists the known ids) or the file is malformed.
    """
    path = Path(name)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise LawError(f"law file {str(path)!r} does not exist")
        return parse_law_text(path.read_text(), origin=str(path))
    for folder in law_search_path():
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            return parse_law_text(candidate.read_text(), origin=str(candidate))
    # laws kept in sub-folders (models/downstream/, models/schedule_laws/) are not catalogue ids: name the file
    nested = [p for folder in law_search_path() for p in sorted(folder.glob(f"*/{name}.toml"))]
    where = "" if not nested else f"; {str(name)!r} is the file {str(nested[0])!r}: " + (
        f"a schedule law, load it with bayescale.analyses.schedules.load_schedule_law({str(name)!r})"
        if nested[0].parent.name == "schedule_laws" else "pass that path")
    raise LawError(f"unknown law {str(name)!r}: must be one of {list_laws()} or a path to a .toml law file{where}")


_TOP_KEYS = {"id", "title", "formula", "definitions", "optimum", "citation", "notes", "inputs", "parameters",
             "published", "target"}


def _substitute(node, definitions: Mapping[str, Any]):
    """``node`` with every symbol named in ``definitions`` replaced by its (already substituted) expression."""
    if isinstance(node, Sym):
        return definitions.get(node.name, node)
    if isinstance(node, BinOp):
        return BinOp(node.op, _substitute(node.left, definitions), _substitute(node.right, definitions))
    if isinstance(node, Neg):
        return Neg(_substitute(node.operand, definitions))
    if isinstance(node, Call):
        return Call(node.func, tuple(_substitute(a, definitions) for a in node.args), node.keywords)
    return node


def read_law_toml(text: str, origin: str, allowed: set[str], required: tuple[str, ...]) -> dict[str, Any]:
    """The TOML of a law file as a dict, with its top-level keys checked (catalogue and schedule laws alike)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise LawError(f"{origin}: not valid TOML: {err}") from None
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise LawError(f"{origin}: unknown keys {unknown}; must be among {sorted(allowed)}")
    for key in required:
        if key not in data:
            raise LawError(f"{origin}: missing required key {key!r}")
    return data


def parse_law_text(text: str, origin: str = "<string>") -> Law:
    """Parse and compile the text of a law file (the format of ``models/*.toml``)."""
    data = read_law_toml(text, origin, _TOP_KEYS, ("id", "formula", "inputs", "parameters"))
    inputs = tuple(
        Input(n, str(spec.get("description", "")), int(spec.get("min_distinct", 3)))
        for n, spec in data["inputs"].items()
    )
    no_prior = [n for n, spec in data["parameters"].items() if not isinstance(spec, dict) or "prior" not in spec]
    if no_prior:
        raise LawError(f"{origin}: parameters {no_prior} have no 'prior' (e.g. prior = \"LogNormal(0, 1)\")")
    try:
        parameters = tuple(
            Parameter(n, parse_prior(spec["prior"]), str(spec.get("description", "")))
            for n, spec in data["parameters"].items()
        )
    except FormulaError as err:
        raise LawError(f"{origin}: {err}") from None
    clash = {i.name for i in inputs} & {p.name for p in parameters}
    if clash:
        raise LawError(f"{origin}: names {sorted(clash)} are both inputs and parameters")
    names = {i.name for i in inputs} | {p.name for p in parameters}
    # Optional [definitions]: named sub-expressions (name = "expression", in order; each may use the inputs, the
    # parameters and earlier definitions), substituted into the formula so that long laws stay readable.
    definitions: dict[str, Any] = {}
    for name, expression in data.get("definitions", {}).items():
        if name in names:
            raise LawError(f"{origin}: definition {name!r} is also an input or a parameter")
        try:
            definitions[name] = _substitute(parse_formula(str(expression), names | set(definitions)), definitions)
        except FormulaError as err:
            raise LawError(f"{origin}: definition {name!r}: {err}") from None
    try:
        node = _substitute(parse_formula(data["formula"], names | set(definitions)), definitions)
    except FormulaError as err:
        raise LawError(f"{origin}: {err}") from None
    # Optional [optimum]: input = "expression of the other inputs and the parameters", the input's value at which the
    # loss is least (a tuning input: learning rate, batch size). Planning over (N, D) substitutes it.
    optimum = []
    for name, expression in data.get("optimum", {}).items():
        if name not in {i.name for i in inputs}:
            raise LawError(f"{origin}: optimum {name!r} is not an input; must be one of {[i.name for i in inputs]}")
        try:
            tree = _substitute(parse_formula(str(expression), names - {name} | set(definitions)), definitions)
        except FormulaError as err:
            raise LawError(f"{origin}: optimum {name!r}: {err}") from None
        optimum.append((name, tree))
    tuned = {n for n, _ in optimum}
    for name, tree in optimum:
        used = symbols_of(tree)[0] & tuned
        if used:
            raise LawError(f"{origin}: optimum {name!r} uses {sorted(used)}, which have an optimum themselves")
    check_law_tree(node, optimum, inputs, parameters, origin)
    positive = positive_parameters(parameters)
    log_fn = compile_log_formula(node, positive, {i.name for i in inputs})
    target = _target_of(data.get("target", {}), origin)
    published = []
    for source, spec in data.get("published", {}).items():
        values = {k: float(v) for k, v in spec.get("values", {}).items()}
        extra = sorted(set(values) - {p.name for p in parameters})
        if extra:
            raise LawError(f"{origin}: published[{source}] names unknown parameters {extra}")
        hashes = spec.get("data_sha256", [])
        if isinstance(hashes, str) or not all(isinstance(h, str) for h in hashes):
            raise LawError(f"{origin}: published[{source}].data_sha256 must be a list of strings (data hashes)")
        published.append(
            Published(source, str(spec.get("citation", "")), values, {k: float(v) for k, v in spec.get("se", {}).items()},
                      tuple(hashes))
        )
    return Law(
        id=str(data["id"]),
        title=str(data.get("title", data["id"])),
        inputs=inputs,
        parameters=parameters,
        log_fn=log_fn,
        formula=data["formula"],
        citation=str(data.get("citation", "")),
        notes=str(data.get("notes", "")).strip(),
        published=tuple(published),
        source_text=text,
        expression=node,
        optimum=tuple(optimum),
        target=target,
        lin_fn=_compile_linear(node, positive, {i.name for i in inputs}),
    )


# ---------------------------------------------------------------------------------------------------------
# Checks at load: a law file's mistakes are reported when it is read, not at fit time inside JAX.
_BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}
_UNARY = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt}
_PAIR = {"logaddexp": np.logaddexp, "minimum": np.minimum, "maximum": np.maximum}


def _render(node) -> str:
    """Formula text of a node (fully parenthesised, for error messages)."""
    if isinstance(node, Num):
        return f"{node.value:g}"
    if isinstance(node, Sym):
        return node.name
    if isinstance(node, Neg):
        return f"-{_render(node.operand)}"
    if isinstance(node, BinOp):
        return f"({_render(node.left)} {node.op} {_render(node.right)})"
    return f"{node.func}({', '.join(_render(a) for a in node.args)})"


def _constant_value(node, origin: str) -> float | None:
    """The value of a symbol-free sub-expression (None if it has symbols); a LawError naming the first constant
    sub-expression that is not a finite number (``1/0``, ``0 ** (-1)``, ``log(-1)``, an overflow)."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Sym):
        return None
    if isinstance(node, Neg):
        parts = [_constant_value(node.operand, origin)]
    elif isinstance(node, BinOp):
        parts = [_constant_value(node.left, origin), _constant_value(node.right, origin)]
    else:
        parts = [_constant_value(a, origin) for a in node.args]
    if any(p is None for p in parts) or (isinstance(node, Call) and node.keywords):
        return None
    with np.errstate(all="ignore"):
        if isinstance(node, Neg):
            value = -parts[0]
        elif isinstance(node, BinOp):
            value = _BINARY[node.op](np.float64(parts[0]), np.float64(parts[1]))
        elif node.func in _UNARY:
            value = _UNARY[node.func](np.float64(parts[0]))
        elif node.func in _PAIR:
            value = _PAIR[node.func](np.float64(parts[0]), np.float64(parts[1]))
        else:
            return None
    if not np.isfinite(value):
        raise LawError(f"{origin}: the constant expression {_render(node)} is {float(value)} (not a finite number); "
                       "fix the formula")
    return float(value)


def _constant_subexpressions(node, origin: str) -> None:
    """Evaluate every constant sub-expression of ``node`` (raising on the innermost non-finite one)."""
    _constant_value(node, origin)
    children = ([node.operand] if isinstance(node, Neg) else [node.left, node.right] if isinstance(node, BinOp)
                else list(node.args) if isinstance(node, Call) else [])
    for child in children:
        _constant_subexpressions(child, origin)


def check_law_tree(node, optimum, inputs, parameters, origin: str) -> None:
    """Checks of a parsed law at load: every constant sub-expression is a finite number, and every declared parameter
    and input is used by the formula or an [optimum] (a declared but unused parameter is sampled from its prior and
    looks fitted; an unused input is a column the law silently ignores)."""
    _constant_subexpressions(node, origin)
    used = set(symbols_of(node)[0])
    for name, tree in optimum:
        _constant_subexpressions(tree, f"{origin}: optimum {name!r}")
        used |= symbols_of(tree)[0]
    unused_params = [p.name for p in parameters if p.name not in used]
    unused_inputs = [i.name for i in inputs if i.name not in used]
    if unused_params or unused_inputs:
        parts = ([f"parameters {unused_params}" if unused_params else ""]
                 + [f"inputs {unused_inputs}" if unused_inputs else ""])
        raise LawError(f"{origin}: {' and '.join(p for p in parts if p)} declared but not used by the formula, its "
                       "[definitions] or [optimum]; remove them or use them")
def _target_of(spec: Any, origin: str) -> Target:
    """The ``[target]`` section of a law file (absent: a positive loss), checked."""
    if not isinstance(spec, Mapping):
        raise LawError(f"{origin}: [target] must be a table such as kind = \"real\"")
    unknown = sorted(set(spec) - {"kind", "description", "priors"})
    if unknown:
        raise LawError(f"{origin}: [target] has unknown keys {unknown}; must be among ['description', 'kind', 'priors']")
    kind = spec.get("kind", "loss")
    if kind not in TARGET_KINDS:
        raise LawError(f"{origin}: [target] kind {kind!r}: must be one of {list(TARGET_KINDS)}")
    priors = dict(spec.get("priors", {}))
    bad = sorted(set(priors) - set(_TARGET_NOISE))
    if bad:
        raise LawError(f"{origin}: [target] priors for {bad}: only noise parameters {list(_TARGET_NOISE)} may be given")
    try:
        for text in priors.values():
            parse_prior(str(text))
    except FormulaError as err:
        raise LawError(f"{origin}: [target] priors: {err}") from None
    return Target(str(kind), str(spec.get("description", "")), {k: str(v) for k, v in priors.items()})


def _compile_linear(node, positive_params: set[str], input_names: set[str]):
    """``lin_fn(params, log_inputs) -> value`` on the natural scale (may be negative), from the same log-space
    evaluation as :func:`bayescale.laws.formula.compile_log_formula` (positive sub-terms are still summed in log space)."""
    from bayescale.laws.formula import evaluate_node, FormulaValue

    def lin_fn(params, log_inputs):
        env = {name: FormulaValue(lin=value, positive=name in positive_params) for name, value in params.items()}
        env.update({name: FormulaValue(log=log_inputs[name]) for name in input_names})
        return evaluate_node(node, env).as_lin()

    return lin_fn


def positive_parameters(parameters) -> set[str]:
    return {p.name for p in parameters if positive_support(p.prior)}


def positive_support(prior: Prior) -> bool:
    """Whether a prior's support is strictly positive (so the parameter can be carried in log space)."""
    if prior.shift is not None:  # c + Family(...) with Family on (0, inf): positive when c >= 0
        try:
            return evaluate_number(prior.shift, {"min_loss": 1.0, "max_loss": 1.0}) >= 0
        except (KeyError, ValueError):
            return False
    if prior.family in {"LogNormal", "HalfNormal", "HalfCauchy", "Exponential", "Gamma", "Beta"}:
        return True
    if prior.family in {"Uniform", "TruncatedNormal"}:
        low = dict(prior.arguments).get("low")
        try:
            return low is not None and evaluate_number(low, {"min_loss": 1.0, "max_loss": 1.0}) >= 0
        except (KeyError, ValueError):
            return False
    return False


def published_table(law: Law) -> dict[str, np.ndarray]:
    """Published constants as arrays over sources (NaN where a source gives no value)."""
    return {
        p.name: np.array([pub.values.get(p.name, np.nan) for pub in law.published], dtype=float)
        for p in law.parameters
    }
