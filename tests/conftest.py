"""Test-session settings.

The tests run in two processes (pytest-xdist, see pyproject.toml). On a GPU,
JAX would let each process reserve 75% of the device's memory at start-up,
so the second could not start: allocate on demand instead.

Tests marked `slow` (a minute or more of compilation each on a 2-core CI
machine, checking what a faster test also checks from another side: reverse
mode of a boundary term whose forward mode is tested, a second light type,
a mirror bounce) are skipped unless `--runslow` is given (or
JAXRENDER_SLOW_TESTS=1 is set), so that CI's default run stays near 25
minutes. `benchmarks/gpu.sh tests` runs them all.
"""

import os

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (JAXRENDER_SLOW_TESTS=1 does the same)")


def _run_slow(config):
    return config.getoption("--runslow") or os.environ.get("JAXRENDER_SLOW_TESTS", "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    if _run_slow(config):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (or JAXRENDER_SLOW_TESTS=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
