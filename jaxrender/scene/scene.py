"""The `Scene` pytree and the integrator configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

from jaxrender.scene._pytree import pytree, static
from jaxrender.scene.bsdfs import BSDF
from jaxrender.scene.emitters import Emitter
from jaxrender.scene.sensors import PerspectiveCamera
from jaxrender.scene.shapes import Mesh

# The AOV types jaxrender renders, with their channel counts, and aliases.
AOV_CHANNELS = {"depth": 1, "position": 3, "geo_normal": 3, "sh_normal": 3, "uv": 2, "shape_index": 1,
                "mask": 1, "albedo": 3}
AOV_ALIASES = {"ng": "geo_normal", "nn": "sh_normal", "silhouette": "mask", "coverage": "mask"}
AOV_TYPES = tuple(AOV_CHANNELS) + tuple(AOV_ALIASES)
# Mitsuba 3's AOV types that jaxrender does not render.
AOV_UNSUPPORTED = ("dp_du", "dp_dv", "duv_dx", "duv_dy", "prim_index")


@dataclasses.dataclass(frozen=True)
class IntegratorConfig:
    """Which integrator renders the scene, with Mitsuba 3's parameters (static).

    type: "path" (also for Mitsuba's `prb`, `prb_basic`, `prb_projective`,
      `volpath`, `volpathmis`: the same estimate without media), "direct"
      (also `direct_projective`), "depth" (Mitsuba's: the distance to the
      first hit, 0 for a miss, in all three channels) or "aov". A scene
      without an integrator gets
      "path" with the defaults below. "prb" (set in code, e.g.
      `render(scene, "prb")`) is "path" with path replay as its reverse-mode
      derivative (see `jaxrender.integrators.prb`).
    max_depth: longest path, -1 for unbounded (Mitsuba's default -1; it
      prints it as 2^32 - 1).
    rr_depth: depth at which Russian roulette starts (default 5).
    hide_emitters: emitters seen directly are black (default False).
    emitter_samples, bsdf_samples: samples per shading point for `direct`
      (both default to `shading_samples`, default 1).
    aovs: for "aov", Mitsuba's "name:type,name:type" string ("" otherwise).
    nested: for "aov", the integrator whose image comes first, or None.
    """

    type: str = "path"
    max_depth: int = -1
    rr_depth: int = 5
    hide_emitters: bool = False
    emitter_samples: int = 1
    bsdf_samples: int = 1
    aovs: str = ""
    nested: IntegratorConfig | None = None

    @property
    def aov_list(self) -> tuple[tuple[str, str], ...]:
        """The aovs as ((name, type), ...)."""
        if not self.aovs:
            return ()
        return tuple(tuple(item.split(":", 1)) for item in self.aovs.split(","))


class Ids(Mapping):
    """A read-only, hashable mapping from object ids to (collection, index),
    e.g. {"red": ("bsdfs", 1), "light": ("shapes", 0)}."""

    __slots__ = ("_items", "_dict")

    def __init__(self, items=()):
        items = tuple(sorted((str(k), (str(c), int(i))) for k, (c, i) in dict(items).items()))
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_dict", dict(items))

    def __getitem__(self, key):
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other) -> bool:
        if isinstance(other, Ids):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        return f"Ids({self._dict!r})"


@pytree
class Scene:
    """A scene: everything a render needs, as one pytree.

    Attributes:
      shapes: tuple of Mesh, in document order.
      bsdfs: tuple of BSDF; `Mesh.bsdf` indexes it. Every BSDF defined at the
        root of the scene or attached to a shape, in document order (a shape
        without a BSDF gets its own default `Diffuse(0.5)`, as in Mitsuba).
      emitters: tuple of Emitter in document order, area lights included
        (`Mesh.emitter` and `AreaLight.shape` link them).
      sensors: tuple of PerspectiveCamera (possibly empty, as in Mitsuba).
      integrator: IntegratorConfig (static).
      ids: Ids, where each object with an id sits (static).

    Float arrays anywhere in it are leaves (see `traverse` for their names);
    topology and configuration are static, so a jitted function of a scene
    recompiles only when they change.
    """

    shapes: tuple[Mesh, ...]
    bsdfs: tuple[BSDF, ...]
    emitters: tuple[Emitter, ...]
    sensors: tuple[PerspectiveCamera, ...]
    integrator: IntegratorConfig = static(default=IntegratorConfig())
    ids: Ids = static(default=Ids())
