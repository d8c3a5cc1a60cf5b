"""Images from and to files, as float32 (height, width, 3) arrays of linear RGB.

The format follows the file extension:

* `.exr`: OpenEXR (the `OpenEXR` package, 3.x API). Read: channels R, G, B
  (or a layer's `<layer>.R/G/B`), else Y (or `<layer>.Y`) as gray; alpha
  dropped; half and uint channels converted to float32. Files with neither
  (only A, Z or custom channels) are refused naming the channels found, as
  Mitsuba's bitmap texture refuses them. Write: float32 (or
  float16 for float16 input) channels, ZIP-compressed; float32 round trips
  are bit-exact.
* `.png`, `.jpg`/`.jpeg`, `.bmp`, `.tga` (Pillow): 8-bit sRGB-encoded. Read:
  sRGB-decoded to linear unless `raw=True` (for data such as normal or
  roughness maps); gray and palette images give three equal channels, alpha
  is dropped; 16-bit PNGs (gray or colour) keep their 16 bits. Write: values
  clamped to [0, 1] and sRGB-encoded (unless `raw=True`), 8 bits.
* `.hdr` (Radiance RGBE) and `.pfm` (portable float map): linear, read and
  written without extra packages.

Reading problems (missing file, unsupported extension, a file that is not
what its extension says) raise `SceneError` naming the path. Writing checks
the array first: a shape other than (H, W), (H, W, 1), (H, W, 3), (H, W, 4)
raises ValueError, a non-floating dtype TypeError, both naming what was given.
"""

from __future__ import annotations

import functools
import os
import re
import struct
import secrets
import warnings
import zlib

import numpy as np

from jaxrender.io._color import linear_to_srgb, srgb_to_linear
from jaxrender.io.errors import SceneError, SceneWarning

__all__ = ["read_image", "write_image"]

_LDR = (".png", ".jpg", ".jpeg", ".bmp", ".tga")
_SUPPORTED = (".exr", ".hdr", ".pfm") + _LDR


def _ext(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _SUPPORTED:
        raise SceneError(
            f"{path}: unsupported image format {ext or '(no extension)'!r} "
            f"(supported: {', '.join(_SUPPORTED)})"
        )
    return ext


def check_output_path(path, channel_names=None) -> str:
    """The lower-case extension of an output path; SceneError unless
    `write_image` knows it, or when named channels go to a format other than
    EXR."""
    ext = _ext(os.path.abspath(os.fspath(path)))
    if os.path.isdir(path):
        raise SceneError(f"{os.path.abspath(os.fspath(path))}: is a directory, not an image file")
    if channel_names is not None:
        names = list(channel_names)
        if ext != ".exr":
            raise SceneError(f"{path}: {len(names)} named channels ({', '.join(names)}) need an .exr output")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise SceneError(f"{path}: channel names must be distinct, {', '.join(repeated)} repeated")
    return ext


def read_image(path, raw: bool = False) -> np.ndarray:
    """Reads an image file as float32 (H, W, 3) linear RGB.

    Args:
      path: the file; its extension picks the format (see the module docstring).
      raw: for 8/16-bit formats, return the stored values scaled to [0, 1]
        without sRGB decoding. Ignored for EXR, HDR and PFM (already linear).

    Raises:
      SceneError: the file is missing, unreadable, or of an unsupported format.
    """
    path = os.path.abspath(os.fspath(path))
    ext = _ext(path)
    if not os.path.isfile(path):
        raise SceneError(f"{path}: image file not found")
    if ext == ".exr":
        img = _read_exr(path)
    elif ext == ".hdr":
        img = _read_hdr(path)
    elif ext == ".pfm":
        img = _read_pfm(path)
    else:
        img, bits = _read_ldr(path)
        img = img.astype(np.float64) / (2**bits - 1)
        if not raw:
            img = srgb_to_linear(img)
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def write_image(path, image, *, raw: bool = False, channel_names=None) -> None:
    """Writes linear RGB values to an image file, the format chosen by extension.

    Args:
      path: output file (.exr, .png, .jpg/.jpeg, .bmp, .tga, .hdr, .pfm).
      image: floating-point array (H, W, 3); (H, W) or (H, W, 1) is gray,
        (H, W, 4) is RGBA (alpha kept by EXR and PNG). JAX arrays are fine.
      raw: for 8-bit formats, store values clamped to [0, 1] without sRGB
        encoding.
      channel_names: EXR only: one name per channel of an (H, W, C) image
        with any C (e.g. AOVs: "nn.X", "nn.Y", ...), written as they are.

    Raises:
      SceneError: unsupported extension.
      ValueError / TypeError: bad shape / dtype (named in the message).
    """
    path = os.path.abspath(os.fspath(path))
    ext = check_output_path(path, channel_names)
    img = np.asarray(image)
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(
            f"image must be a floating-point array of linear values, got dtype {img.dtype}"
        )
    if img.ndim == 2:
        img = img[:, :, None]
    if channel_names is not None:
        names = list(channel_names)
        if img.ndim != 3 or img.shape[2] != len(names) or 0 in img.shape or len(set(names)) != len(names):
            raise ValueError(f"image of shape {np.shape(image)} needs {np.shape(image)[-1]} distinct channel names, "
                             f"got {names}")
        _replace_atomically(path, lambda tmp: _write_exr(tmp, img, names))
        return
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or 0 in img.shape:
        raise ValueError(
            f"image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got "
            f"{np.shape(image)}"
        )
    if ext == ".exr":
        write = functools.partial(_write_exr, img=img)
    elif ext == ".hdr":
        write = functools.partial(_write_hdr, img=_rgb(img, ext))
    elif ext == ".pfm":
        write = functools.partial(_write_pfm, img=img)
    else:
        write = functools.partial(_write_ldr, img=img, ext=ext, raw=raw)
    _replace_atomically(path, write)


def _replace_atomically(path: str, write) -> None:
    """write(tmp) into a temporary file beside `path` (same extension, for
    the writers that go by it), then renamed over `path`: a write that fails
    half-way (a full disk, a size limit) leaves the old file as it was and
    no partial file behind. Failures raise OSError naming `path`."""
    folder, name = os.path.split(path)
    root, ext = os.path.splitext(name)
    try:
        # Created as open() would create the image itself (0666 less the
        # umask); mkstemp's files are private.
        tmp = os.path.join(folder, f".{root}.{os.getpid()}-{secrets.token_hex(4)}.partial{ext}")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise OSError(f"{path}: could not write: {e.strerror or e}") from None
    try:
        write(tmp)
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)  # keep the old file's permissions
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        message = str(e).replace(tmp, path)
        if not message.startswith(path):
            message = f"{path}: could not write: {e.strerror or message}"
        raise OSError(message) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _rgb(img: np.ndarray, ext: str) -> np.ndarray:
    if img.shape[2] == 4:
        raise ValueError(f"{ext} files cannot store alpha; pass an (H, W, 3) image")
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


