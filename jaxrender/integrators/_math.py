"""Small numerical helpers shared by the shading code.

Every helper here is NaN-free in value *and* derivative: where the textbook
expression would divide by zero or take the square root of zero, the unsafe
branch is computed on a harmless stand-in input ("double where"), so the
cotangent that `jnp.where` sends to the discarded branch is finite and the
zero it is multiplied by stays zero. Square roots use a custom JVP instead
(see `safe_sqrt`), because their argument is often a cancellation that XLA
may round differently in two places.

Vectors are arrays whose last axis has length 3 (or 2); everything broadcasts
over the leading axes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

INV_PI = 1.0 / jnp.pi
INV_TWO_PI = 0.5 / jnp.pi
INV_FOUR_PI = 0.25 / jnp.pi
INV_SQRT_PI = 1.0 / float(jnp.sqrt(jnp.pi))
# Dr.Jit's Epsilon<float> (half an ulp of 1), used by Mitsuba's Frame3f.
EPSILON_F32 = 2.0**-24


@jax.custom_jvp
def safe_sqrt(x):
    """sqrt(max(x, 0)) with a zero (not infinite) derivative at x <= 0.

    A custom JVP rather than a double where: XLA may recompute x in two
    fusions with different rounding, and a double where whose two tests
    disagree would leak its stand-in value (sqrt(1) = 1 where 0 is meant).
    Here the value has no stand-in; only the derivative coefficient does.
    """
    return jnp.sqrt(jnp.maximum(x, 0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = safe_sqrt(x)
    pos = x > 0
    coeff = jnp.where(pos, 0.5 / jnp.sqrt(jnp.where(pos, x, 1)), 0)
    return y, coeff * dx


@jax.custom_jvp
def one_with_log_derivative(p):
    """Exactly 1 in value, with the derivative of p / p_held (dp / p; 0
    where p == 0): the weight of a discrete choice made with probability p
    among lobes whose value is p, as Mitsuba's differentiable variants do
    with `replace_grad(1, p / detach(p))`."""
    return jnp.ones_like(p)


@one_with_log_derivative.defjvp
def _one_with_log_derivative_jvp(primals, tangents):
    (p,), (dp,) = primals, tangents
    nz = p != 0
    return jnp.ones_like(p), jnp.where(nz, 1 / jnp.where(nz, p, 1), 0) * dp


# Below these, a denominator counts as zero and an rsqrt argument as zero:
# keeps 1/b and rsqrt(x)^3 (the derivatives' coefficients) finite in float32.
DIV_TINY = 1e-30
RSQRT_TINY = 1e-24


@jax.custom_jvp
def safe_rsqrt(x):
    """1 / sqrt(x) for x > 1e-24, else 0 (Mitsuba masks these lanes away)."""
    pos = x > RSQRT_TINY
    return jnp.where(pos, 1 / jnp.sqrt(jnp.where(pos, x, 1)), 0)


@safe_rsqrt.defjvp
def _safe_rsqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = safe_rsqrt(x)
    return y, (-0.5 * y) * (y * y) * dx


def zero_nonfinite(x):
    """x with NaN and infinities replaced by 0 (estimates of lanes whose
    sample failed count as zero, as Mitsuba's film drops them)."""
    return jnp.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def safe_div(a, b, fallback=0):
    """a / b where |b| > 1e-30, else `fallback` (a Python scalar).

    The derivative is written as (da - (a / b) db) / b, never with b^2 (whose
    underflow would make it infinite, and a masked lane's 0 * inf a NaN).
    """
    nz = jnp.abs(b) > DIV_TINY
    return jnp.where(nz, a / jnp.where(nz, b, 1), fallback)


@safe_div.defjvp
def _safe_div_jvp(fallback, primals, tangents):
    a, b = primals
    da, db = tangents
    nz = jnp.abs(b) > DIV_TINY
    inv = jnp.where(nz, 1 / jnp.where(nz, b, 1), 0)
    out = jnp.where(nz, a / jnp.where(nz, b, 1), fallback)
    q = jnp.where(nz, out, 0)
    return out, (da - q * db) * inv


# Cody-Waite split of pi/2 (Cephes): j * _PIO2_HI is exact for |j| < 2^15.
_PIO2_HI, _PIO2_MID, _PIO2_LO = 1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8


@jax.custom_jvp
def sincos(x):
    """(sin x, cos x) from polynomials (Cephes' sinf/cosf coefficients after
    a reduction by multiples of pi/2), accurate to a few float32 ulps for
    |x| < 1e4 and NaN for non-finite x.

    Why not jnp.sin / jnp.cos: XLA:CPU calls scalar libm for them, which
    keeps the whole fusion around them from vectorizing, and it recomputes
    that fusion in every consumer (a Cornell-box bounce evaluated its
    cosine-hemisphere sample's sin and cos four to six times). These are
    plain multiply-adds. Differentiable: d sin = cos dx, d cos = -sin dx.
    Float64 input (x64 mode) gets jnp.sin / jnp.cos, whose accuracy it needs.
    """
    x = as_float(x)
    if x.dtype == jnp.float64:
        return jnp.sin(x), jnp.cos(x)
    j = jnp.round(x * (2 / jnp.pi))
    r = ((x - j * _PIO2_HI) - j * _PIO2_MID) - j * _PIO2_LO
    z = r * r
    s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4))
    c = 1 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5))
    q = jnp.where(jnp.isfinite(j), j, 0).astype(jnp.int32) & 3
    swap = (q & 1) == 1
    sin = jnp.where(swap, c, s)
    cos = jnp.where(swap, s, c)
    sin = jnp.where(q >= 2, -sin, sin)
    cos = jnp.where((q == 1) | (q == 2), -cos, cos)
    return sin, cos


