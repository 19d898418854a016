"""The HTML report in a real headless browser (Debian's Chromium): loads with no console errors, every figure
decodes, the key numbers are on the page. ``make test`` installs Chromium when it is missing and it runs as root;
under CI=true a missing browser fails the test instead of skipping it, so a broken setup is visible."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bayescale as bs
from bayescale.report import write_report

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
    # let the load event (and the page's figure check) run before the DOM is dumped; the page needs no time itself
    "--virtual-time-budget=10000",
]


def _chromium() -> str:
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    message = ("no Chromium found (tried " + ", ".join(_CANDIDATES) + "); `make test` installs Debian's `chromium` "
               "when run as root, or: apt-get install -y --no-install-recommends chromium")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _load(page: Path, tmp_path: Path, *extra: str) -> tuple[str, list[str]]:
    """Load ``page`` headless; return the DOM after the load event and the browser's console lines."""
    cmd = [_chromium(), *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def _problems(dom: str, console: list[str]) -> list[str]:
    """Everything wrong with a loaded report page: console messages, figures that did not decode."""
    problems = [f"console: {line}" for line in console]
    check = re.search(r'id="render-check"[^>]*data-images-ok="(\d+)"[^>]*data-images-total="(\d+)"', dom)
    n_img = len(re.findall(r"<img\b", dom))
    if check is None:
        problems.append("the page's figure check did not run")
    else:
        ok, total = int(check.group(1)), int(check.group(2))
        if total != n_img or ok != total or total == 0:
            problems.append(f"figures decoded: {ok} of {total} ({n_img} <img> in the page)")
    return problems


@pytest.fixture(scope="module")
def report_page(chinchilla_fit, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(chinchilla_fit, out, budgets=[5.76e23],
                 recipe={"loss": "final training loss, nats/token (MassiveText)"})
    return out / "report.html"


def test_report_page_is_self_contained(report_page):
    text = report_page.read_text()
    # no external resources: every src is inline data, no stylesheet or script links
    assert not re.search(r'src="(?!data:)', text)
    assert "<link" not in text and "http://" not in text.replace("http://www.w3.org", "")
    assert text.count("data:image/png;base64,") == 3  # prior vs posterior, PPC, plan


def test_report_renders_in_chromium(report_page, chinchilla_fit, tmp_path):
    dom, console = _load(report_page, tmp_path, "--dump-dom")
    assert _problems(dom, console) == []
    assert "figures rendered: 3 of 3" in dom
    # key numbers: the plan at C = 5.76e23 (median and 90% interval of N*, D*), the fitted exponents, coverage
    opt = bs.compute_optimal(chinchilla_fit, 5.76e23)
    for var, label in [("N_opt", "N*"), ("D_opt", "D*")]:
        lo, med, hi = np.quantile(opt[var].values, [0.05, 0.5, 0.95])
        assert f"{label} = {med:.3g} [{lo:.3g}, {hi:.3g}]" in dom
    table = bs.summary(chinchilla_fit)
    assert f"{table.loc['alpha', 'median']:.4g}" in dom
    assert f"{bs.check_coverage(chinchilla_fit, 0.9):.1%}" in dom
    for section in ("Prior vs posterior", "Posterior predictive check", "Compute plan", "Recipe and provenance",
                    "parameter counting", "FLOP formula", "checkpoints used", "MassiveText"):
        assert section in dom
    # the screenshot is a real rendering, not a blank page
    import matplotlib.image as mpimg

    shot = tmp_path / "report.png"
    _, console = _load(report_page, tmp_path, "--window-size=1280,6000", f"--screenshot={shot}")
    assert console == []

    pixels = mpimg.imread(shot)
    assert pixels.shape[1] == 1280 and pixels[..., :3].std() > 0.05


def test_browser_check_catches_a_broken_page(tmp_path):
    """Negative control: a script error and an image that does not decode must both be reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><script>'
        "window.addEventListener('load', function () { var imgs = document.images, ok = 0;"
        " for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }"
        " var el = document.getElementById('render-check'); el.setAttribute('data-images-ok', String(ok));"
        " el.setAttribute('data-images-total', String(imgs.length)); });"
        " notDefinedAnywhere();</script></head><body>"
        '<img src="data:image/png;base64,AAAA"><p id="render-check"></p></body></html>'
    )
    problems = _problems(*_load(page, tmp_path, "--dump-dom"))
    assert any("notDefinedAnywhere" in p for p in problems)
    assert any(p.startswith("figures decoded: 0 of 1") for p in problems)
