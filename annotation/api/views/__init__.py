"""Thin API views, one module per resource: parse with an input serializer, call a service or selector, render."""