@sincos.defjvp
def _sincos_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    sin, cos = sincos(x)
    return (sin, cos), (cos * dx, -sin * dx)


def search_cdf(cdf, u):
    """jnp.searchsorted(cdf, u, side="right") for a 1-D cdf: index of the
    first entry above u. Small tables compare u with every entry; larger
    ones binary-search in log2(n) unrolled steps (the default search is a
    while loop, which XLA:CPU runs slowly: a tenth of a Cornell-box bounce
    went to picking one of its light's two triangles)."""
    method = "compare_all" if cdf.shape[0] <= 32 else "scan_unrolled"
    return jnp.searchsorted(cdf, u, side="right", method=method)


def dot(a, b):
    return jnp.sum(a * b, axis=-1)


def squared_norm(a):
    return jnp.sum(a * a, axis=-1)


def safe_norm(v):
    """|v| over the last axis, whose derivative at the zero vector is 0, not
    NaN (a degenerate triangle's area, say)."""
    n2 = squared_norm(v)
    ok = n2 > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, n2, 1.0)), 0.0)


def safe_normalize(v):
    """v / |v|; the zero vector maps to the zero vector."""
    n2 = squared_norm(v)
    return v * safe_rsqrt(n2)[..., None]


def mulsign(a, b):
    """a with its sign flipped where b's sign bit is set (Dr.Jit's mulsign)."""
    return jnp.where(jnp.signbit(b), -a, a)


def mulsign_neg(a, b):
    """-a where b's sign bit is clear, a where it is set (Dr.Jit's mulsign_neg)."""
    return jnp.where(jnp.signbit(b), a, -a)


def vec3(x, y, z):
    x, y, z = jnp.broadcast_arrays(x, y, z)
    return jnp.stack([x, y, z], axis=-1)


def vec2(x, y):
    x, y = jnp.broadcast_arrays(x, y)
    return jnp.stack([x, y], axis=-1)


def as_float(x):
    """`x` as a JAX float array (float32 unless x64 is on and x is float64)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def spectrum(x):
    """A spectral parameter as an array whose last axis broadcasts against 3.

    Accepts a scalar (grey), shape (..., 3) (rgb), or shape (..., 1).
    """
    x = as_float(x)
    if x.ndim == 0:
        return x[None]
    return x


def jvp_nonzero(fn, primals, tangents):
    """`jax.jvp(fn, primals, tangents)` for custom-JVP rules registered with
    symbolic zeros: only leaves with a non-zero tangent are differentiated.
    Returns (primal_out, tangent_out), or (primal_out, None) when every
    tangent is a symbolic zero."""
    leaves, tree = jax.tree.flatten(primals)
    d_leaves = jax.tree.leaves(tangents, is_leaf=lambda x: isinstance(x, SymbolicZero))
    active = [i for i, t in enumerate(d_leaves) if not isinstance(t, SymbolicZero)]
    if not active:
        return fn(*primals), None

    def partial(*xs):
        values = list(leaves)
        for i, x in zip(active, xs):
            values[i] = x
        return fn(*jax.tree.unflatten(tree, values))

    return jax.jvp(partial, tuple(leaves[i] for i in active), tuple(d_leaves[i] for i in active))


class NumpyLeaves:
    """A pytree's structure and its numpy leaves (static tables such as a
    prepared scene's faces), held as a custom rule's static argument while
    the other leaves are passed as its arguments: `split(tree)` returns
    (NumpyLeaves, the other leaves in order), `unflatten(passed)` rebuilds
    the tree. It keeps no traced values."""

    def __init__(self, treedef, numpy_leaves):
        self.treedef, self.numpy = treedef, numpy_leaves

    @classmethod
    def split(cls, tree):
        leaves, treedef = jax.tree.flatten(tree)
        held = cls(treedef, [x if isinstance(x, np.ndarray) else None for x in leaves])
        return held, [x for x in leaves if not isinstance(x, np.ndarray)]

    def passed_count(self, first_leaves=None) -> int:
        """How many leaves are passed (of the first `first_leaves` leaves)."""
        return sum(x is None for x in self.numpy[:first_leaves])

    def unflatten(self, passed):
        it = iter(passed)
        return jax.tree.unflatten(self.treedef, [next(it) if x is None else x for x in self.numpy])


def _materialize_cpu(x):
    return jax.ffi.ffi_call("jaxrender_materialize", jax.ShapeDtypeStruct(x.shape, x.dtype),
                            vmap_method="expand_dims")(x)


@jax.custom_jvp
def materialize(x):
    """x, computed into its own buffer. XLA fuses elementwise producers into
    every consumer and recomputes them there; an opaque copy stops that."""
    return jax.lax.platform_dependent(x, cpu=_materialize_cpu, default=lambda x: x)


@materialize.defjvp
def _materialize_jvp(primals, tangents):
    return materialize(primals[0]), tangents[0]
