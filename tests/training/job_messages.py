"""Job messages in tests: hold what `training.jobs.runtime` would send to Celery instead of sending it."""

from __future__ import annotations


def hold_messages(monkeypatch, *tasks: str, into: list | None = None) -> list:
    """Messages to the named Celery tasks (every task when none is named) are appended to the returned list as
    (task, args, queue) and not sent; messages to other tasks go where they went before."""
    from training.jobs import runtime

    previous = runtime.send
    held = [] if into is None else into

    def send(task, args, *, queue, countdown=None):
        if tasks and task not in tasks:
            previous(task, args, queue=queue, countdown=countdown)
        else:
            held.append((task, list(args), queue))

    monkeypatch.setattr(runtime, "send", send)
    return held