# --------------------------------------------------------------------------
# OpenEXR


def _openexr():
    try:
        import OpenEXR
    except ImportError:
        raise ImportError(
            "reading and writing .exr files needs the OpenEXR package (pip install openexr)"
        ) from None
    return OpenEXR


def _read_exr(path: str) -> np.ndarray:
    OpenEXR = _openexr()
    try:
        with OpenEXR.File(path, separate_channels=True) as f:
            channels = {name: np.array(ch.pixels) for name, ch in f.channels().items()}
    except (RuntimeError, ValueError, OSError) as e:
        # The bindings raise ValueError for some damaged files (a truncated
        # one has "0 parts").
        raise SceneError(f"{path}: could not read EXR file (damaged or truncated?): {e}") from None
    names = list(channels)
    pick = None
    for prefix in [""] + sorted({n.rsplit(".", 1)[0] + "." for n in names if "." in n}):
        for rgb in (("R", "G", "B"), ("r", "g", "b")):
            if all(prefix + c in channels for c in rgb):
                pick = [prefix + c for c in rgb]
                break
        if pick:
            break
    if pick is None:
        gray = [n for n in names if n == "Y" or n.endswith(".Y")]
        if not gray:
            # A lone A (or Z, or a custom channel) is not a colour: reading it
            # as gray would turn an alpha mask into a texture without a word.
            # Mitsuba's bitmap refuses such files too.
            raise SceneError(
                f"{path}: EXR file has no R, G, B or Y channels (it has {', '.join(sorted(names))})"
            )
        pick = ["Y"] if "Y" in gray else sorted(gray)[:1]
    planes = [np.asarray(channels[c]) for c in pick]
    if any(p.shape != planes[0].shape or p.ndim != 2 for p in planes):
        raise SceneError(f"{path}: EXR channels {pick} are subsampled or of different sizes")
    return np.stack([p.astype(np.float32) for p in planes], axis=2)


