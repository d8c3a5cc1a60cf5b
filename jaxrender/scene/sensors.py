"""Cameras (Mitsuba 3's perspective, thinlens and orthographic sensors,
and the radiancemeter), the batch sensor that groups them, their film, and their primary rays;
the meters whose rays depend on the scene (`irradiancemeter`, `distant`),
whose rays `jaxrender.integrators.meters` draws.

Camera space: the camera sits at the origin looking along +z, +y is up and
+x is image *left* (Mitsuba's `look_at` puts cross(up, dir) there), so images
are not mirrored. Film coordinates (x, y) in [0, 1]^2 run from the top-left
corner of pixel (0, 0) to the bottom-right of the last pixel.
"""

from __future__ import annotations

import dataclasses
import math
import operator

import jax
import jax.numpy as jnp

from jaxrender.scene._pytree import pytree, static
from jaxrender.scene.transform import transform_points, transform_vectors


@dataclasses.dataclass(frozen=True)
class ReconstructionFilter:
    """A film's pixel reconstruction filter (static).

    type: "box" (radius 0.5), "tent" (radius 1), "gaussian" (stddev 0.5,
    radius 4 stddev), "mitchell" (Mitchell-Netravali cubic with parameters
    b, c (1/3, 1/3); radius 2; Mitsuba's `catmullrom` is b = 0, c = 0.5) or
    "lanczos" (windowed sinc, radius = its lobes, 3); Mitsuba's parameters
    and defaults. `stddev` is None except for the gaussian, `b` and `c`
    except for the cubic. Mitchell and Lanczos weights are negative in
    places, as Mitsuba's: a pixel is the weighted sum over its samples
    divided by the sum of their weights.
    """

    type: str = "box"
    radius: float = 0.5
    stddev: float | None = None
    b: float | None = None
    c: float | None = None

    def __post_init__(self):
        if self.type not in ("box", "tent", "gaussian", "mitchell", "lanczos"):
            raise ValueError(f"rfilter type must be box, tent, gaussian, mitchell or lanczos, got {self.type!r}")
        if not 0 < self.radius <= MAX_FILTER_RADIUS:  # also refuses NaN
            raise ValueError(f"{self.type} rfilter radius must be in (0, {MAX_FILTER_RADIUS}] pixels, "
                             f"got {self.radius}")


# Widest reconstruction filter (radius in pixels): the film splats each
# sample into every pixel its filter reaches, one pass over the samples per
# pixel of the footprint. Lanczos' 16 lobes are Mitsuba's most.
MAX_FILTER_RADIUS = 16.0


