"""Examples written after a seed document (issue 6), run at reduced size.

psdr_examples (PSDR-CUDA's two documented examples on a PSDR-dialect scene):
(a) the derivative image with respect to the rotation angle of Mesh[0] about
z agrees with central finite differences of the angle; (b) the gradient of
the RMSE loss with respect to Mesh[0]'s vertex positions points downhill;
the script's few gradient steps lower the loss. (That its notebook is the one
notebooks/make_notebooks.py writes is checked with the other notebooks in
test_examples.py.)

Finite differences: 1024-spp renders with the same key on both sides, a
2-degree step (~0.1-0.2 px of silhouette motion at 16x16), compared on the
4x4-block-downsampled red channel by relative L2 error, as in
tests/test_boundary.py.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxrender as jr

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NAMES = ["psdr_examples"]
RES, FD_SPP, FD_STEP = 16, 1024, 2.0
# --ref-spp equals FD_SPP so the target, the clean losses and the finite
# differences below share one compiled render.
SMALL = {"psdr_examples": f"--res {RES} --spp {FD_SPP} --grad-spp 16 --ref-spp {FD_SPP} --iters 4 --lr 0.01"}
BOUND = 0.2


def _down(x):
    x = np.asarray(x)[..., 0]
    return x.reshape(4, RES // 4, 4, RES // 4).mean((1, 3))


def _rel(a, b):
    return float(np.linalg.norm(_down(a) - _down(b)) / np.linalg.norm(_down(b)))


@pytest.fixture(scope="module")
def psdr(tmp_path_factory):
    """The module and what its main returns at reduced size."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        module = importlib.import_module("psdr_examples")
        out = tmp_path_factory.mktemp("psdr_examples")
        results = module.main(shlex.split(SMALL["psdr_examples"]) + ["--out", str(out)])
    finally:
        sys.path.remove(str(EXAMPLES))
    assert {p.name for p in out.glob("*.png")} >= {"image.png", "d_image_dP.png", "vertex_gradient.png", "loss.png"}
    return module, results


def test_psdr_derivative_image_matches_finite_differences(psdr):
    module, r = psdr
    scene = r["scene"]  # the same static configuration: the compiled render is reused
    key = jax.random.key(7)
    f = lambda P: np.asarray(jr.render(module.rotated(scene, P), "direct", spp=FD_SPP, key=key))  # noqa: E731
    fd = (f(FD_STEP) - f(-FD_STEP)) / (2 * FD_STEP)
    d = r["d_image"]
    assert np.all(np.isfinite(d))
    assert np.abs(_down(d)).max() > 0.2 * np.abs(_down(fd)).max() > 0  # clearly non-zero
    print(f"psdr_examples (a): relative L2 error vs finite differences {_rel(d, fd):.3f}")
    assert _rel(d, fd) < BOUND, _rel(d, fd)


def test_psdr_vertex_gradient_points_downhill(psdr):
    module, r = psdr
    g = r["grad"]
    assert g.shape == (14, 3) and np.all(np.isfinite(g)) and np.abs(g).max() > 0
    scene = r["scene"]  # the same static configuration: the compiled render is reused
    target, key = r["target"], jax.random.key(8)
    vertices = np.asarray(jr.traverse(scene)[module.VERTICES])
    step = 0.05 * g / np.linalg.norm(g, axis=1).max()  # the vertex with the largest gradient moves 0.05

    def loss(v):
        image = jr.render(jr.replace(scene, {module.VERTICES: v}), "direct", spp=FD_SPP, key=key)
        return float(module.rmse(image, target))

    down, here, up = loss(vertices - step), loss(vertices), loss(vertices + step)
    print(f"psdr_examples (b): RMSE {here:.4f}, {down:.4f} after a step along -grad, {up:.4f} along +grad; "
          f"clean RMSE {r['clean_loss_initial']:.4f} -> {r['clean_loss_final']:.4f} in {len(r['losses'])} steps")
    assert down < here < up, (down, here, up)
    # The optimization's few steps lower the clean (high-spp) loss.
    assert np.all(np.isfinite(r["losses"]))
    assert r["clean_loss_final"] < 0.9 * r["clean_loss_initial"], (r["clean_loss_initial"], r["clean_loss_final"])
