"""Test-session settings.

The tests run in two processes (pytest-xdist, see pyproject.toml). On a GPU,
JAX would let each process reserve 75% of the device's memory at start-up,
so the second could not start: allocate on demand instead.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
