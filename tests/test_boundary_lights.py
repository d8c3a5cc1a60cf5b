"""Boundary terms of a moving area light (tests/test_boundary.py's helpers).

A file of its own so that pytest-xdist (--dist loadfile) runs it beside
test_boundary.py, the suite's longest file, instead of after it.
"""

import pytest
from test_boundary import _check, _rel, _translate

import jaxrender as jr


MOVING_LIGHT = """<scene version="3.0.0">
  <integrator type="{integrator}"/>
  <sensor type="perspective"><float name="fov" value="40"/>
    <transform name="to_world"><lookat origin="0, 2, 4.5" target="0, 0.3, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="16"/><integer name="height" value="16"/></film></sensor>
  <shape type="rectangle" id="lamp">
    <transform name="to_world"><scale value="0.6"/><rotate x="1" angle="90"/><translate x="0.5" y="2.5" z="0.5"/></transform>
    <emitter type="area"><rgb name="radiance" value="8, 7, 6"/></emitter></shape>
  <shape type="rectangle" id="floor"><transform name="to_world"><scale value="3"/><rotate x="1" angle="-90"/></transform>
    <bsdf type="diffuse"><rgb name="reflectance" value="0.5, 0.5, 0.5"/></bsdf></shape>
  <shape type="cube" id="box"><transform name="to_world"><scale value="0.4"/><rotate y="1" angle="25"/>
    <translate x="-0.3" y="0.4" z="0.2"/></transform><bsdf type="diffuse"/></shape>
</scene>"""


@pytest.mark.parametrize("integrator", ["direct", pytest.param("path", marks=pytest.mark.slow)])
def test_area_light_moving_past_a_static_occluder(integrator):
    """An area light translating above a cube: the cube's shadow edges stay
    put, but emitter sampling's points move with the light, so relative to
    them the edges move (a term missed before: 24% error with `direct` and
    `path`; measured 2.4% and 4.1% now); BSDF sampling's share
    moves with the edges alone. Only edges in front of the light count so:
    the Cornell box's ceiling hole, 0.1 mm above its light's outline, would
    otherwise cancel most of that light's motion derivative (tested by
    examples/derivative_images)."""
    scene = jr.load_string(MOVING_LIGHT.format(integrator=integrator))
    d, d0, fd, _ = _check(_translate("lamp.to_world", (1.0, 0.0, 0.75)), scene, 0.02, spp=256, fd_spp=1024)
    err = _rel(d, fd)
    print(f"moving light ({integrator}): {err:.3f} with, {_rel(d0, fd):.3f} without boundary terms")
    assert err < 0.12, err
