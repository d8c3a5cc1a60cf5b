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
}


def main():
    mi.set_variant("llvm_ad_rgb")
    only = set(sys.argv[1:])
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
