"""Quorum: collect human and AI feedback on model outputs and turn it into aligned models."""

from .celery import app as celery_app

__all__ = ["celery_app"]
