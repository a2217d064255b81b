"""Web UI views, one module per area; every write goes through annotation.services."""
