"""Load terraform/*.tf with python-hcl2 into plain Python values, and resolve simple references.

python-hcl2 8.x keeps string quotes ("\"name\"") and wraps expressions as "${...}"; this module
strips the quotes, drops its bookkeeping keys (__is_block__, __comments__) and resolves
`${local.x}` / `${var.x}` (defaults) inside strings so tests compare real names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import hcl2

REF = re.compile(r"\$\{(local|var)\.([A-Za-z0-9_]+)\}")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def clean(obj: Any) -> Any:
    """Strip python-hcl2's quoting and bookkeeping keys, recursively."""
    if isinstance(obj, dict):
        return {_unquote(k): clean(v) for k, v in obj.items() if not k.startswith("__")}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    if isinstance(obj, str):
        return _unquote(obj)
    return obj


def block(body: dict, name: str) -> dict | None:
    """The first nested block `name` of a resource body, or None."""
    value = body.get(name)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    if isinstance(value, dict):
        return value
    return None


def blocks(body: dict, name: str) -> list[dict]:
    value = body.get(name)
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    if isinstance(value, dict):
        return [value]
    return []


@dataclass
class Terraform:
    """All top-level blocks of one Terraform directory."""

    root: Path
    resources: dict[tuple[str, str], dict] = field(default_factory=dict)
    data: dict[tuple[str, str], dict] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def of_type(self, rtype: str) -> dict[str, dict]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def resource(self, rtype: str, name: str) -> dict:
        try:
            return self.resources[(rtype, name)]
        except KeyError:
            raise AssertionError(f"terraform has no {rtype}.{name}") from None

    def iter_resources(self) -> Iterator[tuple[str, str, dict]]:
        for (t, name), body in self.resources.items():
            yield t, name, body

    def resolve(self, value: Any, depth: int = 0) -> Any:
        """Replace `${local.x}` and `${var.x}` (default) in a string when they resolve to scalars."""
        if not isinstance(value, str) or depth > 10:
            return value

        def sub(match: re.Match) -> str:
            kind, name = match.groups()
            if kind == "local":
                target = self.locals.get(name)
            else:
                target = self.variables.get(name, {}).get("default")
            if isinstance(target, (str, int, float)) and not isinstance(target, bool):
                return str(self.resolve(target, depth + 1))
            return match.group(0)

        return REF.sub(sub, value)

    def all_text(self) -> str:
        return "\n".join(self.texts.values())


def load(tf_dir: Path) -> Terraform:
    model = Terraform(root=tf_dir)
    for path in sorted(tf_dir.glob("*.tf")):
        text = path.read_text()
        model.texts[path.name] = text
        with path.open() as handle:
            parsed = clean(hcl2.load(handle))
        for entry in parsed.get("resource", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    key = (rtype, name)
                    assert key not in model.resources, f"duplicate resource {rtype}.{name}"
                    model.resources[key] = body
        for entry in parsed.get("data", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    model.data[(rtype, name)] = body
        for entry in parsed.get("variable", []):
            model.variables.update(entry)
        for entry in parsed.get("locals", []):
            model.locals.update(entry)
        for entry in parsed.get("output", []):
            model.outputs.update(entry)
    return model


def load_schema(path: Path) -> list[dict]:
    return json.loads(path.read_text())


FIELD = re.compile(
    r"^\s*(?P<label>required|optional|repeated)?\s*(?P<type>[A-Za-z0-9_.]+)\s+"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<number>\d+)\s*(\[[^\]]*\])?\s*;"
)
MESSAGE = re.compile(r"message\s+(?P<name>\w+)\s*\{(?P<body>[^{}]*)\}", re.S)


@dataclass(frozen=True)
class ProtoField:
    label: str  # "required", "optional", "repeated" or "" (proto3 singular)
    type: str
    name: str
    number: int


def parse_proto(text: str) -> dict[str, list[ProtoField]]:
    """Messages of a flat .proto file (no nested messages) and their fields in declared order."""
    without_comments = re.sub(r"//[^\n]*", "", text)
    without_comments = re.sub(r"/\*.*?\*/", "", without_comments, flags=re.S)
    messages: dict[str, list[ProtoField]] = {}
    for match in MESSAGE.finditer(without_comments):
        fields = []
        for line in match.group("body").splitlines():
            found = FIELD.match(line)
            if found:
                fields.append(
                    ProtoField(
                        label=found.group("label") or "",
                        type=found.group("type"),
                        name=found.group("name"),
                        number=int(found.group("number")),
                    )
                )
            elif line.strip():
                raise ValueError(f"unparsed line in message {match.group('name')}: {line.strip()!r}")
        messages[match.group("name")] = fields
    return messages
