"""Pytree plumbing for the scene types: frozen dataclasses and hashable arrays.

Scene objects are frozen dataclasses registered with JAX. Fields declared with
`static()` are pytree metadata (hashed into the jit cache); every other field
is a child: a float array leaf (differentiable), a nested scene object, a
tuple of them, or None.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np


def static(**kwargs):
    """A dataclass field that is pytree metadata rather than a child."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def pytree(cls):
    """Makes `cls` a frozen dataclass registered as a JAX pytree node.

    Identity equality (eq=False): fields hold arrays, whose `==` is elementwise,
    and a node must not be hashed by value.
    """
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    fields = dataclasses.fields(cls)
    jax.tree_util.register_dataclass(
        cls,
        data_fields=[f.name for f in fields if not f.metadata.get("static")],
        meta_fields=[f.name for f in fields if f.metadata.get("static")],
    )
    cls.replace = _replace
    return cls


def _replace(self, **changes):
    """Returns a copy with the given fields changed (nothing is mutated)."""
    return dataclasses.replace(self, **changes)


class StaticArray:
    """A read-only numpy array that can be pytree metadata.

    JAX hashes metadata into the jit cache, and numpy arrays are not hashable.
    This wrapper hashes and compares by (shape, dtype, bytes), as MJX does for
    its numpy model fields, so two meshes with the same faces share compiled
    code and a changed topology recompiles. The hash is computed once.
    """

    __slots__ = ("_array", "_hash")

    def __init__(self, array):
        a = np.array(array, copy=True)
        a.flags.writeable = False
        object.__setattr__(self, "_array", a)
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, name, value):
        raise AttributeError("StaticArray is immutable")

    @property
    def array(self) -> np.ndarray:
        """The wrapped read-only numpy array."""
        return self._array

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array.shape

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def ndim(self) -> int:
        return self._array.ndim

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, index):
        return self._array[index]

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self._array, dtype=dtype, copy=True)
        return np.asarray(self._array, dtype=dtype)

    def __hash__(self) -> int:
        if self._hash is None:
            a = self._array
            object.__setattr__(self, "_hash", hash((a.shape, a.dtype.str, a.tobytes())))
        return self._hash

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, StaticArray):
            return NotImplemented
        a, b = self._array, other._array
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and hash(self) == hash(other)
            and a.tobytes() == b.tobytes()
        )

    def __repr__(self) -> str:
        return f"StaticArray(shape={self.shape}, dtype={self.dtype})"
