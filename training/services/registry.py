"""The model registry: register (idempotently, by name) and update models."""

from __future__ import annotations

from urllib.parse import urlparse

from django.db import transaction

from common.errors import Invalid

from ..backends.base import DTYPES, Sampling
from ..models import Backend, Model, ModelRole

REGISTRY_FIELDS = (
    "backend", "path", "base_url", "served_name", "chat_template", "sampling", "roles", "options",
    "description", "base_model", "parent_run_id", "metadata", "is_active",
)


def _validate(fields: dict) -> dict:
    backend = fields.get("backend")
    if backend not in Backend.values:
        raise Invalid(f"unknown backend {backend!r}", fields={"backend": [f"must be one of {', '.join(Backend.values)}"]})
    roles = list(dict.fromkeys(fields.get("roles") or []))
    bad = [r for r in roles if r not in ModelRole.values]
    if bad:
        raise Invalid(f"unknown roles {bad}", fields={"roles": [f"each must be one of {', '.join(ModelRole.values)}"]})
    fields["roles"] = roles
    try:
        fields["sampling"] = Sampling.from_dict(fields.get("sampling") or {}).as_dict() if fields.get("sampling") else {}
    except (TypeError, ValueError) as exc:
        raise Invalid(f"bad sampling parameters: {exc}", fields={"sampling": [str(exc)]}) from None
    if backend == Backend.OPENAI:
        url = urlparse(fields.get("base_url") or "")
        if url.scheme not in ("http", "https") or not url.netloc:
            raise Invalid("an openai model needs an http(s) base URL", fields={"base_url": ["must be an http(s) URL"]})
    elif not fields.get("path"):
        raise Invalid(f"a {backend} model needs a local path", fields={"path": ["required for local backends"]})
    options = fields.get("options") or {}
    if not isinstance(options, dict) or any(k in options for k in ("api_key", "token", "password")):
        raise Invalid(
            "options must be an object without secrets (name the environment variable: api_key_env)",
            fields={"options": ["no secrets here; use api_key_env"]},
        )
    if backend == Backend.TRANSFORMERS and "dtype" in options and options["dtype"] not in DTYPES:
        raise Invalid(f"unknown dtype {options['dtype']!r}", fields={"options": [f"dtype: one of {', '.join(DTYPES)}"]})
    return fields


@transaction.atomic
def model_register(
    *,
    name: str,
    backend: str,
    path: str = "",
    base_url: str = "",
    served_name: str = "",
    chat_template: str = "",
    sampling: dict | None = None,
    roles: list[str] | None = None,
    options: dict | None = None,
    description: str = "",
    base_model: Model | None = None,
    parent_run_id: int | None = None,
    metadata: dict | None = None,
) -> Model:
    """Create the model, or bring the one with this name up to date (registering twice is harmless)."""
    name = (name or "").strip()
    if not name:
        raise Invalid("a model needs a name", fields={"name": ["may not be blank"]})
    fields = _validate(
        dict(
            backend=backend,
            path=str(path or ""),
            base_url=base_url or "",
            served_name=served_name or "",
            chat_template=chat_template or "",
            sampling=sampling or {},
            roles=roles or [ModelRole.POLICY],
            options=options or {},
            description=description or "",
            base_model=base_model,
            parent_run_id=parent_run_id,
            metadata=metadata or {},
            is_active=True,
        )
    )
    if base_model is not None and base_model.name == name:
        raise Invalid("a model cannot be its own base", fields={"base_model": ["must be another model"]})
    existing = Model.objects.select_for_update().filter(name=name).first()
    if existing is None:
        return Model.objects.create(name=name, **fields)
    changed = [f for f in REGISTRY_FIELDS if getattr(existing, f) != fields[f]]
    for f in changed:
        setattr(existing, f, fields[f])
    if changed:
        existing.save(update_fields=[*changed, "updated_at"])
    return existing
