"""Evaluate Terraform expressions of terraform/*.tf with Terraform itself, offline.

`terraform console` needs no provider when it runs in an empty directory, but then it knows none
of our locals and variables. So an expression taken from the parsed configuration (tfmodel) has
its references replaced by their values first: `var.x` by the default (or a placeholder for the
variables that have none), `path.module` by terraform/, and `local.x` by the local's own value,
evaluated the same way. What comes back is what Terraform computes from the same text:
templatefile() renders our templates, regex() reads the ports, nothing is re-implemented here.
Only locals and variables can be evaluated (resources and data sources need the provider).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import tfmodel

# Values for the variables that have no default (what a user must pass).
PLACEHOLDERS = {
    "project_id": "my-project",
    "producer_image_digest": "sha256:" + "1" * 64,
    "consumer_image_digest": "sha256:" + "2" * 64,
    "batch_image_digest": "sha256:" + "3" * 64,
}

REFERENCE = re.compile(r"\b(local|var)\.([A-Za-z_][A-Za-z0-9_]*)|\bpath\.module\b")


def _single_interpolation(text: str) -> bool:
    """`${...}` spanning the whole string (its value keeps its type in HCL)."""
    if not (text.startswith("${") and text.endswith("}")):
        return False
    depth = 0
    for i, char in enumerate(text[1:], 1):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0 and i != len(text) - 1:
            return False
    return depth == 0


def to_hcl(value: Any) -> str:
    """python-hcl2's (cleaned) value back to an HCL expression."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {to_hcl(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_hcl(v) for v in value) + "]"
    if value is None:
        return "null"
    assert isinstance(value, str), value
    if _single_interpolation(value):
        return "(" + value[2:-1] + ")"
    if "${" in value or "%{" in value:
        return '"' + value + '"'  # a template string; python-hcl2 keeps its interpolations as written
    return json.dumps(value)


def _literal(value: Any) -> str:
    """A computed value as an HCL expression (through JSON, so nothing in it is interpolated)."""
    text = json.dumps(json.dumps(value)).replace("${", "$${").replace("%{", "%%{")
    return f"jsondecode({text})"


class Evaluator:
    def __init__(self, tf: tfmodel.Terraform, tf_dir: Path, placeholders: dict[str, Any] | None = None):
        self.tf = tf
        self.tf_dir = tf_dir.resolve()
        self.placeholders = {**PLACEHOLDERS, **(placeholders or {})}
        self._locals: dict[str, Any] = {}
        self._workdir = Path(tempfile.mkdtemp(prefix="tfeval-"))

    def variable(self, name: str) -> Any:
        body = self.tf.variables.get(name)
        assert body is not None, f"terraform has no variable {name}"
        if name in self.placeholders:
            return self.placeholders[name]
        assert "default" in body, f"variable {name} has no default: give it a placeholder"
        return body["default"]

    def local(self, name: str) -> Any:
        if name not in self._locals:
            assert name in self.tf.locals, f"terraform has no local {name}"
            self._locals[name] = self.evaluate(to_hcl(self.tf.locals[name]))
        return self._locals[name]

    def substitute(self, expression: str) -> str:
        def one(match: re.Match) -> str:
            if match.group(0) == "path.module":
                return _literal(str(self.tf_dir))
            kind, name = match.groups()
            value = self.local(name) if kind == "local" else self.variable(name)
            return _literal(value)

        return REFERENCE.sub(one, expression)

    def evaluate(self, expression: str) -> Any:
        """The value of an HCL expression that may name our locals, variables and path.module."""
        resolved = self.substitute(expression)
        assert "\n" not in resolved, "terraform console evaluates one line at a time"
        return console(f"base64encode(jsonencode({resolved}))", self._workdir)


def console(expression: str, workdir: Path) -> Any:
    """`terraform console` on one expression whose value is base64 of JSON."""
    terraform = shutil.which("terraform")
    assert terraform, "terraform is not installed (needed to evaluate the configuration)"
    result = subprocess.run(
        [terraform, "console"], input=expression + "\n", cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"terraform console failed on {expression[:300]}...:\n{result.stderr}"
    found = re.search(r'"([A-Za-z0-9+/=]*)"\s*$', result.stdout)
    assert found, result.stdout
    return json.loads(base64.b64decode(found.group(1)))


def heredoc(text: str) -> str:
    """The body of a `<<-EOT ... EOT` string as python-hcl2 returns it (indent stripped), else the text."""
    found = re.fullmatch(r"<<(-?)(\w+)\n(.*?)\n?[ \t]*\2", text, re.S)
    if not found:
        return text
    lines = found.group(3).split("\n")
    if found.group(1):
        indent = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
        lines = [l[indent:] for l in lines]
    return "\n".join(lines).strip("\n")
