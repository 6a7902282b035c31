"""Catalogue search in PostgreSQL: the embedded default `SearchIndex` (no extra service).

The tables are the index, so `upsert`/`delete` do nothing and search always sees
committed data. Only verified vendors, and available items of verified vendors, are
returned.

Matching (typo tolerant): an item matches when its full-text vector (name A, cuisine tag
B, description C; `websearch_to_tsquery('simple', q)`) matches, or when the query has a
similar word in the item's name or cuisine tag by pg_trgm `<%` (word similarity >=
`WORD_SIMILARITY_THRESHOLD`, e.g. "jolof" ~ "Jollof Rice" at 0.83). A vendor matches
when the query is word-similar to its name + categories. Both use GIN indexes (0001, 0002).

Ranking. relevance = best trigram word similarity (0..1) + ts_rank(..., 32) (0..1, only
for full-text hits). Without a location: relevance descending. With lat/lng, each result
gets distanceKm, the great-circle (haversine) distance from the point to the vendor:

    d = 2 * R * asin(sqrt(sin²((lat2 - lat1)/2) + cos(lat1) * cos(lat2) * sin²((lng2 - lng1)/2)))

with R = 6371.0088 km (mean Earth radius), and results are ordered by

    score = relevance / (1 + d / DISTANCE_SCALE_KM)

so the score halves at 5 km and is a third at 10 km: of equally relevant results the
nearer wins, and a much better match still beats a slightly nearer weak one.
Ties break on id so pages are stable.
"""

from __future__ import annotations

from typing import Any

import asyncpg

WORD_SIMILARITY_THRESHOLD = 0.5
DISTANCE_SCALE_KM = 5.0
EARTH_RADIUS_KM = 6371.0088


def haversine_sql(lat: str, lng: str, lat0: str, lng0: str) -> str:
    """SQL for the haversine distance in km between (lat, lng) and (lat0, lng0), degrees."""
    return (
        f"(2 * {EARTH_RADIUS_KM} * asin(least(1.0, sqrt("
        f"power(sin(radians({lat} - {lat0}) / 2), 2) + "
        f"cos(radians({lat0})) * cos(radians({lat})) * power(sin(radians({lng} - {lng0}) / 2), 2)))))"
    )


# $1 q, $2 lat (nullable), $3 lng (nullable), $4 distance scale km, $5 limit
_ITEMS_SQL = f"""
WITH q AS (SELECT websearch_to_tsquery('simple', $1) AS tsq)
SELECT i.id, i.menu_id, i.vendor_id, v.display_name AS vendor_name, i.name, i.price_kobo,
       i.description, i.cuisine_tag, i.prep_minutes, s.relevance, d.km AS distance_km
FROM menu_items i
JOIN vendors v ON v.id = i.vendor_id
CROSS JOIN q
CROSS JOIN LATERAL (
    SELECT greatest(word_similarity($1, i.name), 0.8 * word_similarity($1, coalesce(i.cuisine_tag, '')))
           + CASE WHEN i.search_tsv @@ q.tsq THEN ts_rank(i.search_tsv, q.tsq, 32) ELSE 0 END AS relevance
) s
CROSS JOIN LATERAL (
    SELECT CASE WHEN $2::float8 IS NULL OR $3::float8 IS NULL THEN NULL
                ELSE {haversine_sql("v.lat", "v.lng", "$2::float8", "$3::float8")} END AS km
) d
WHERE i.is_available AND v.verified
  AND (i.search_tsv @@ websearch_to_tsquery('simple', $1) OR $1 <% i.name OR $1 <% i.cuisine_tag)
ORDER BY s.relevance / (1 + coalesce(d.km, 0) / $4::float8) DESC, i.id
LIMIT $5
"""

_VENDORS_SQL = f"""
WITH q AS (SELECT websearch_to_tsquery('simple', $1) AS tsq)
SELECT v.id, v.display_name, v.categories, v.lat, v.lng, v.km_service_area, s.relevance, d.km AS distance_km
FROM vendors v
CROSS JOIN q
CROSS JOIN LATERAL (
    SELECT word_similarity($1, pocho_vendor_search_text(v.display_name, v.categories))
           + ts_rank(to_tsvector('simple', pocho_vendor_search_text(v.display_name, v.categories)),
                     q.tsq, 32) AS relevance
) s
CROSS JOIN LATERAL (
    SELECT CASE WHEN $2::float8 IS NULL OR $3::float8 IS NULL THEN NULL
                ELSE {haversine_sql("v.lat", "v.lng", "$2::float8", "$3::float8")} END AS km
) d
WHERE v.verified AND $1 <% pocho_vendor_search_text(v.display_name, v.categories)
ORDER BY s.relevance / (1 + coalesce(d.km, 0) / $4::float8) DESC, v.id
LIMIT $5
"""


def _km(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class PgSearchIndex:
    """`engine.ports.SearchIndex` over the catalogue tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def search(self, q: str, lat: float | None, lng: float | None, limit: int) -> dict[str, list[dict[str, Any]]]:
        args = (q, lat, lng, DISTANCE_SCALE_KM, limit)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL pg_trgm.word_similarity_threshold = {WORD_SIMILARITY_THRESHOLD}")
            vendors = await conn.fetch(_VENDORS_SQL, *args)
            items = await conn.fetch(_ITEMS_SQL, *args)
        return {
            "vendors": [
                {
                    "id": str(r["id"]),
                    "displayName": r["display_name"],
                    "categories": list(r["categories"]),
                    "lat": r["lat"],
                    "lng": r["lng"],
                    "kmServiceArea": r["km_service_area"],
                    "distanceKm": _km(r["distance_km"]),
                }
                for r in vendors
            ],
            "menuItems": [
                {
                    "id": str(r["id"]),
                    "menuId": str(r["menu_id"]),
                    "vendorId": str(r["vendor_id"]),
                    "vendorName": r["vendor_name"],
                    "name": r["name"],
                    "priceKobo": r["price_kobo"],
                    "description": r["description"],
                    "cuisineTag": r["cuisine_tag"],
                    "prepMinutes": r["prep_minutes"],
                    "distanceKm": _km(r["distance_km"]),
                }
                for r in items
            ],
        }

    async def upsert(self, entity: str, docs: list[dict[str, Any]]) -> None:
        """Nothing to do: the tables are the index."""

    async def delete(self, entity: str, ids: list[str]) -> None:
        """Nothing to do: the tables are the index."""
