"""Shared building blocks of the ShopLake jobs: config, Spark session, table
registry, Delta IO, run log and source mappings."""
