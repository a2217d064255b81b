"""Bad uploads to the import endpoint get a clear 4xx with a field message and change nothing."""

import io
import json

import pytest
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Annotation, Prompt, Response, Task

URL = "/api/v1/projects/p/imports/"


@pytest.fixture
def engineer(db, make_user):
    admin, engineer = make_user("admin"), make_user("engineer")
    project = services.project_create(name="P", slug="p", created_by=admin)
    services.membership_set(project=project, user=engineer, role="engineer")
    services.prompt_create(project=project, messages=[{"role": "user", "content": "Already here?"}])
    client = APIClient()
    client.force_authenticate(engineer)
    return client


def counts():
    return (Prompt.objects.count(), Response.objects.count(), Task.objects.count(), Annotation.objects.count())


def upload(client, body: bytes, name: str = "data.jsonl", **extra):
    f = io.BytesIO(body)
    f.name = name
    return client.post(URL, {"file": f}, format="multipart", **extra)


def nested(depth: int) -> str:
    return '{"prompt": ' + "[" * depth + '"x"' + "]" * depth + "}"


GOOD = json.dumps({"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"})
BAD_FILES = {
    "truncated JSONL": (GOOD + "\n" + GOOD[: len(GOOD) // 2]).encode(),
    "wrong types": json.dumps({"prompt": 42, "chosen": ["4"], "rejected": {"a": 1}}).encode() + b"\n",
    "a list per line": b'[1, 2, 3]\n',
    "non-UTF-8": ('{"prompt": "caf\u00e9 ?", "chosen": "a", "rejected": "b"}\n').encode("latin-1"),
    "UTF-16": (GOOD + "\n").encode("utf-16"),
    "deeply nested JSON": (nested(100_000) + "\n").encode(),
    "nested messages": json.dumps({"messages": [{"role": "user", "content": {"deep": [[[[["x"]]]]]}}]}).encode() + b"\n",
    "binary": bytes(range(256)) * 8,
    "empty": b"",
    "only blank lines": b"\n\n  \n",
    "NaN and huge numbers": b'{"prompt": "x", "completion": "y", "label": NaN}\n{"prompt": "x", "completion": "y", "label": 1e999}\n',
    "good line then a bad one": (GOOD + "\n" + '{"prompt": "x", "chosen": null, "rejected": "b"}\n').encode(),
}


@pytest.mark.django_db
@pytest.mark.parametrize("what", sorted(BAD_FILES))
def test_a_bad_file_is_a_4xx_naming_the_file_and_writes_nothing(engineer, what):
    before = counts()
    response = engineer.post(URL, {"file": _named(BAD_FILES[what])}, format="multipart")
    assert 400 <= response.status_code < 500, (what, response.status_code, response.content[:300])
    body = response.json()
    assert "file" in body.get("fields", body), (what, body)
    assert counts() == before


def _named(body: bytes) -> io.BytesIO:
    f = io.BytesIO(body)
    f.name = "data.jsonl"
    return f


@pytest.mark.django_db
def test_a_good_file_still_imports(engineer):
    before = counts()
    response = upload(engineer, (GOOD + "\n").encode())
    assert response.status_code == 201, response.content
    assert counts()[0] == before[0] + 1


@pytest.mark.django_db
def test_a_2_gb_content_length_claim_is_refused_before_the_body_is_read(engineer):
    before = counts()
    body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n\r\n" + GOOD.encode() + b"\r\n--B--\r\n"
    stream = io.BytesIO(body)
    response = engineer.generic(
        "POST", URL, body, content_type="multipart/form-data; boundary=B",
        CONTENT_LENGTH=str(2 * 1024**3), **{"wsgi.input": stream},
    )
    assert response.status_code == 413, (response.status_code, response.content[:300])
    assert response.json()["code"] == "too_large"
    assert stream.tell() == 0  # nothing was read
    assert counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("body, content_type", [
    (b'{"file": "not a file"}', "application/json"),
    (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n\r\n" + GOOD.encode(), "multipart/form-data; boundary=B"),
    (b"plain text", "text/plain"),
    (b"", "multipart/form-data"),
])
def test_a_malformed_request_is_a_4xx(engineer, body, content_type):
    before = counts()
    response = engineer.generic("POST", URL, body, content_type=content_type)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert counts() == before


@pytest.mark.django_db
def test_an_unknown_format_is_a_400_on_the_format_field(engineer):
    response = engineer.post(URL, {"file": _named((GOOD + "\n").encode()), "format": "parquet"}, format="multipart")
    body = response.json()
    assert response.status_code == 400 and "format" in body.get("fields", body)


# --- JSON bodies anywhere in the API ---------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("text, why", [
    ('{"settings": {"k\\u0000": 1}}', "NUL"),
    ('{"settings": {"k": "a\\u0000b"}}', "NUL"),
    ('{"settings": {"k": "\\ud800"}}', "surrogate"),
    ('{"settings": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested"),
])
def test_a_json_body_postgresql_cannot_store_is_a_400_and_changes_nothing(db, make_user, text, why):
    admin = make_user("admin")
    project = services.project_create(name="P", slug="p", created_by=admin)
    before = dict(project.settings)
    client = APIClient()
    client.force_authenticate(admin)
    response = client.generic("PATCH", "/api/v1/projects/p/", text, content_type="application/json")
    assert response.status_code == 400, (why, response.status_code, response.content[:300])
    assert why in response.json()["detail"]
    project.refresh_from_db()
    assert project.settings == before


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["offset=100000000000000000000", "limit=100000000000000000000",
                                   "offset=9223372036854775807&limit=5", "limit=-1", "offset=x"])
def test_page_bounds_out_of_range_are_not_server_errors(engineer, query):
    response = engineer.get(f"/api/v1/projects/p/prompts/?{query}")
    assert response.status_code == 200, (query, response.status_code, response.content[:300])
    body = response.json()
    assert body["count"] == 1 and len(body["results"]) <= 1000


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_form_field_with_a_nul_is_a_400(engineer, content_type):
    if content_type == "multipart/form-data":
        response = engineer.post("/api/v1/projects/p/generation-jobs/", {"model": "ti\x00ny"}, format="multipart")
    else:
        response = engineer.generic("POST", "/api/v1/projects/p/generation-jobs/", "model=ti%00ny", content_type=content_type)
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert "NUL" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "/api/v1/projects/p/tasks/?kind=%00", "/api/v1/projects/p/tasks/?status=a%00b", "/api/v1/projects/p/tasks/?kind=essay",
    "/api/v1/projects/p/webhook-deliveries/?webhook=%C2%B2", "/api/v1/projects/p/webhook-deliveries/?webhook=99999999999999999999",
    "/api/v1/projects/p/annotations/?task=99999999999999999999", "/api/v1/projects/p/responses/?prompt=%C2%B2",
])
def test_a_bad_query_parameter_is_a_400(db, make_user, url):
    admin = make_user("admin")
    services.project_create(name="P", slug="p", created_by=admin)
    client = APIClient()
    client.force_authenticate(admin)
    response = client.get(url)
    assert response.status_code == 400 or (response.status_code == 200 and response.json()["count"] == 0), (
        url, response.status_code, response.content[:300])