def _write_exr(path: str, img: np.ndarray, names=None) -> None:
    OpenEXR = _openexr()
    dtype = np.float16 if img.dtype == np.float16 else np.float32
    img = np.ascontiguousarray(img, dtype=dtype)
    if names is not None:
        channels = {name: np.ascontiguousarray(img[:, :, k]) for k, name in enumerate(names)}
    else:
        key = {1: "Y", 3: "RGB", 4: "RGBA"}[img.shape[2]]
        channels = {key: img[:, :, 0].copy() if key == "Y" else img}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    try:
        with OpenEXR.File(header, channels) as f:
            f.write(path)
    except RuntimeError as e:
        raise OSError(f"{path}: could not write EXR file: {e}") from None


# --------------------------------------------------------------------------
# 8/16-bit formats


def _read_ldr(path: str) -> tuple[np.ndarray, int]:
    """Returns the stored integer values (H, W, C) and their bit depth."""
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16:
        return _read_png16(path), 16
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "reading PNG/JPEG files needs the Pillow package (pip install Pillow)"
        ) from None
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("RGB", "L"):
                arr = np.asarray(im)
            elif mode in ("RGBA", "LA"):
                arr = np.asarray(im)[..., :-1]
            elif mode.startswith("I;16") or mode == "I":
                return np.asarray(im).astype(np.float64), 16
            else:
                arr = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise SceneError(f"{path}: could not read image: {e}") from None
    return arr, 8


def _read_png16(path: str) -> np.ndarray:
    """Decodes a 16-bit PNG (Pillow reduces colour ones to 8 bits)."""
    with open(path, "rb") as f:
        data = f.read()
    pos, idat, ihdr = 8, [], None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", payload)
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            break
    if ihdr is None:
        raise SceneError(f"{path}: PNG file has no IHDR chunk")
    w, h, depth, ctype, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if channels is None or interlace:
        raise SceneError(
            f"{path}: unsupported 16-bit PNG (colour type {ctype}, interlace {interlace})"
        )
    bpp = 2 * channels
    stride = w * bpp
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
        rows = raw.reshape(h, stride + 1)
    except (zlib.error, ValueError):
        raise SceneError(f"{path}: corrupt PNG image data") from None
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        ftype, line = rows[y, 0], rows[y, 1:].astype(np.int64)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: running sum along the row, per byte lane
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) % 256
        elif ftype == 2:  # Up
            cur = (line + prev) % 256
        elif ftype in (3, 4):  # Average, Paeth: each pixel needs its left neighbour
            cur = np.zeros(stride, np.int64)
            left = np.zeros(bpp, np.int64)
            up_left = np.zeros(bpp, np.int64)
            for x in range(w):
                s = slice(x * bpp, (x + 1) * bpp)
                up = prev[s]
                if ftype == 3:
                    pred = (left + up) // 2
                else:
                    p = left + up - up_left
                    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
                    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
                cur[s] = (line[s] + pred) % 256
                left, up_left = cur[s], up
        else:
            raise SceneError(f"{path}: corrupt PNG image data (filter type {ftype})")
        out[y] = cur
        prev = cur
    img = out.view(">u2").reshape(h, w, channels).astype(np.float64)
    return img[..., :-1] if channels in (2, 4) else img


def _write_ldr(path: str, img: np.ndarray, ext: str, raw: bool) -> None:
    from PIL import Image

    img = img.astype(np.float64)
    if not np.isfinite(img).all():
        warnings.warn(
            f"{path}: image has NaN or infinite values; NaN written as 0, infinities clamped",
            SceneWarning,
            stacklevel=3,
        )
        img = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
    img = np.clip(img, 0.0, 1.0)
    if not raw:
        color = min(img.shape[2], 3)
        img[..., :color] = linear_to_srgb(img[..., :color])
    q = np.round(img * 255.0).astype(np.uint8)
    if ext in (".jpg", ".jpeg") and q.shape[2] == 4:
        raise ValueError("JPEG files cannot store alpha; pass an (H, W, 3) image")
    q = q[:, :, 0] if q.shape[2] == 1 else q
    kwargs = {"quality": 95} if ext in (".jpg", ".jpeg") else {}
    Image.fromarray(q).save(path, **kwargs)


# --------------------------------------------------------------------------
# Radiance RGBE (.hdr)


