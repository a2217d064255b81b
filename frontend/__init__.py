"""The web UI: server-rendered templates with HTMX."""
