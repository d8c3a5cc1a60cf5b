"""Helpers shared by the benchmark scripts (run them as
`python benchmarks/<script>.py`: this folder is then first on sys.path)."""

from __future__ import annotations

import os
import platform
import time


def best_of(fn, repeats):
    """(best wall time over `repeats` calls of fn, the last call's result)."""
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def best_of_wall_cpu(fn, repeats):
    """(best wall time, best process CPU time (all threads), the last call's
    result) over `repeats` calls of fn. On a shared machine CPU time is the
    steadier measure of work; wall time is what a user waits."""
    walls, cpus = [], []
    out = None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def load_average() -> float:
    return os.getloadavg()[0]


def machine_line() -> str:
    """'# host: N CPUs, load average L; jax V on PLATFORM' (imports jax)."""
    import jax

    return (f"# {platform.node()}: {os.cpu_count()} CPUs, load average {load_average():.2f}; "
            f"jax {jax.__version__} on {jax.devices()[0].platform}")


def default_mitsuba_variant() -> str:
    """Mitsuba's variant on the device JAX runs on: `cuda_ad_rgb` when JAX's
    default backend is a GPU, else `llvm_ad_rgb` (imports jax)."""
    import jax

    return "cuda_ad_rgb" if jax.default_backend() == "gpu" else "llvm_ad_rgb"


def load_mitsuba(variant: str | None = None):
    """(mitsuba, drjit) with `variant` set (default: `default_mitsuba_variant()`),
    or None after printing why not (package missing, or libLLVM not found for
    the llvm variants, or no CUDA driver for the cuda ones)."""
    variant = variant or default_mitsuba_variant()
    try:
        import drjit as dr
        import mitsuba as mi

        mi.set_variant(variant)
    except Exception as e:  # no mitsuba, or no libllvm19
        print(f"mitsuba: unavailable ({e})")
        return None
    return mi, dr


def plain_jit_line(fn, what, repeats):
    """Times fn(key) under a plain jax.jit (no compiler_options), as a user
    who does not pass `jr.compiler_options()` compiles it, and prints it
    with the XLA_FLAGS in effect (jaxrender sets its option there on import,
    see jaxrender/_xla_flags.py)."""
    import os

    import jax

    f = jax.jit(fn)
    jax.block_until_ready(f(jax.random.key(0)))
    wall, cpu, _ = best_of_wall_cpu(lambda: jax.block_until_ready(f(jax.random.key(1))), repeats)
    print(f"jaxrender {what} under a plain jax.jit: {wall:.3f} s (CPU {cpu:.3f} s; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")


def jit(fn=None, **kw):
    """jax.jit with jaxrender's compiler options (`jr.compiler_options()`),
    as a user who follows the README would compile; usable as a decorator."""
    import jax

    import jaxrender as jr

    if fn is None:
        return lambda f: jit(f, **kw)
    return jax.jit(fn, compiler_options=jr.compiler_options() or None, **kw)