def _read_hdr(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    if not (data.startswith(b"#?RADIANCE") or data.startswith(b"#?RGBE")):
        raise SceneError(f"{path}: not a Radiance HDR file")
    end = data.find(b"\n\n")
    if end < 0:
        raise SceneError(f"{path}: HDR header not terminated")
    header = data[:end].decode("ascii", "replace")
    fmt = re.search(r"FORMAT=(\S+)", header)
    if fmt and fmt.group(1) != "32-bit_rle_rgbe":
        raise SceneError(f"{path}: unsupported HDR pixel format {fmt.group(1)}")
    nl = data.find(b"\n", end + 2)
    m = re.fullmatch(rb"-Y (\d+) \+X (\d+)", data[end + 2 : nl].strip())
    if not m:
        raise SceneError(f"{path}: unsupported HDR orientation {data[end + 2 : nl]!r}")
    h, w = int(m.group(1)), int(m.group(2))
    buf = np.frombuffer(data, np.uint8)
    pos = nl + 1
    rgbe = np.zeros((h, w, 4), np.uint8)
    try:
        for y in range(h):
            if (
                8 <= w < 32768
                and buf[pos] == 2
                and buf[pos + 1] == 2
                and (int(buf[pos + 2]) << 8 | int(buf[pos + 3])) == w
            ):
                pos += 4  # new RLE: four channel planes, each runs and literals
                for c in range(4):
                    x = 0
                    while x < w:
                        n = int(buf[pos])
                        if n > 128:
                            n -= 128
                            rgbe[y, x : x + n, c] = buf[pos + 1]
                            pos += 2
                        else:
                            if n == 0:
                                raise IndexError
                            rgbe[y, x : x + n, c] = buf[pos + 1 : pos + 1 + n]
                            pos += 1 + n
                        x += n
                    if x != w:
                        raise IndexError
            else:  # flat pixels (old-style run markers are not supported)
                rgbe[y] = buf[pos : pos + 4 * w].reshape(w, 4)
                pos += 4 * w
    except (IndexError, ValueError):
        raise SceneError(f"{path}: corrupt or truncated HDR pixel data") from None
    e = rgbe[..., 3:].astype(np.int32)
    scale = np.where(e == 0, 0.0, np.ldexp(1.0, e - 136))
    return (rgbe[..., :3] * scale).astype(np.float32)


def _write_hdr(path: str, img: np.ndarray) -> None:
    img = np.maximum(np.nan_to_num(img.astype(np.float64), nan=0.0), 0.0)
    h, w, _ = img.shape
    v = img.max(axis=2)
    mant, exp = np.frexp(v)
    ok = v >= 1e-32
    scale = np.where(ok, mant * 256.0 / np.where(ok, v, 1.0), 0.0)
    rgbe = np.zeros((h, w, 4), np.uint8)
    rgbe[..., :3] = np.minimum(img * scale[..., None], 255).astype(np.uint8)
    rgbe[..., 3] = np.where(ok, exp + 128, 0)
    out = [b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n", f"-Y {h} +X {w}\n".encode()]
    if 8 <= w < 32768:
        # New-style scanlines made of literal chunks only (no runs): always
        # valid, never mistaken for old-style run markers.
        starts = np.arange(0, w, 128)
        for y in range(h):
            out.append(bytes([2, 2, w >> 8, w & 255]))
            for c in range(4):
                plane = rgbe[y, :, c]
                out.extend(bytes([min(128, w - s)]) + plane[s : s + 128].tobytes() for s in starts)
    else:
        out.append(rgbe.tobytes())
    with open(path, "wb") as f:
        f.write(b"".join(out))


# --------------------------------------------------------------------------
# Portable float map (.pfm): bottom row first.


def _read_pfm(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    m = re.match(rb"(P[Ff])\s+(\d+)\s+(\d+)\s+(\S+)\s", data)
    if not m:
        raise SceneError(f"{path}: not a PFM file")
    c = 3 if m.group(1) == b"PF" else 1
    w, h = int(m.group(2)), int(m.group(3))
    try:
        scale = float(m.group(4))
    except ValueError:
        raise SceneError(f"{path}: bad PFM scale {m.group(4)!r}") from None
    dt = np.dtype("<f4" if scale < 0 else ">f4")
    n = w * h * c
    if len(data) - m.end() < n * 4:
        raise SceneError(f"{path}: PFM pixel data truncated")
    img = np.frombuffer(data, dt, n, m.end()).reshape(h, w, c)[::-1]
    return img.astype(np.float32)


def _write_pfm(path: str, img: np.ndarray) -> None:
    if img.shape[2] == 4:
        raise ValueError(".pfm files cannot store alpha; pass an (H, W, 3) image")
    h, w, c = img.shape
    header = f"{'PF' if c == 3 else 'Pf'}\n{w} {h}\n-1.0\n".encode()
    with open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(img[::-1], dtype="<f4").tobytes())
