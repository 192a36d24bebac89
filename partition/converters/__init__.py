"""Converters from public dataset formats into the project's Parquet TAG format."""
