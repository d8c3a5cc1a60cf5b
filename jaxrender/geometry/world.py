"""A scene's triangles in world space: one soup with a per-face shape index."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrender.scene import Scene, transform_points


class WorldGeometry(NamedTuple):
    """All of a scene's meshes as one world-space triangle soup.

    vertices: float32 (V, 3), every mesh's vertex_positions through its
      to_world. Differentiable with respect to both.
    faces: numpy int32 (F, 3), indices into `vertices` (static topology).
    shape_index: numpy int32 (F,), the `Scene.shapes` index of each face.
    """

    vertices: jax.Array
    faces: np.ndarray
    shape_index: np.ndarray


def flatten_scene(scene: Scene) -> WorldGeometry:
    """Flattens `scene.shapes` into one world-space soup (works inside jit).

    The topology (faces, shape_index) is numpy, built from static data, so it
    stays static under jit; gradients flow from `vertices` back into each
    shape's `vertex_positions` and `to_world`.
    """
    verts, faces, owner = [], [], []
    offset = 0
    for i, mesh in enumerate(scene.shapes):
        verts.append(transform_points(mesh.to_world, mesh.vertex_positions))
        f = np.asarray(mesh.faces, np.int32)
        faces.append(f + offset)
        owner.append(np.full(f.shape[0], i, np.int32))
        offset += mesh.num_vertices
    if not verts:
        return WorldGeometry(jnp.zeros((0, 3), jnp.float32), np.zeros((0, 3), np.int32),
                             np.zeros((0,), np.int32))
    return WorldGeometry(jnp.concatenate(verts), np.concatenate(faces), np.concatenate(owner))
