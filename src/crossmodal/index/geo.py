"""Distances on the earth's surface, for `near(...)` filters on a photo's GPS position."""

from __future__ import annotations

import math
import re

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG): within 0.5% anywhere on the globe
_KM_PER_UNIT = {"km": 1.0, "m": 0.001, "mi": 1.609344, "": 1.0}
_DISTANCE = re.compile(r"^(\d+(?:\.\d*)?)\s*(km|mi|m|)$")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points given in decimal degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def distance_km(text: str) -> float:
    """'5km', '800 m', '3mi' or a bare number (km) in km; ValueError for anything else."""
    match = _DISTANCE.match(text.strip())
    if not match:
        raise ValueError(f"not a distance: {text!r}")
    return float(match.group(1)) * _KM_PER_UNIT[match.group(2)]
