"""How a snapshot is named, one rule for the client, the command line and the server (no dependencies)."""

from __future__ import annotations

SHA256_PREFIX_MIN = 8


def snapshot_ref(ref: int | str) -> tuple[str, int | str]:
    """("id", N) or ("sha256", prefix); ValueError for neither.

    An int, `id:N`, or fewer than 8 digits is an id; 8 to 64 hex digits are a sha256 prefix, digits only too (an
    id that long would need ten million snapshots: write it `id:N`)."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return "id", ref
    text = ref.strip().lower() if isinstance(ref, str) else ""
    if text.startswith("id:") and text[3:].isascii() and text[3:].isdigit():
        return "id", int(text[3:])
    if text.isascii() and text.isdigit() and len(text) < SHA256_PREFIX_MIN:
        return "id", int(text)
    if text and set(text) <= set("0123456789abcdef"):
        if len(text) < SHA256_PREFIX_MIN:
            raise ValueError(f"a sha256 prefix needs at least {SHA256_PREFIX_MIN} hex digits, not {len(text)}: "
                             f"{ref!r}")
        if len(text) > 64:
            raise ValueError(f"a sha256 has 64 hex digits, not {len(text)}")
        return "sha256", text
    raise ValueError(f"{ref!r} is neither a snapshot id (fewer than 8 digits, or id:N) nor 8 or more hex digits of "
                     "a sha256")
