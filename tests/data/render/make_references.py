"""Regenerates the Mitsuba 3 reference renders used by tests/test_render.py.

Run with Mitsuba 3 (llvm_ad_rgb needs Debian's libllvm19):
    python tests/data/render/make_references.py
Each reference is rendered at high spp so its own noise is small next to
the test renders'; the tests compare against the stored EXRs, so they run
without Mitsuba.
"""

import os
import sys

import mitsuba as mi

HERE = os.path.dirname(os.path.abspath(__file__))
CBOX = os.path.join(HERE, "..", "..", "..", "jaxrender", "data", "cbox", "cbox.xml")

# name: (scene file, load params, integrator override or None, spp)
REFERENCES = {
    "cbox_path": (CBOX, {"res": 64, "max_depth": 8}, None, 8192),
    "cbox_direct": (CBOX, {"res": 64}, {"type": "direct"}, 8192),
    "cbox_direct_2_3": (CBOX, {"res": 64}, {"type": "direct", "emitter_samples": 2, "bsdf_samples": 3}, 4096),
    "materials_path": (os.path.join(HERE, "materials.xml"), {}, None, 8192),
    "lights_path": (os.path.join(HERE, "lights.xml"), {}, None, 8192),
    "materials_envmap": (os.path.join(HERE, "materials_envmap.xml"), {}, None, 8192),
    # PSDR-CUDA's 0.5 dialect: Mitsuba 3 loads it but reads the emitter's
    # one-number <spectrum value="10"/> as a D65-tinted colour; PSDR (and
    # jaxrender, for this dialect) read it as gray, so the reference is
    # rendered with the gray value set through traverse().
    "psdr_v05_direct": (os.path.join(HERE, "..", "scenes", "psdr_v05.xml"), {}, None, 8192),
    "materials_gaussian": (os.path.join(HERE, "materials_gaussian.xml"), {}, None, 8192),
    "materials_tent": (os.path.join(HERE, "materials_tent.xml"), {}, None, 8192),
    "materials_mitchell": (os.path.join(HERE, "materials_mitchell.xml"), {}, None, 8192),
    "materials_lanczos": (os.path.join(HERE, "materials_lanczos.xml"), {}, None, 8192),
    "sensor_thinlens": (os.path.join(HERE, "sensor_thinlens.xml"), {}, None, 8192),
    "sensor_orthographic": (os.path.join(HERE, "sensor_orthographic.xml"), {}, None, 8192),
    "bsdf_wrappers": (os.path.join(HERE, "bsdf_wrappers.xml"), {}, None, 8192),
    "tangents": (os.path.join(HERE, "tangents.xml"), {}, None, 8192),
    "principled": (os.path.join(HERE, "principled.xml"), {}, None, 8192),
    # mesh_attribute textures: vertex colours, face colours, a one-channel
    # roughness and an area light's radiance, from PLY files.
    "mesh_attributes": (os.path.join(HERE, "mesh_attributes.xml"), {}, None, 8192),
    # An area light's mesh_attribute radiance. Mitsuba's own emitter sampling
    # reads no attribute (black samples), so the reference uses BSDF sampling
    # only; our test renders the full MIS estimator, of the same expectation.
    "mesh_attributes_light": (os.path.join(HERE, "mesh_attributes_light.xml"), {},
                              {"type": "direct", "emitter_samples": 0, "bsdf_samples": 1}, 65536),
}


def write_attribute_meshes():
    """The PLY meshes of mesh_attributes.xml (numpy + jaxrender.io.write_ply;
    Mitsuba reads their attributes as jaxrender does, see tests/test_io.py)."""
    import numpy as np

    from jaxrender.io import write_ply

    rng = np.random.default_rng(7)

    def grid(n, size):
        u = np.linspace(-size, size, n)
        x, y = np.meshgrid(u, u)
        v = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1)
        f = [[i * n + j, i * n + j + 1, (i + 1) * n + j] for i in range(n - 1) for j in range(n - 1)]
        f += [[i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j] for i in range(n - 1) for j in range(n - 1)]
        return v, np.array(f)

    v, f = grid(6, 1.0)
    write_ply(os.path.join(HERE, "attr_floor.ply"), v, f,
              attributes={"vertex_color": rng.uniform(0.05, 0.95, (len(v), 3))})
    v, f = grid(4, 1.0)
    write_ply(os.path.join(HERE, "attr_panel.ply"), v, f,
              attributes={"face_color": rng.uniform(0.05, 0.95, (len(f), 3))})
    t = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                  [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float) / np.sqrt(1 + t * t)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
                  [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
                  [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    write_ply(os.path.join(HERE, "attr_ico.ply"), v, f,
              attributes={"vertex_rough": rng.uniform(0.05, 0.8, (len(v), 1)),
                          "face_tint_color": rng.uniform(0.3, 1.0, (len(f), 3))})
    v, f = grid(2, 1.0)
    write_ply(os.path.join(HERE, "attr_light.ply"), v, f,
              attributes={"vertex_color": np.array([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.2, 1.0], [1.0, 1.0, 1.0]])})


def main():
    mi.set_variant("llvm_ad_rgb")
    only = set(sys.argv[1:])
    if not only or only & {"mesh_attributes", "mesh_attributes_light"}:
        write_attribute_meshes()
    for name, (path, params, integrator, spp) in REFERENCES.items():
        if only and name not in only:
            continue
        scene = mi.load_file(path, optimize=False, **params)
        if name.startswith("psdr_"):
            p = mi.traverse(scene)
            p["emitter.emitter.radiance.value"] = mi.Color3f(10.0, 10.0, 10.0)
            p.update()
        kwargs = {}
        if integrator is not None:
            kwargs["integrator"] = mi.load_dict(integrator)
        image = mi.render(scene, spp=spp, seed=12345, **kwargs)
        mi.util.write_bitmap(os.path.join(HERE, f"{name}.exr"), image)
        print("wrote", name)


if __name__ == "__main__":
    main()
