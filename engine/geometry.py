"""Distances on the Earth for coverage, dispatch and ETA: pure, stdlib only."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def covers(vendor_lat: float, vendor_lng: float, km_service_area: float, lat: float, lng: float) -> bool:
    return distance_km(vendor_lat, vendor_lng, lat, lng) <= km_service_area
