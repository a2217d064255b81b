"""Upkeep of the embedded broker (kombu's SQLAlchemy transport on SQLite).

That transport marks a message it hands to a worker `visible = 0` and never deletes it, so the table only
grows; taken messages are never delivered again, so deleting them loses nothing.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def purge_taken_messages(broker_url: str) -> int:
    """Delete the messages workers already took; return how many. A no-op for other brokers."""
    if not broker_url.startswith("sqla+"):
        return 0
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError, ProgrammingError

    engine = create_engine(broker_url[len("sqla+") :], connect_args={"timeout": 10} if "sqlite" in broker_url else {})
    try:
        with engine.begin() as conn:
            return conn.execute(text("DELETE FROM kombu_message WHERE visible = :taken"), {"taken": False}).rowcount or 0
    except (OperationalError, ProgrammingError):  # no table yet (no message ever sent) or a busy database
        log.info("embedded broker not cleaned this time", exc_info=True)
        return 0
    finally:
        engine.dispose()
