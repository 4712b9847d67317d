"""Decodes Mapbox Vector Tiles with the independent `mapbox-vector-tile`
package and prints, per file, each layer's extent and features (geometry
type and properties) as JSON. Usage: mvt_decode.py TILE.mvt..."""

import json
import sys

import mapbox_vector_tile


def main():
    out = []
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            data = f.read()
        tile = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
        layers = {}
        for name, layer in tile.items():
            layers[name] = {
                "extent": layer.get("extent"),
                "features": [
                    {
                        "type": feat["geometry"]["type"],
                        "properties": feat["properties"],
                    }
                    for feat in layer["features"]
                ],
            }
        out.append(layers)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