@dataclasses.dataclass(frozen=True)
class Film:
    """Mitsuba's `hdrfilm`: the image size and its reconstruction filter (static).

    width, height: pixels of the whole film (Mitsuba's defaults 768 x 576).
      The camera's field of view and aspect ratio are the whole film's.
    crop_offset_x, crop_offset_y, crop_width, crop_height: Mitsuba's crop
      window, the part of the film that is rendered: the image has
      crop_height x crop_width pixels, whose pixel (0, 0) is the film's
      pixel (crop_offset_y, crop_offset_x). By default (None) the whole
      film; a window outside the film is a ValueError, as in Mitsuba.
    rfilter: the filter. Our default is a box filter, as DESIGN.md fixes for
      jaxrender; Mitsuba's own default is a gaussian (stddev 0.5), which
      scenes converted from Mitsuba XML without an `rfilter` therefore do not
      get.
    """

    width: int = 768
    height: int = 576
    rfilter: ReconstructionFilter = ReconstructionFilter()
    crop_offset_x: int = 0
    crop_offset_y: int = 0
    crop_width: int | None = None
    crop_height: int | None = None

    def __post_init__(self):
        # Normalized, so that a crop of the whole film equals no crop.
        for name, default in (("crop_width", self.width), ("crop_height", self.height)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        for name in ("width", "height", "crop_offset_x", "crop_offset_y", "crop_width", "crop_height"):
            value = getattr(self, name)
            try:
                if isinstance(value, bool):
                    raise TypeError
                object.__setattr__(self, name, operator.index(value))
            except TypeError:
                raise TypeError(f"film {name} must be an int, got {value!r}") from None
        if self.width < 1 or self.height < 1:
            raise ValueError(f"film size must be positive, got {self.width}x{self.height}")
        if (self.crop_offset_x < 0 or self.crop_offset_y < 0 or self.crop_width < 1 or self.crop_height < 1
                or self.crop_offset_x + self.crop_width > self.width
                or self.crop_offset_y + self.crop_height > self.height):
            raise ValueError(
                f"the crop window ({self.crop_width}x{self.crop_height} at ({self.crop_offset_x}, "
                f"{self.crop_offset_y})) must lie inside the {self.width}x{self.height} film")

    @property
    def cropped(self) -> bool:
        """Whether the image is a part of the film."""
        return (self.crop_offset_x, self.crop_offset_y, self.crop_width, self.crop_height) != (
            0, 0, self.width, self.height)


@pytree
class PerspectiveCamera:
    """Mitsuba's `perspective` sensor (a pinhole camera).

    Attributes:
      to_world: float32 (4, 4), camera to world (see the module docstring for
        camera space). Differentiable.
      fov: float32 scalar, the field of view in degrees along `fov_axis`.
        Mitsuba's default is a 50 mm `focal_length`, which is stored as
        fov = 2 atan(sqrt(36^2 + 24^2) / 100) = 46.79 degrees along the
        diagonal. Differentiable.
      film: Film (static).
      fov_axis: "x" (default), "y", "diagonal", "smaller" or "larger" (static).
      near_clip, far_clip: distances along the viewing axis (z in camera
        space) within which rays are traced (Mitsuba's 0.01 and 10000;
        static).
      sample_count: samples per pixel from the sensor's sampler (default 4;
        static).
      id: the sensor's id, or None (static).
      principal_point: (x, y), Mitsuba's `principal_point_offset_x/_y`: the
        optical axis's shift on the film, in units of the film's width and
        height (x to the right, y down; static, not differentiable).
    """

    to_world: jax.Array
    fov: jax.Array
    film: Film = static(default=Film())
    fov_axis: str = static(default="x")
    near_clip: float = static(default=0.01)
    far_clip: float = static(default=10000.0)
    sample_count: int = static(default=4)
    id: str | None = static(default=None)
    principal_point: tuple = static(default=(0.0, 0.0))

    def __post_init__(self):
        pp = self.principal_point
        if not (isinstance(pp, tuple) and len(pp) == 2 and all(isinstance(v, (int, float)) for v in pp)
                and all(math.isfinite(v) for v in pp)):
            raise ValueError(f"principal_point must be a tuple of two finite floats, got {pp!r}")

    @property
    def aspect(self) -> float:
        return self.film.width / self.film.height

    @property
    def x_fov(self) -> jax.Array:
        """The horizontal field of view in degrees (Mitsuba's `x_fov`),
        differentiable in `fov`."""
        return x_fov(self.fov, self.fov_axis, self.aspect)


@pytree
class ThinLensCamera:
    """Mitsuba's `thinlens` sensor: a perspective camera with a circular
    lens, so points off the focal plane blur (depth of field).

    Attributes: as PerspectiveCamera's, plus
      aperture_radius: float32 scalar, the lens radius in world units
        (required, as in Mitsuba). Differentiable.
      focus_distance: float32 scalar, the distance along the view axis of
        the plane in focus (Mitsuba's default: far_clip). Differentiable.
    Rays start on the lens and pass through the point of the focal plane
    that a pinhole ray through the same film position would reach.
    """

    to_world: jax.Array
    fov: jax.Array
    aperture_radius: jax.Array
    focus_distance: jax.Array
    film: Film = static(default=Film())
    fov_axis: str = static(default="x")
    near_clip: float = static(default=0.01)
    far_clip: float = static(default=10000.0)
    sample_count: int = static(default=4)
    id: str | None = static(default=None)

    aspect = PerspectiveCamera.aspect
    x_fov = PerspectiveCamera.x_fov


@pytree
class OrthographicCamera:
    """Mitsuba's `orthographic` sensor: parallel rays along the view axis.

    Attributes:
      to_world: float32 (4, 4), camera to world. In camera space the film
        covers x in [-1, 1] (image right to left) and y in [-1/aspect,
        1/aspect]; scale `to_world` to see more. Differentiable (Mitsuba
        marks it non-differentiable; here it is).
      film, near_clip, far_clip, sample_count, id: as PerspectiveCamera's.
    Rays start on the near plane and end on the far plane.
    """

    to_world: jax.Array
    film: Film = static(default=Film())
    near_clip: float = static(default=0.01)
    far_clip: float = static(default=10000.0)
    sample_count: int = static(default=4)
    id: str | None = static(default=None)

    aspect = PerspectiveCamera.aspect


@pytree
class Radiancemeter:
    """Mitsuba's `radiancemeter`: the radiance arriving along one ray, into
    a 1x1 film.

    Attributes:
      to_world: float32 (4, 4). The ray starts at its translation and runs
        along its third column (normalized), i.e. camera space's +z, as in
        Mitsuba (which also builds it from `origin` and `direction`).
        Differentiable (Mitsuba's is not).
      film: Film (static), 1x1.
      sample_count, id: as PerspectiveCamera's (static).
    Every sample traces the same ray, offset from the origin by Mitsuba's
    ray epsilon; its derivative has no boundary term (a silhouette crossing
    one ray is an event of measure zero).
    """

    to_world: jax.Array
    film: Film = static(default=Film(1, 1))
    sample_count: int = static(default=4)
    id: str | None = static(default=None)

    def __post_init__(self):
        if (self.film.width, self.film.height) != (1, 1):
            raise ValueError(f"a radiancemeter's film must be 1x1, got {self.film.width}x{self.film.height}")

    aspect = PerspectiveCamera.aspect


@pytree
class IrradianceMeter:
    """Mitsuba's `irradiancemeter`: the irradiance arriving at a shape,
    averaged over its area (power per unit area, W/m^2 for radiance in
    W/(m^2 sr)).

    Attributes:
      shape: index into `scene.shapes` of the shape it measures (static; in a
        scene file the sensor is nested in that shape). The shape itself
        is part of the scene and is rendered as usual.
      film: Film (static). Mitsuba uses a 1x1 film; on a larger one each
        pixel measures the part of the shape that its share of the film's
        [0, 1)^2 samples maps to, as in Mitsuba.
      sample_count, id: as PerspectiveCamera's (static).
    Each sample picks a point uniformly by area on the shape's side its
    normals point to (its shading normal where it has vertex normals, as in
    Mitsuba) and a cosine-distributed direction about it, and weighs the
    radiance arriving from there by pi. Differentiable in the shape's
    vertex_positions and to_world (samples move with the surface) and in
    everything the radiance depends on; geometry derivatives need
    `boundary=False` (no boundary term is drawn for this sensor).
    """

    shape: int = static(default=0)
    film: Film = static(default=Film(1, 1))
    sample_count: int = static(default=4)
    id: str | None = static(default=None)

    def __post_init__(self):
        if not isinstance(self.shape, int) or isinstance(self.shape, bool) or self.shape < 0:
            raise ValueError(f"an irradiance meter's shape must be a shape index >= 0, got {self.shape!r}")

    aspect = PerspectiveCamera.aspect


@pytree
class DistantSensor:
    """Mitsuba's `distant` sensor: the radiance leaving the scene in one
    direction, averaged over a target (the adjoint of a directional light),
    into a 1x1 film.

    Attributes:
      to_world: float32 (4, 4); rays travel along its image of +z (the
        scene file's `direction` builds it as Mitsuba's look_at does).
        Differentiable.
      target: None, a point (float32 (3,)), or a shape's world-space
        triangles (float32 (T, 3, 3), from a nested shape in a scene file;
        it is only sampled, not rendered). Rays are parallel; they aim at
        the point, at points spread uniformly by area over the triangles, or
        (None) at points spread uniformly over the disk through the scene's
        bounding sphere's centre facing the rays, and start outside that
        sphere. Differentiable (point and triangles).
      film: Film (static), 1x1.
      sample_count, id: as PerspectiveCamera's (static).
    Without a target, rays that miss the scene see the environment (or
    nothing), so the value depends on the bounding sphere, as in Mitsuba;
    the sphere is held fixed under differentiation. Geometry derivatives
    need `boundary=False` (no boundary term is drawn for this sensor).
    """

    to_world: jax.Array
    target: jax.Array | None = None
    film: Film = static(default=Film(1, 1))
    sample_count: int = static(default=4)
    id: str | None = static(default=None)

    def __post_init__(self):
        if (self.film.width, self.film.height) != (1, 1):
            raise ValueError(f"a distant sensor's film must be 1x1, got {self.film.width}x{self.film.height}")

    aspect = PerspectiveCamera.aspect


# Mitsuba's math::RayEpsilon<float>: the radiancemeter's ray starts this far
# along its (unnormalized) direction.
RAY_EPSILON = 8.940697e-05

# The sensors whose rays are camera rays through the film; `Camera` is any of them.
CAMERAS = (PerspectiveCamera, ThinLensCamera, OrthographicCamera, Radiancemeter)
Camera = PerspectiveCamera | ThinLensCamera | OrthographicCamera | Radiancemeter
# The sensors whose rays depend on the scene (drawn by
# `jaxrender.integrators.meters.meter_rays`, not by `sample_ray`).
METERS = (IrradianceMeter, DistantSensor)


@pytree
class BatchSensor:
    """Mitsuba's `batch` sensor: several cameras rendered side by side into
    one film, in one pass over the scene.

    Attributes:
      sensors: tuple of N cameras (PerspectiveCamera, ThinLensCamera,
        OrthographicCamera or Radiancemeter; types may differ). Camera k renders columns
        [k W/N, (k+1) W/N) of the film. Each has the film (W/N, H) with
        the batch's filter (`with_film` keeps them so). Their float leaves
        are differentiable.
      film: Film (static), the whole image; its width is divisible by N.
        Samples are splatted into it as a whole, so a filter wider than a
        pixel spreads a view's edge samples into its neighbour's edge
        pixels, as in Mitsuba.
      sample_count, id: as PerspectiveCamera's (static).
    """

    sensors: tuple
    film: Film = static(default=Film())
    sample_count: int = static(default=4)
    id: str | None = static(default=None)

    def __post_init__(self):
        if not isinstance(self.sensors, tuple) or not self.sensors:
            raise ValueError("a batch sensor needs a non-empty tuple of cameras")
        for k, cam in enumerate(self.sensors):
            if not isinstance(cam, CAMERAS):
                raise TypeError(f"batch sensor: sensors[{k}] must be a PerspectiveCamera, ThinLensCamera, "
                                f"OrthographicCamera or Radiancemeter, got {type(cam).__name__}")
        n = len(self.sensors)
        if self.film.width % n:
            raise ValueError(f"batch sensor: the film width ({self.film.width}) must be divisible by the number "
                             f"of sensors ({n})")
        if self.film.cropped:
            raise ValueError("batch sensor: a cropped film is not supported")
        sub = sub_film(self.film, n)
        for k, cam in enumerate(self.sensors):
            if cam.film != sub:
                raise ValueError(f"batch sensor: sensors[{k}] has film {cam.film}, expected {sub} (use with_film)")

    @property
    def aspect(self) -> float:
        return self.film.width / self.film.height


def sub_film(film: Film, n: int) -> Film:
    """The film of each of a batch sensor's n cameras: 1/n of the width."""
    return Film(film.width // n, film.height, film.rfilter)


def with_film(sensor, film: Film):
    """A copy of a camera or BatchSensor that renders into `film` (a batch's
    cameras get their share of it). Raises ValueError if a batch's film
    width is not divisible by its number of cameras."""
    if isinstance(sensor, BatchSensor):
        n = len(sensor.sensors)
        if film.width % n:
            raise ValueError(f"a batch sensor of {n} cameras needs a film width divisible by {n}, "
                             f"got {film.width}")
        sensors = tuple(dataclasses.replace(c, film=sub_film(film, n)) for c in sensor.sensors)
        return dataclasses.replace(sensor, sensors=sensors, film=film)
    return dataclasses.replace(sensor, film=film)


SENSORS = CAMERAS + METERS + (BatchSensor,)


def x_fov(fov, fov_axis: str, aspect: float) -> jax.Array:
    """Converts a field of view in degrees along `fov_axis` to one along x,
    for a film of width / height = `aspect`, as Mitsuba's `parse_fov`.
    Differentiable in `fov`."""
    fov = jnp.asarray(fov, jnp.float32)
    half_tan = jnp.tan(jnp.deg2rad(fov) * 0.5)
    if fov_axis == "smaller":
        fov_axis = "y" if aspect > 1 else "x"
    elif fov_axis == "larger":
        fov_axis = "x" if aspect > 1 else "y"
    if fov_axis == "x":
        return fov
    if fov_axis == "y":
        return jnp.rad2deg(2.0 * jnp.arctan(half_tan * aspect))
    if fov_axis == "diagonal":
        width = 2.0 * half_tan / jnp.sqrt(1.0 + 1.0 / (aspect * aspect))
        return jnp.rad2deg(2.0 * jnp.arctan(width * 0.5))
    raise ValueError(f"fov_axis must be x, y, diagonal, smaller or larger, got {fov_axis!r}")


def sample_ray(camera: Camera, film_positions, aperture_samples=None) -> tuple[jax.Array, jax.Array]:
    """Primary rays through film positions, exactly Mitsuba's `sample_ray`.

    Args:
      camera: a PerspectiveCamera, ThinLensCamera, OrthographicCamera or
        Radiancemeter (whose one ray ignores the film position). Its
        float leaves (`to_world`, `fov`, `aperture_radius`,
        `focus_distance`) are differentiable.
      film_positions: float (..., 2), (x, y) in [0, 1]^2 over the whole film
        (x to the right, y down). Differentiable.
      aperture_samples: float (..., 2) uniform in [0, 1)^2, the point on a
        thin lens (mapped to the disk as Mitsuba's concentric warp); None
        takes the lens centre. Other cameras ignore it.

    Returns:
      (origins, directions), float32 (..., 3) each. Directions are unit
      camera-space directions mapped by `to_world` (unit for rigid
      transforms). As in Mitsuba, origins start on the near plane: (lens
      point or camera position) + directions * near_clip / d_z, where d_z is
      the direction's camera-space z; the far plane is at t = (far_clip -
      near_clip) / d_z from there (d_z = 1 for the orthographic camera).
    """
    _check_not_meter(camera)
    pos = jnp.asarray(film_positions, jnp.float32)
    if isinstance(camera, Radiancemeter):
        axis = camera.to_world[:3, 2]
        origin = camera.to_world[:3, 3] + axis * RAY_EPSILON
        shape = pos.shape[:-1] + (3,)
        return jnp.broadcast_to(origin, shape), jnp.broadcast_to(axis / jnp.linalg.norm(axis), shape)
    if isinstance(camera, OrthographicCamera):
        # Film (0, 0) is camera (1, 1/aspect) (top left: +x is image left).
        near = jnp.stack([
            1.0 - 2.0 * pos[..., 0],
            (1.0 - 2.0 * pos[..., 1]) / camera.aspect,
            jnp.full(pos.shape[:-1], camera.near_clip, jnp.float32),
        ], axis=-1)
        forward = transform_vectors(camera.to_world, jnp.array([0.0, 0.0, 1.0], jnp.float32))
        forward = forward / jnp.linalg.norm(forward)
        return transform_points(camera.to_world, near), jnp.broadcast_to(forward, near.shape)
    if isinstance(camera, PerspectiveCamera) and camera.principal_point != (0.0, 0.0):
        pos = pos + jnp.asarray(camera.principal_point, jnp.float32)
    tan_x = jnp.tan(jnp.deg2rad(camera.x_fov) * 0.5)
    tan_y = tan_x / camera.aspect
    # Film (0, 0) is the top-left corner, camera +x is image left, +y is up.
    local = jnp.stack([
        (1.0 - 2.0 * pos[..., 0]) * tan_x,
        (1.0 - 2.0 * pos[..., 1]) * tan_y,
        jnp.ones(pos.shape[:-1], jnp.float32),
    ], axis=-1)
    local = local / jnp.linalg.norm(local, axis=-1, keepdims=True)
    lens = lens_points(camera, aperture_samples)
    if lens is None:
        lens = jnp.zeros(3, jnp.float32)
    else:
        # Through the point of the focal plane the pinhole ray reaches.
        focus = local * (camera.focus_distance / local[..., 2:3])
        local = focus - lens
        local = local / jnp.linalg.norm(local, axis=-1, keepdims=True)
    directions = transform_vectors(camera.to_world, local)
    near_t = camera.near_clip / local[..., 2:3]
    origins = transform_points(camera.to_world, lens) + directions * near_t
    return origins, directions


def lens_points(camera: Camera, aperture_samples):
    """Camera-space points (..., 3) on a thin lens for aperture samples
    (..., 2) uniform in [0, 1)^2 (Mitsuba's concentric warp to the disk of
    `aperture_radius`, differentiable in it), or None for the lens centre:
    when no samples are given, and for every camera without a lens."""
    if aperture_samples is None or not isinstance(camera, ThinLensCamera):
        return None
    from jaxrender.integrators.warp import square_to_uniform_disk_concentric

    disk = camera.aperture_radius * square_to_uniform_disk_concentric(aperture_samples)
    return jnp.concatenate([disk, jnp.zeros(disk.shape[:-1] + (1,), jnp.float32)], -1)


def camera_rays(camera: Camera, pixel_samples, aperture_samples=None) -> tuple[jax.Array, jax.Array]:
    """One primary ray per pixel, at a given offset inside each pixel.

    Args:
      camera: a PerspectiveCamera, ThinLensCamera, OrthographicCamera or
        BatchSensor (each of its cameras fills its band of columns).
      pixel_samples: float (..., H, W, 2) in [0, 1), the (x, y) offset of
        each pixel's sample from its top-left corner, with H, W the image's
        height and width (the film's crop window; 0.5 for pixel centres). Mitsuba's integrators draw
        them uniformly whatever the reconstruction filter, which only weighs
        the samples afterwards. Differentiable.
      aperture_samples: None or float (..., H, W, 2) uniform, each sample's
        point on a thin lens (see `sample_ray`).

    Returns:
      (origins, directions), float32 (..., H, W, 3), as `sample_ray` at film
      position `film_position(camera, (j + x, i + y))` for image row i,
      column j.
    """
    _check_not_meter(camera)
    s = jnp.asarray(pixel_samples, jnp.float32)
    h, w = camera.film.crop_height, camera.film.crop_width
    if s.shape[-3:] != (h, w, 2):
        raise ValueError(
            f"pixel_samples must have shape (..., {h}, {w}, 2) for a {w}x{h} film, got {s.shape}"
        )
    if isinstance(camera, BatchSensor):
        band = w // len(camera.sensors)
        cols = [slice(k * band, (k + 1) * band) for k in range(len(camera.sensors))]
        parts = [camera_rays(c, s[..., col, :], None if aperture_samples is None else aperture_samples[..., col, :])
                 for c, col in zip(camera.sensors, cols)]
        return tuple(jnp.concatenate(x, axis=-2) for x in zip(*parts))
    return sample_ray(camera, pixel_film_positions(camera, s), aperture_samples)


def pixel_film_positions(sensor, pixel_samples):
    """Offsets (..., H, W, 2) inside each pixel of the image (the crop window)
    -> positions in [0, 1]^2 over the whole film, as `film_position` at
    (j + x, i + y) for image row i, column j. Differentiable."""
    h, w = sensor.film.crop_height, sensor.film.crop_width
    jj, ii = jnp.meshgrid(jnp.arange(w, dtype=jnp.float32), jnp.arange(h, dtype=jnp.float32))
    return film_position(sensor, jnp.stack([jj + pixel_samples[..., 0], ii + pixel_samples[..., 1]], axis=-1))


def _check_not_meter(sensor) -> None:
    if isinstance(sensor, METERS):
        raise TypeError(f"a {type(sensor).__name__}'s rays depend on the scene: render it with "
                        "jaxrender.render (jaxrender.integrators.meters.meter_rays draws them)")


def film_position(camera: Camera, pixels):
    """Image pixel coordinates (..., 2) (x, y from the image's top-left
    corner) -> positions in [0, 1]^2 over the whole film, for `sample_ray`
    (they differ when the film is cropped). Differentiable."""
    f = camera.film
    offset = jnp.array([f.crop_offset_x, f.crop_offset_y], jnp.float32)
    return (pixels + offset) / jnp.array([f.width, f.height], jnp.float32)
