"""For receivers of Quorum's webhooks: check a delivery's signature without Django or the client.

    from quorum_client.webhooks import verify

    ok = verify(secret, body=request.body, headers=request.headers)   # raw bytes, as received

The server signs `f"{timestamp}.{body}"` with HMAC-SHA256 under the webhook's secret and sends
`X-Quorum-Signature: sha256=<hex>` and `X-Quorum-Timestamp: <unix seconds>`; a delivery older than
`tolerance_seconds` is refused, so a captured one cannot be replayed. Deduplicate by `X-Quorum-Delivery`:
delivery is at least once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Quorum-Signature"
TIMESTAMP_HEADER = "X-Quorum-Timestamp"
EVENT_HEADER = "X-Quorum-Event"
DELIVERY_HEADER = "X-Quorum-Delivery"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, *, body: bytes, headers: Mapping[str, str], tolerance_seconds: int = 300,
           now: float | None = None) -> bool:
    """True when the delivery carries a valid signature made within `tolerance_seconds` of `now`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), given)
