"""REST API for the annotation data, under /api/v1/."""
