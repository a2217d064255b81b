"""Helpers for the tests and benchmarks: tiny models built offline (`tiny`), snapshots in the export formats and a toy
reward (`snapshots`), and deterministic generation backends (`backends`). Never imported by the product."""
