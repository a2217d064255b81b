"""Write docs/api.md, the HTTP API reference, from the OpenAPI schema that drf-spectacular generates.

    .venv/bin/python docs/api_reference.py            # regenerate docs/api.md from the code
    .venv/bin/python docs/api_reference.py --check    # exit 1 if docs/api.md is out of date
    .venv/bin/python docs/api_reference.py --schema schema.json -o api.md   # from a saved schema (JSON or YAML)

`render(schema)` is a pure function of the schema, so the output is stable: the same code gives the same file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "api.md"
METHODS = ("get", "post", "put", "patch", "delete")

INTRO = """\
# HTTP API reference

Generated from the OpenAPI schema by `docs/api_reference.py` (`make docs`); do not edit by hand (run it after
changing an endpoint or a serializer; a test fails while this file is out of date). The live schema is served
at `/api/schema/` and browsable at `/api/docs/`.

- **Base URL**: `/api/v1/`. **Auth**: `Authorization: Token <key>`; get a key with `POST /api/v1/auth/token/`
  (`quorum login` does this) or in the web UI's session.
- **Roles**: everything under `/projects/{slug}/` needs membership in that project; a non-member gets 404, a
  member whose role may not do the thing gets 403 (see the role table in `quickstart-admin.md`).
- **Errors**: 400 with `{"field": ["message"]}` (input) or `{"code", "detail", "fields"}` (domain rules); 401
  without a valid token; 403/404 as above; 409 for a state conflict (e.g. cancelling a finished run); never 500
  for bad input.
- **Lists** are paginated with `?limit=` and `?offset=` and answer `{"count", "next", "previous", "results"}`.
"""


def generate_schema() -> dict:
    """The schema of the code in this checkout (needs Django settings; no server, no database)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
    os.environ.setdefault("QUORUM_DEV", "1")  # the schema is the same whatever the key
    import django

    django.setup()
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


# --- rendering ----------------------------------------------------------------------------------
def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _anchor(name: str) -> str:
    return "schema-" + name.lower()


def _type(prop: dict, schemas: dict) -> str:
    if "$ref" in prop:
        name = _ref_name(prop["$ref"])
        target = schemas.get(name, {})
        if "enum" in target:
            return " \\| ".join(f"`{v}`" for v in target["enum"] if v not in (None, ""))
        return f"[{name}](#{_anchor(name)})"
    for combo in ("allOf", "oneOf", "anyOf"):
        if combo in prop:
            parts = [_type(p, schemas) for p in prop[combo]]
            parts = [p for p in parts if p]
            text = " \\| ".join(dict.fromkeys(parts))
            return text + (" \\| null" if prop.get("nullable") else "")
    if "enum" in prop:
        text = " \\| ".join(f"`{v}`" for v in prop["enum"] if v not in (None, ""))
    elif prop.get("type") == "array":
        text = f"list of {_type(prop.get('items', {}), schemas) or 'any'}"
    elif prop.get("type") == "object":
        text = "object"
    else:
        text = prop.get("type", "any")
        if prop.get("format") and prop["format"] not in ("int64",):
            text += f" ({prop['format']})"
    return text + (" \\| null" if prop.get("nullable") else "")


# The database's own integer range (it differs between SQLite and PostgreSQL): not a documented limit.
_DB_INT_BOUNDS = {2**15 - 1, -(2**15), 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)}


def _limits(prop: dict) -> str:
    out = []
    for key, label in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤"),
                       ("maxItems", "items ≤")):
        if key in ("minimum", "maximum") and prop.get(key) in _DB_INT_BOUNDS:
            continue
        if key in prop:
            out.append(f"{label} {prop[key]}")
    if "default" in prop:
        out.append(f"default `{json.dumps(prop['default'])}`")
    if prop.get("readOnly"):
        out.append("read-only")
    return ", ".join(out)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _fields_table(schema: dict, schemas: dict) -> list[str]:
    if "$ref" in schema:
        schema = schemas.get(_ref_name(schema["$ref"]), {})
    props = schema.get("properties", {})
    if not props:
        return []
    required = set(schema.get("required", []))
    lines = ["| field | type | required | notes |", "| --- | --- | --- | --- |"]
    for name, prop in props.items():
        notes = "; ".join(x for x in (_cell(prop.get("description", "")), _limits(prop)) if x)
        lines.append(f"| `{name}` | {_type(prop, schemas)} | {'yes' if name in required else ''} | {notes} |")
    return lines


