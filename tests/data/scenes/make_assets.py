"""Regenerate the small binary/text assets used by the test scenes.

    python tests/data/scenes/make_assets.py

Writes meshes/quad.obj, meshes/plane.obj, meshes/tetra.ply (binary little-endian, normals + UVs),
textures/checker8x4.png, textures/ramp8x4.exr, textures/env16x8.exr and the bad
OBJ files under bad/. Needs numpy, Pillow and OpenEXR (or Mitsuba for EXR).
The values are simple closed forms so tests can recompute them.
"""
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write_exr(path, rgb):
    """Write a float32 RGB EXR (scanline, no compression) with OpenEXR."""
    import OpenEXR
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    header = {"compression": OpenEXR.NO_COMPRESSION, "type": OpenEXR.scanlineimage}
    channels = {"RGB": rgb}
    with OpenEXR.File(header, channels) as f:
        f.write(path)


def main():
    os.makedirs(f"{HERE}/meshes", exist_ok=True)
    os.makedirs(f"{HERE}/textures", exist_ok=True)

    # ---- OBJ: a unit quad (as one 4-vertex face) plus a triangle "roof", with vt and vn.
    with open(f"{HERE}/meshes/quad.obj", "w") as f:
        f.write(
            "# quad.obj: a 2 x 2 square in the z = 0 plane written as ONE quad face,\n"
            "# plus a triangle on top (a house outline). 5 positions, 5 uvs, 1 normal.\n"
            "# Triangulated (fan): 3 triangles, normal +z everywhere.\n"
            "# Object-space bbox: [-1, -1, 0] .. [1, 2, 0].\n"
            "o house\n"
            "v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nv 0 2 0\n"
            "vt 0 0\nvt 1 0\nvt 1 0.6667\nvt 0 0.6667\nvt 0.5 1\n"
            "vn 0 0 1\n"
            "f 1/1/1 2/2/1 3/3/1 4/4/1\n"
            "f 4/4/1 3/3/1 5/5/1\n"
        )

    # ---- OBJ: a ground plane, [-1, 1]^2 at y = 0 facing +y, two triangles (v and f only, PSDR style).
    with open(f"{HERE}/meshes/plane.obj", "w") as f:
        f.write(
            "# plane.obj: the square [-1, 1] x {0} x [-1, 1], normal +y, 4 vertices, 2 triangles.\n"
            "v -1 0 -1\nv -1 0 1\nv 1 0 1\nv 1 0 -1\n"
            "f 1 2 3\nf 1 3 4\n"
        )

    # ---- PLY: a tetrahedron with 4 separate faces (12 vertices), per-vertex normals and UVs.
    P = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float32)
    faces = [(0, 1, 2), (0, 3, 1), (0, 2, 3), (1, 3, 2)]  # outward (counter-clockwise)
    uvs = [(0, 0), (1, 0), (0.5, 1)]
    verts, tris = [], []
    for fi, (a, b, c) in enumerate(faces):
        n = np.cross(P[b] - P[a], P[c] - P[a])
        n = n / np.linalg.norm(n)
        assert np.dot(n, P[a] + P[b] + P[c]) > 0
        for k, vi in enumerate((a, b, c)):
            verts.append((*P[vi], *n, *uvs[k]))
        tris.append((3 * fi, 3 * fi + 1, 3 * fi + 2))
    header = (
        "ply\n"
        "format binary_little_endian 1.0\n"
        "comment tetra.ply: regular tetrahedron, vertices (+-1, +-1, +-1) with an even number of minus signs,\n"
        "comment 4 faces x 3 unshared vertices, float normals (flat per face) and uvs (u, v).\n"
        f"element vertex {len(verts)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        "property float u\nproperty float v\n"
        f"element face {len(tris)}\n"
        "property list uchar int vertex_indices\n"
        "end_header\n"
    )
    with open(f"{HERE}/meshes/tetra.ply", "wb") as f:
        f.write(header.encode("ascii"))
        for v in verts:
            f.write(struct.pack("<8f", *v))
        for t in tris:
            f.write(struct.pack("<B3i", 3, *t))

    # ---- PNG: 8 x 4 (width x height) 8-bit sRGB, pixel (row r, col c):
    #      R = 32 c + 16, G = 64 r + 32, B = 255 if (r + c) even else 0.
    from PIL import Image
    r, c = np.mgrid[0:4, 0:8]
    png = np.stack([32 * c + 16, 64 * r + 32, np.where((r + c) % 2 == 0, 255, 0)], -1).astype(np.uint8)
    Image.fromarray(png, "RGB").save(f"{HERE}/textures/checker8x4.png")

    # ---- EXR: 8 x 4 float RGB linear ramp, pixel (row r, col c):
    #      R = (c + 0.5) / 8, G = (r + 0.5) / 4, B = 0.25.
    exr = np.stack([(c + 0.5) / 8, (r + 0.5) / 4, np.full(c.shape, 0.25)], -1).astype(np.float32)
    write_exr(f"{HERE}/textures/ramp8x4.exr", exr)

    # ---- Environment map: 16 x 8 lat-long float RGB, every texel distinct, pixel (row r, col c),
    #      row 0 = top of the image:
    #      R = ((c + 0.5) / 16)^2 (not symmetric about any column, so no two azimuths agree,
    #      even across the u = 0 / u = 1 seam), G = (r + 0.5) / 8, B = 0.25,
    #      except one bright "sun" texel at (r = 1, c = 4): (50, 45, 40).
    er, ec = np.mgrid[0:8, 0:16]
    env = np.stack([((ec + 0.5) / 16) ** 2, (er + 0.5) / 8, np.full(ec.shape, 0.25)], -1)
    env[1, 4] = (50, 45, 40)
    write_exr(f"{HERE}/textures/env16x8.exr", env.astype(np.float32))

    # ---- Bad OBJ files (see bad/README in tests/data/scenes/README.md).
    os.makedirs(f"{HERE}/bad/meshes", exist_ok=True)
    with open(f"{HERE}/bad/meshes/out_of_range.obj", "w") as f:
        f.write(
            "# EXPECTED ERROR: face index out of range on line 8 (\"f 1 2 7\"): only 4 vertices.\n"
            "# (1-based index 7 > 4 vertices)\n"
            "v 0 0 0\n"
            "v 1 0 0\n"
            "v 1 1 0\n"
            "v 0 1 0\n"
            "f 1 2 3\n"
            "f 1 2 7\n"
        )
    with open(f"{HERE}/bad/meshes/nan_vertex.obj", "w") as f:
        f.write(
            "# EXPECTED ERROR: non-finite vertex position on line 4 (\"v nan 1 0\", vertex 2).\n"
            "# (Mitsuba 3: \"mesh contains invalid vertex position data\")\n"
            "v 0 0 0\n"
            "v nan 1 0\n"
            "v 1 1 0\n"
            "f 1 2 3\n"
        )


if __name__ == "__main__":
    main()
