#!/usr/bin/env bash
# What a session with a lent GPU machine runs (the `device` tool's machine:
# Python 3.12, jax with the CUDA plugin, nvcc, no network). Usage, in the
# repository root there:  bash benchmarks/gpu.sh STAGE...  with stages
#   setup   install carried wheels from .whl/ (OpenEXR, and Mitsuba + Dr.Jit
#           unpacked from .whl/mitsuba_drjit_cp312.tar.xz) into /tmp/site
#   build   build and install jaxrender with the CUDA kernels (sm_90 only)
#   smoke   CUDA kernels vs the CPU ones, a Cornell box on both devices
#   bench   bench_render at 1024^2 and 256^2, against Mitsuba cuda_ad_rgb
#   grad    bench_grad (path and prb) against Mitsuba's prb on cuda_ad_rgb
#   tests   the test suite on the GPU (pytest -n 14; 8 min on an H100 machine)
# Logs go to $OUT (or ./gpu-out). Each step has its own time limit so one
# hang does not lose the rest. (`python3 -P`: the installed package, not the
# source tree, which has no compiled modules.)
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
step() { local name=$1 limit=$2; shift 2; echo "=== $name ($(date +%T))"; \
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"; echo "=== $name rc=$? ($(date +%T))"; }

for stage in "$@"; do
  case $stage in
  setup)
    mkdir -p /tmp/site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    [ -f .whl/mitsuba_drjit_cp312.tar.xz ] && tar xJf .whl/mitsuba_drjit_cp312.tar.xz -C /tmp/site
    nvidia-smi -L; python3 --version ;;
  build)
    step build 400 python3 -m pip install --no-build-isolation --no-deps -q \
      -C cmake.define.CMAKE_CUDA_ARCHITECTURES=90-real . ;;
  smoke)
    step smoke 300 python3 -P - <<'PY'
import time, numpy as np, jax, jaxrender as jr
from jaxrender.geometry import HAS_CUDA_KERNELS
print("devices", jax.devices(), "cuda kernels", HAS_CUDA_KERNELS)
scene = jr.load_file(str(jr.BUILTIN_SCENES["cbox"]), res=64, spp=16)
imgs = {}
for dev in ("cpu", "gpu"):
    with jax.default_device(jax.devices(dev)[0]):
        t = time.perf_counter()
        img = np.asarray(jax.jit(lambda s: jr.render(s, seed=3))(scene))
        imgs[dev] = img
        print(dev, f"{time.perf_counter() - t:.1f} s (compile + render)", "mean", img.mean(),
              "finite", np.isfinite(img).all())
d = np.abs(imgs["cpu"] - imgs["gpu"])
print("cpu vs gpu: max abs diff", d.max(), "mean", d.mean(), "pixels differing > 1e-3:", (d.max(-1) > 1e-3).sum())
PY
    step geometry 300 python3 -P -m pytest -q -n 0 -p no:cacheprovider tests/test_geometry.py -k "gpu or watertight or corrupted" ;;
  bench)
    step bench1024 400 python3 benchmarks/bench_render.py --res 1024 --spp 64 --repeats 3
    step bench256 200 python3 benchmarks/bench_render.py --res 256 --spp 64 --repeats 3 ;;
  grad)
    step grad_path 300 python3 benchmarks/bench_grad.py --repeats 3 --check-runs 2
    step grad_prb 300 python3 benchmarks/bench_grad.py --integrator prb --repeats 3 --check-runs 2 ;;
  tests)
    step tests 560 python3 -P -m pytest -q -n 14 -p no:cacheprovider -p no:benchmark --runslow --durations=20 ;;
  *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