def _group(path: str) -> str:
    parts = [p for p in path.removeprefix("/api/v1/").split("/") if p]
    if not parts or path.startswith("/api/schema"):
        return "Schema"
    if parts[0] == "projects" and len(parts) > 2:
        return parts[2].replace("-", " ").capitalize()
    return parts[0].replace("-", " ").capitalize()


def render(schema: dict) -> str:
    schemas = schema.get("components", {}).get("schemas", {})
    groups: dict[str, list[tuple[str, str, dict]]] = {}
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                groups.setdefault(_group(path), []).append((path, method, item[method]))
    lines = [INTRO, "## Endpoints", ""]
    for group, ops in groups.items():
        lines.append(f"- **{group}**: " + ", ".join(f"`{m.upper()} {p}`" for p, m, _ in ops))
    lines.append("")
    used: set[str] = set()
    for group, ops in groups.items():
        lines += [f"## {group}", ""]
        for path, method, op in ops:
            lines += [f"### `{method.upper()} {path}`", ""]
            if op.get("description"):
                lines += [" ".join(op["description"].split()), ""]
            params = [p for p in op.get("parameters", []) if p.get("in") in ("path", "query")]
            if params:
                lines += ["| parameter | in | type | required | notes |", "| --- | --- | --- | --- | --- |"]
                for p in params:
                    lines.append(f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}), schemas)} | "
                                 f"{'yes' if p.get('required') else ''} | {_cell(p.get('description', ''))} |")
                lines.append("")
            body = op.get("requestBody", {}).get("content", {})
            if body:
                media = "application/json" if "application/json" in body else next(iter(body))
                body_schema = body[media].get("schema", {})
                lines.append(f"Request body ({media}):")
                lines.append("")
                table = _fields_table(body_schema, schemas)
                lines += (table or [f"{_type(body_schema, schemas)}"]) + [""]
                if "$ref" in body_schema:
                    used.add(_ref_name(body_schema["$ref"]))
            answers = []
            for status, response in op.get("responses", {}).items():
                content = response.get("content", {})
                if not content:
                    answers.append(f"`{status}` (no body)")
                    continue
                media, spec = next(iter(content.items()))
                answer_schema = spec.get("schema", {})
                if answer_schema.get("type") == "array" and "$ref" in answer_schema.get("items", {}):
                    used.add(_ref_name(answer_schema["items"]["$ref"]))
                if "$ref" in answer_schema:
                    used.add(_ref_name(answer_schema["$ref"]))
                answers.append(f"`{status}` {_type(answer_schema, schemas)}"
                               + (f" ({media})" if media != "application/json" else ""))
            if answers:
                lines += ["Answers: " + "; ".join(answers) + ".", ""]
    lines += ["## Schemas", "", "Objects named above, with their fields.", ""]
    for name in sorted(n for n in _closure(used, schemas) if "properties" in schemas.get(n, {})):
        lines += [f'<a id="{_anchor(name)}"></a>', f"### {name}", ""]
        if schemas[name].get("description"):
            lines += [" ".join(schemas[name]["description"].split()), ""]
        lines += _fields_table(schemas[name], schemas) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _closure(names: set[str], schemas: dict) -> set[str]:
    """The named schemas and every schema they refer to."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        todo += [_ref_name(r) for r in _refs(schemas[name])]
    return seen


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if "$ref" in node else []
        for value in node.values():
            out += _refs(value)
        return out
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", help="a saved schema (JSON or YAML) instead of the code's")
    parser.add_argument("-o", "--output", default=str(TARGET))
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from what would be written")
    args = parser.parse_args(argv)
    if args.schema:
        text = Path(args.schema).read_text()
        if text.lstrip().startswith("{"):
            schema = json.loads(text)
        else:
            import yaml

            schema = yaml.safe_load(text)
    else:
        schema = generate_schema()
    rendered = render(schema)
    output = Path(args.output)
    if args.check:
        current = output.read_text() if output.exists() else ""
        if current != rendered:
            print(f"{output} is out of date: run .venv/bin/python docs/api_reference.py", file=sys.stderr)
            return 1
        return 0
    output.write_text(rendered)
    print(f"wrote {output} ({len(rendered.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
