"""The report page in a real headless Chromium, loaded from disk: not blank, and showing the
comparison table. Chromium is the Debian package ``chromium`` (``.ci/run`` installs it); where
it is missing and cannot be installed here, the test skips and says why."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from report_store import COMPARISON_GRID, MODELS, build_store
from reports.render import write_report

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_S = 300


def _chromium() -> str:
    """The chromium binary, installing the Debian package when missing and we are root."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and "
                    "apt-get: `apt-get install chromium`)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"chromium is not installed and `{' '.join(command)}` failed: "
                        f"{done.stderr.strip()[-300:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed no `chromium` binary")
    return found


def _run(binary: str, profile, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def test_page_renders_in_chromium(tmp_path):
    binary = _chromium()
    index = write_report(build_store(tmp_path / "store.sqlite"), tmp_path / "out")
    url = index.resolve().as_uri()
    shot = tmp_path / "screenshot.png"
    done = _run(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                url)
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20, "the screenshot is (nearly) blank"
    assert (pixels < 200).mean() > 0.05, "too little is drawn on the page"
    dom = _run(binary, tmp_path / "profile", "--dump-dom", url).stdout
    table_id = f"comparison-{COMPARISON_GRID}-{MODELS[0]}"
    assert f'id="{table_id}"' in dom, "the comparison table is missing from the page"
    assert "<th scope=\"row\" class=\"label\">greater</th>" in dom
    assert dom.count("<img ") >= 5  # the figures are part of the page
