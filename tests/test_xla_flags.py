"""The XLA:CPU option set on import (jaxrender/_xla_flags.py): when it is
added to XLA_FLAGS, when it is left alone, and that it reaches a render
compiled under the user's own jax.jit."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from jaxrender import _xla_flags

# Whether this jaxlib's XLA takes the option (a child process tries it).
KNOWN = (_xla_flags._jaxlib_knows(_xla_flags.OPTION, _xla_flags.VALUE)
         and _xla_flags._flag_accepted(f"--{_xla_flags.OPTION}={_xla_flags.VALUE}"))

PRINT_FLAGS = "import os, jaxrender; print(os.environ.get('XLA_FLAGS', ''))"
# A render compiled under a plain jax.jit (no compiler_options): does XLA
# still hand fusions to YNNPACK?
YNN_IN_USER_JIT = """
import jax, jaxrender as jr
scene = jr.load_file(str(jr.BUILTIN_SCENES["cbox"]), res=8, spp=1, max_depth=2)
txt = jax.jit(lambda s, k: jr.render(s, key=k)).lower(scene, jax.random.key(0)).compile().as_text()
print("ynn fusions:", txt.count("__ynn_fusion"))
"""


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXRENDER_XLA_FLAGS")}
    full.update(env)
    # Not from the checkout's root, where `import jaxrender` would find the
    # source tree (without its compiled modules) before the installed package.
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=600,
                         cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.skipif(not KNOWN, reason="this jaxlib has no YNNPACK fusion option")
def test_option_added_on_import_and_reaches_the_users_jit():
    assert _run(PRINT_FLAGS) == f"--{_xla_flags.OPTION}={_xla_flags.VALUE}"
    # Kept: the user's own flags stay, ours follows them.
    assert _run(PRINT_FLAGS, XLA_FLAGS="--xla_cpu_enable_fast_math=false") == (
        f"--xla_cpu_enable_fast_math=false --{_xla_flags.OPTION}={_xla_flags.VALUE}")
    assert _run(YNN_IN_USER_JIT) == "ynn fusions: 0"


def test_option_left_alone():
    # Opted out, or the user chose a value, or the backend already started.
    assert _run(PRINT_FLAGS, JAXRENDER_XLA_FLAGS="0") == ""
    mine = f"--{_xla_flags.OPTION}=LIBRARY_FUSION_TYPE_ELTWISE"
    if KNOWN:
        assert _run(PRINT_FLAGS, XLA_FLAGS=mine) == mine
    started = "import os, jax.numpy as jnp; jnp.ones(1).block_until_ready(); " + PRINT_FLAGS
    assert _run(started) == ""
    # A name this jaxlib lacks is never added (XLA would abort the process).
    assert not _xla_flags._jaxlib_knows("xla_no_such_option_anywhere_42")


def test_flag_probe_and_its_cache(tmp_path, monkeypatch):
    """A flag XLA does not know is refused by the child-process probe (in
    this process XLA would abort); answers are cached per jaxlib install."""
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bogus = "--xla_cpu_no_such_option_42=1"
    assert not _xla_flags._flag_accepted(bogus)
    cache = tmp_path / "jaxrender" / "xla_flags.json"
    entries = json.loads(cache.read_text())
    assert list(entries.values()) == [False] and bogus in next(iter(entries))
    if KNOWN:
        flag = f"--{_xla_flags.OPTION}={_xla_flags.VALUE}"
        assert _xla_flags._flag_accepted(flag)
        # The cached answer is used: flip it and it is believed.
        entries = json.loads(cache.read_text())
        key = next(k for k in entries if k.endswith(flag))
        cache.write_text(json.dumps({**entries, key: False}))
        assert not _xla_flags._flag_accepted(flag)
