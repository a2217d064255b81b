"""Helpers for the tests and benchmarks: tiny models built offline (`tiny`), snapshots in the export formats and a toy
reward (`snapshots`), deterministic generation backends (`backends`), the local OpenAI-compatible server (`openai`), signed-in API and page clients (`clients`) and
real Celery worker processes (`workers`). Never imported by the product."""
