"""Colour conversions used by the file readers: sRGB transfer curve and
sampled spectra to linear sRGB (what Mitsuba 3's RGB variants do on load)."""

from __future__ import annotations

import numpy as np


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Decodes sRGB-encoded values in [0, 1] to linear values (IEC 61966-2-1)."""
    x = np.asarray(x)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Encodes linear values in [0, 1] with the sRGB transfer curve."""
    x = np.asarray(x)
    # np.maximum keeps the power's argument non-negative (no NaN warnings for
    # the branch np.where discards).
    return np.where(
        x <= 0.0031308, x * 12.92, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055
    )


# CIE 1931 2-degree colour matching functions, as the multi-lobe Gaussian fit
# of Wyman, Sloan and Shirley, "Simple Analytic Approximations to the CIE XYZ
# Color Matching Functions" (JCGT 2013). Each lobe: (weight, mean, sigma left of
# the mean, sigma right of it). Within about 1% of the tabulated functions,
# which is well inside what converting a spectrum to three numbers can promise.
_CIE_LOBES = (
    ((1.056, 599.8, 37.9, 31.0), (0.362, 442.0, 16.0, 26.7), (-0.065, 501.1, 20.4, 26.2)),
    ((0.821, 568.8, 46.9, 40.5), (0.286, 530.9, 16.3, 31.1)),
    ((1.217, 437.0, 11.8, 36.0), (0.681, 459.0, 26.0, 13.8)),
)

# CIE standard illuminant D65, relative power every 10 nm from 360 to 830 nm.
_D65 = np.array(
    [
        46.6383,
        52.0891,
        49.9755,
        54.6482,
        82.7549,
        91.4860,
        93.4318,
        86.6823,
        104.865,
        117.008,
        117.812,
        114.861,
        115.923,
        108.811,
        109.354,
        107.802,
        104.790,
        107.689,
        104.405,
        104.046,
        100.000,
        96.3342,
        95.7880,
        88.6856,
        90.0062,
        89.5991,
        87.6987,
        83.2886,
        83.6992,
        80.0268,
        80.2146,
        82.2778,
        78.2842,
        69.7213,
        71.6091,
        74.3490,
        61.6040,
        69.8856,
        75.0870,
        63.5927,
        46.4182,
        66.8054,
        63.3828,
        64.3040,
        59.4519,
        51.9590,
        57.4406,
        60.3125,
    ]
)

# Linear sRGB (Rec. 709 primaries, D65 white) from CIE XYZ.
_XYZ_TO_SRGB = np.array(
    [
        [3.240479, -1.537150, -0.498535],
        [-0.969256, 1.875991, 0.041556],
        [0.055648, -0.204043, 1.057311],
    ]
)

_LAMBDA = np.arange(360.0, 830.0 + 0.5, 0.5)  # integration grid (nm)


def _cie_xyz(lam: np.ndarray) -> np.ndarray:
    out = np.zeros((3,) + lam.shape)
    for i, lobes in enumerate(_CIE_LOBES):
        for w, mu, s1, s2 in lobes:
            t = (lam - mu) / np.where(lam < mu, s1, s2)
            out[i] += w * np.exp(-0.5 * t * t)
    return out


_CMF = _cie_xyz(_LAMBDA)
_D65_GRID = np.interp(_LAMBDA, np.arange(360.0, 831.0, 10.0), _D65)


def spectrum_to_rgb(wavelengths, values, *, reflectance: bool) -> np.ndarray:
    """Converts a piecewise-linear spectrum to linear sRGB, as Mitsuba 3 does.

    Args:
      wavelengths: increasing wavelengths in nm (at least two).
      values: the spectrum's value at each wavelength; zero outside their range.
      reflectance: True for reflectances and other unitless quantities: the
        spectrum is lit by D65 and normalised so that a constant spectrum c
        gives about (c, c, c). False for emitted radiance: plain integration
        against the colour matching functions, normalised so that a constant
        spectrum c has luminance c.

    Returns:
      float64 (3,) linear sRGB. May be negative for saturated spectra (the
      caller clamps).
    """
    wl = np.asarray(wavelengths, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    inside = (_LAMBDA >= wl[0]) & (_LAMBDA <= wl[-1])
    s = np.where(inside, np.interp(_LAMBDA, wl, v), 0.0)
    weight = _D65_GRID if reflectance else np.ones_like(_LAMBDA)
    xyz = (_CMF * (s * weight)).sum(axis=1) / (_CMF[1] * weight).sum()
    return _XYZ_TO_SRGB @ xyz
