# Fresh machine with Python 3.11+ and make: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-slow bench clean chromium

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bayescale needs Python 3.11+: run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[test]'
	@# byte-compiled on every core at once (pip compiles one file after another: 17 s of the 31 s install on 2 cores),
	@# leaving out the packages' own test suites, which nothing imports (a third of the files); a file that does not
	@# compile (a package's Python-2 test data) only goes without its .pyc, as under pip
	-$(BIN)/python -m compileall -q -j 0 -x '/tests?/|/pip/|/setuptools/' "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" > /dev/null
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/chinchilla.py --out results/chinchilla

# The report's browser test (tests/test_report_browser.py) needs Chromium: install Debian's when missing and root.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; fi

# Two pytest workers (pytest-xdist), a test file per worker: XLA compilation and Python overhead, which dominate the
# small fits of the suite, are single-threaded, so two workers use two cores. --durations: the slowest tests, printed
# so each CI log says where the time goes.
test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

# The speed tables most changes move (about 8 minutes on 2 idle cores): Chinchilla cold/warm/sampling, fit_batch's
# two kernels, the law's gradient. Every other table has its own command in docs/performance.md.
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python benchmarks/chinchilla.py --issue15
	PYTHONPATH=. $(BIN)/python benchmarks/batch.py --skip-loop --chains 4 --kernels nuts chees
	PYTHONPATH=. $(BIN)/python benchmarks/formula_gradient.py

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) results .pytest_cache
