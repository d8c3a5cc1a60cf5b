"""The XLA:CPU option jaxrender sets for the process when it is imported.

XLA:CPU hands elementwise and reduction fusions to the YNNPACK library by
default in recent jaxlibs. On the renderer's shading code (size-3 dot
products, norms and products over (N, 3) arrays, ~100 per bounce) each such
call costs more than XLA's own loop: a Cornell-box render under the user's
`jax.jit` was 1.36x slower with them (1.85 s against 1.36 s, 16 spp,
256x256). Compiler options reach XLA only through the outermost `jax.jit`
(`jr.compiler_options()`), which users who write `jax.jit(jax.grad(loss))`
do not pass; XLA_FLAGS, read once when JAX starts its backend, reaches
every compilation. So on import, before any backend exists, jaxrender adds
`--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT` (YNNPACK
for matrix products only) to XLA_FLAGS, unless:
  - the environment sets JAXRENDER_XLA_FLAGS=0 (leave XLA_FLAGS alone),
  - XLA_FLAGS already names the option (the user's choice wins),
  - a JAX backend has started (the flags were read already), or
  - this jaxlib's XLA does not accept the flag. XLA aborts the process on
    a flag it does not know, so a child process tries it first (~0.3 s,
    once per jaxlib install: the answer is kept in
    ~/.cache/jaxrender/xla_flags.json, or $XDG_CACHE_HOME's).
The option changes speed only, never results.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys

OPTION = "xla_cpu_experimental_ynn_fusion_type"
VALUE = "LIBRARY_FUSION_TYPE_DOT"


def _jaxlib_knows(*names: str) -> bool:
    """Whether jaxlib's XLA library contains every string in `names`: a
    quick test that rules out options this jaxlib cannot know (a name can
    be there without being a flag, so `_flag_accepted` decides)."""
    try:
        import jaxlib
    except ImportError:
        return False
    here = os.path.dirname(jaxlib.__file__)
    # XLA's library in jaxlib >= 0.6 (libjax_common) and before (xla_extension).
    for lib in ("libjax_common.so", "xla_extension.so"):
        try:
            with open(os.path.join(here, lib), "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return all(m.find(n.encode()) >= 0 for n in names)
        except (OSError, ValueError):
            continue
    return False


def _cache_path() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "jaxrender", "xla_flags.json")


def _flag_accepted(flag: str) -> bool:
    """Whether XLA_FLAGS=flag parses in this jaxlib: not if its name or
    value is missing from jaxlib's library, else as a child process finds
    (remembered per jaxlib install in `_cache_path()`)."""
    try:
        import jaxlib

        lib = os.path.dirname(jaxlib.__file__)
        key = f"{jaxlib.__version__} {lib} {os.stat(lib).st_mtime_ns} {flag}"
    except (ImportError, OSError, AttributeError):
        return False
    path = _cache_path()
    try:
        with open(path) as f:
            known = json.load(f)
        if isinstance(known, dict) and isinstance(known.get(key), bool):
            return known[key]
    except (OSError, ValueError):
        known = {}
    if not sys.executable:
        return False
    # A name missing from jaxlib's library cannot be a flag: no child needed.
    ok = _jaxlib_knows(*flag.lstrip("-").split("=", 1))
    if ok:
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env["XLA_FLAGS"] = flag
        try:
            # Building CompileOptions reads XLA_FLAGS (and dies on a bad
            # one). From jaxlib's own parent folder: the same jaxlib,
            # whatever the working directory holds.
            out = subprocess.run([sys.executable, "-c", "from jaxlib import xla_client; "
                                  "xla_client.CompileOptions(); print('accepted')"], env=env, capture_output=True,
                                 text=True, timeout=60, cwd=os.path.dirname(lib))
            ok = out.returncode == 0 and "accepted" in out.stdout
        except (OSError, subprocess.SubprocessError):
            return False
    try:
        known = known if isinstance(known, dict) else {}
        known[key] = ok
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(known, f)
        os.replace(tmp, path)  # atomic: concurrent imports never read half a file
    except OSError:
        pass
    return ok


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # noqa: BLE001 - a private API: if it moved, assume started
        return True


def apply() -> bool:
    """Adds the option to XLA_FLAGS where the rules above allow; returns
    whether it did."""
    if os.environ.get("JAXRENDER_XLA_FLAGS", "1").strip() == "0":
        return False
    flags = os.environ.get("XLA_FLAGS", "")
    flag = f"--{OPTION}={VALUE}"
    # The library scan and the child process run only on a cache miss.
    if OPTION in flags or _backend_started() or not _flag_accepted(flag):
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
    return True
