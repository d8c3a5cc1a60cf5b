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
  - this jaxlib does not know the option or its value (XLA aborts the
    process on an unknown flag, so the name is looked up in jaxlib's
    library first).
The option changes speed only, never results.
"""

from __future__ import annotations

import mmap
import os

OPTION = "xla_cpu_experimental_ynn_fusion_type"
VALUE = "LIBRARY_FUSION_TYPE_DOT"


def _jaxlib_knows(*names: str) -> bool:
    """Whether jaxlib's XLA library contains every string in `names` (the
    flag parser's table holds each flag's name and enum values)."""
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
    if OPTION in flags or _backend_started() or not _jaxlib_knows(OPTION, VALUE):
        return False
    os.environ["XLA_FLAGS"] = f"{flags} --{OPTION}={VALUE}".strip()
    return True
