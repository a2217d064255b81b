"""Schemathesis against the served OpenAPI schema (/api/schema/): every operation, as every role, with generated
input. No answer may be a server error, and every answer must match what the schema says (body, content type,
headers). Bounded for CI: QUORUM_FUZZ_EXAMPLES examples per operation and role (default 5); raise it for a
longer run, e.g. `QUORUM_FUZZ_EXAMPLES=100 .venv/bin/pytest tests/fuzz -q`.
"""

import os
import random

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
)

from tests.annotation.test_api_permissions import ROLES, _own_cache, world  # noqa: F401 (fixtures)

EXAMPLES = int(os.environ.get("QUORUM_FUZZ_EXAMPLES", "5"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, response_headers_conformance]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def api_schema(db):
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from quorum.wsgi import application

    # Requests go through the WSGI app in this thread, inside the test's transaction: as Django's test client
    # does, keep the handler from closing the connection after each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _objects(w) -> dict:
    """Path parameters that name real objects, so generated requests also reach past the 404s."""
    return {
        "slug": ["p", "other"],
        "task_id": [w["task"].pk],
        "assignment_id": [w["lease"].pk],
        "annotation_id": [w["annotation"].pk],
        "snapshot_id": [w["snapshot"].pk],
        "job_id": [w["job"].pk, w["feedback_job"].pk],
        "run_id": [w["run"].pk, w["stopped"].pk],
        "model_id": [w["model"].pk],
        "number": [1],
        "user_id": [w["users"]["annotator"].pk, w["users"]["engineer"].pk],
        "webhook_id": [w["webhook"].pk],
        "delivery_id": [w["delivery"].pk],
        "webhook_id": [w["webhook"].pk],
        "delivery_id": [w["delivery"].pk],
    }


def _describe(case, response) -> str:
    body = response.text if hasattr(response, "text") else ""
    return f"{case.method} {case.formatted_path} -> {response.status_code}: {body[:300]}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_answers_within_its_schema(world, api_schema, role):  # noqa: F811
    user = world["users"].get(role)
    key = Token.objects.create(user=user).key if user else None
    headers = {"Authorization": f"Token {key}"} if key else {}
    known = _objects(world)
    rng = random.Random(f"fuzz-{role}")
    failures, calls = [], {"n": 0}

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case):
            for name in case.path_parameters or {}:
                if name in known and rng.random() < 0.8:
                    case.path_parameters[name] = rng.choice(known[name])
            response = case.call(headers=headers)
            calls["n"] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # every failing check is collected, listed below
                failures.append(f"[{role}] {_describe(case, response)}\n    {str(exc).strip()[:600]}")
            if key and not Token.objects.filter(key=key).exists():  # the fuzzer revoked our token: sign back in
                Token.objects.create(user=user, key=key)

        run()
    assert calls["n"] >= len(operations)
    unique = list(dict.fromkeys(failures))
    assert not unique, f"{len(unique)} answers broke the schema or were server errors:\n" + "\n".join(unique[:25])
