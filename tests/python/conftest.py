"""Starts the real `switchboard serve` binary for the foreign-peer tests."""

import os
import subprocess
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SWITCHBOARD_BIN", os.path.join(ROOT, "target", "debug", "switchboard"))


PROJECT = os.path.join(ROOT, "tests", "projects", "dirigible")


@pytest.fixture(scope="module")
def server():
    """A `switchboard serve --port 0` process (the built-in demo project); yields its base ws:// URL."""
    yield from serve([])


@pytest.fixture(scope="module")
def project_server():
    """`switchboard serve --port 0 tests/projects/dirigible`; yields its base ws:// URL."""
    yield from serve([PROJECT])


@pytest.fixture(scope="module")
def sync_server(tmp_path_factory):
    """`switchboard serve --port 0 --data <a fresh folder>`; yields its base ws:// URL."""
    yield from serve(["--data", str(tmp_path_factory.mktemp("switchboard-data"))])


def serve(extra):
    if not os.path.exists(BINARY):
        pytest.fail(f"{BINARY} is missing: build it with `cargo build -p switchboard-cli` (scripts/test does)")
    proc = subprocess.Popen(
        [BINARY, "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        env={**os.environ, "RUST_LOG": "warn"},
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://([\d.]+:\d+)", line)
    if not match:
        proc.kill()
        pytest.fail(f"switchboard serve did not report its address: {line!r}")
    yield f"ws://{match.group(1)}"
    proc.terminate()
    assert proc.wait(timeout=15) == 0, "switchboard serve should exit 0 on SIGTERM"
