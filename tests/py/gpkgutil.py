"""Shared by the truth scripts: GeoPackage geometry blobs to shapely."""
import shapely


def geom(blob):
    """A GeoPackage geometry blob ('GP', version, flags, srs_id, envelope,
    WKB) as a shapely geometry."""
    assert blob[:2] == b"GP", "not a GeoPackage geometry"
    flags = blob[3]
    env = (flags >> 1) & 7
    size = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[env]
    return shapely.from_wkb(blob[8 + size:])
