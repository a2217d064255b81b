"""The three pages every job kind has: its list (with the launch form), one job, and that job's cancel button."""

from django.urls import path


def job_pages(segment: str, key: str, views: tuple, names: tuple[str, str, str]) -> list:
    """`p/<slug>/<segment>/`, `.../<key>/` and `.../<key>/cancel/`, served by the (list, detail, cancel) `views`."""
    listing, detail, cancel = views
    one = f"p/<slug:slug>/{segment}/<int:{key}>/"
    return [
        path(f"p/<slug:slug>/{segment}/", listing, name=names[0]),
        path(one, detail, name=names[1]),
        path(f"{one}cancel/", cancel, name=names[2]),
    ]
