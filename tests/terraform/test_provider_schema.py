"""terraform/*.tf held against the real hashicorp/google provider schema, offline.

`terraform validate` needs the provider, which cannot be downloaded here; scripts/setup-provider-schema
derives the provider's schema from the pinned npm package @cdktf/provider-google (see
provider_schema.py) into .venv/provider-schema/schema.json. For every `resource` and `data` block
(and the `provider "google"` block) these tests check that the type exists, that every argument and
nested block we write exists at its nesting level and is written as what it is (argument or
block), that no computed-only attribute is set, that a block the provider allows once is written
once, that every required argument and block is set (a `dynamic` block counts), that
`lifecycle.ignore_changes` and references like `google_x.name.attr` name real attributes, and that
terraform/versions.tf pins the provider version the schema comes from. Every problem is reported
at once, with file, resource and path.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import hcl2
import pytest

import provider_schema
import tfmodel

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = Path(
    os.environ.get("PROVIDER_SCHEMA", REPO_ROOT / ".venv" / "provider-schema" / "schema.json")
)

# Providers other than hashicorp/google whose types these tests skip, each with its reason.
# Empty today: everything in terraform/ is hashicorp/google. A `random_*`, `time_*` or `archive_*`
# type (say) fails test_every_type_is_in_the_provider until its provider is named here.
OTHER_PROVIDERS: dict[str, str] = {}

# Terraform's own meta-arguments, valid in every resource / data block whatever the provider says
# (https://developer.hashicorp.com/terraform/language/meta-arguments/count and the pages beside it).
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
META_BLOCKS = {"resource": {"lifecycle", "provisioner", "connection"}, "data": {"lifecycle"}}
DYNAMIC_KEYS = {"for_each", "iterator", "labels", "content"}
# https://developer.hashicorp.com/terraform/language/meta-arguments/lifecycle
LIFECYCLE_KEYS = {
    "resource": {
        "create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by",
        "precondition", "postcondition",
    },
    "data": {"precondition", "postcondition"},
}

REFERENCE = re.compile(
    r"(?<![\w.])(?P<data>data\.)?(?P<type>google_[a-z0-9_]+)\.(?P<name>[A-Za-z_][\w-]*)"
    r"(?:\[[^\]]*\])*(?P<path>(?:\.[A-Za-z_][\w-]*(?:\[[^\]]*\])*)+)"
)


@pytest.fixture(scope="session")
def schema() -> dict:
    if not SCHEMA_PATH.exists():
        pytest.fail(f"{SCHEMA_PATH} is missing: run scripts/setup-provider-schema (scripts/check-terraform does)")
    return provider_schema.load(SCHEMA_PATH)


# --- parsing that keeps what tfmodel.clean drops: which values are blocks ------------------------


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


@dataclass
class TopBlock:
    file: str
    kind: str  # "resource", "data" or "provider"
    type: str
    name: str
    body: dict

    @property
    def address(self) -> str:
        prefix = "data." if self.kind == "data" else ""
        if self.kind == "provider":
            return f'provider "{self.type}"'
        return f"{prefix}{self.type}.{self.name}"


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> dict:
    # python-hcl2 is slow; the checks below parse the same (copied) files many times. Callers must
    # not modify the result.
    return hcl2.loads(text)


def top_blocks(tf_dir: Path) -> Iterator[TopBlock]:
    for path in sorted(tf_dir.glob("*.tf")):
        parsed = _parse(path.read_text())
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        yield TopBlock(path.name, kind, _unquote(rtype), _unquote(name), body)
        for entry in parsed.get("provider", []):
            for pname, body in entry.items():
                yield TopBlock(path.name, "provider", _unquote(pname), "", body)


def provider_of(tf_type: str) -> str:
    # Terraform's default: the provider is the type's first word (google_compute_instance -> google).
    return tf_type.split("_", 1)[0]


# --- the checker ---------------------------------------------------------------------------------


@dataclass
class Problems:
    unknown: list[str] = field(default_factory=list)  # names the schema does not have, or misused
    missing: list[str] = field(default_factory=list)  # required arguments / blocks not set

    def all(self) -> list[str]:
        return self.unknown + self.missing


def _hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def check_body(
    body: dict, block: dict, where: str, problems: Problems, meta: tuple[set, set] = (set(), set())
) -> None:
    """Check one block body against its schema `block`; `where` prefixes every message."""
    attributes: dict[str, str] = block["attributes"]
    blocks: dict[str, dict] = block["blocks"]
    meta_args, meta_blocks = meta
    known = sorted(set(attributes) | set(blocks))
    seen_blocks: dict[str, int] = {}
    set_attributes: set[str] = set()

    def nested(name: str, bodies: list[dict], label: str) -> None:
        if name in blocks:
            seen_blocks[name] = seen_blocks.get(name, 0) + len(bodies)
            for index, inner in enumerate(bodies):
                suffix = "" if blocks[name]["max_one"] else f"[{index}]"
                check_body(inner, blocks[name], f"{where}.{name}{suffix}{label}", problems)
        elif name in attributes:
            problems.unknown.append(f"{where}: {name} is an argument, not a block: write `{name} = ...`")
        else:
            problems.unknown.append(f"{where}: unknown block {name}{label}{_hint(name, known)}")

    for key, value in body.items():
        if key.startswith("__"):
            continue
        if key == "dynamic" and isinstance(value, list):
            # [{'"label"': {for_each, content: [...], __is_block__}}, ...]
            for entry in value:
                for label, dyn in entry.items():
                    if label.startswith("__") or not isinstance(dyn, dict):
                        continue
                    name = _unquote(label)
                    extra = sorted(k for k in dyn if not k.startswith("__") and k not in DYNAMIC_KEYS)
                    if extra:
                        problems.unknown.append(f'{where}: dynamic "{name}" has {extra}, not for_each/iterator/labels/content')
                    contents = dyn.get("content") if _is_block(dyn.get("content")) else []
                    if not contents:
                        problems.unknown.append(f'{where}: dynamic "{name}" has no content block')
                    nested(name, contents, f' (dynamic "{name}")')
            continue
        if _is_block(value):
            if key in meta_blocks:
                continue
            nested(key, value, "")
            continue
        if key in meta_args:
            continue
        if key in attributes:
            if attributes[key] == "computed":
                problems.unknown.append(f"{where}: {key} is computed by the provider and cannot be set")
            elif value is not None:
                set_attributes.add(key)
        elif key in blocks:
            problems.unknown.append(f"{where}: {key} is a block, not an argument: write `{key} {{ ... }}`")
            seen_blocks[key] = seen_blocks.get(key, 0) + 1
        else:
            problems.unknown.append(f"{where}: unknown argument {key}{_hint(key, known)}")

    for name, kind in attributes.items():
        if kind == "required" and name not in set_attributes:
            problems.missing.append(f"{where}: required argument {name} is not set")
    for name, inner in blocks.items():
        if inner["required"] and not seen_blocks.get(name):
            problems.missing.append(f"{where}: required block {name} is missing")
        if inner["max_one"] and seen_blocks.get(name, 0) > 1:
            problems.unknown.append(f"{where}: block {name} may appear once, found {seen_blocks[name]}")


def check_top(top: TopBlock, schema: dict, problems: Problems) -> None:
    where = f"{top.file}: {top.address}"
    if top.kind == "provider":
        if top.type == "google":
            check_body(top.body, schema["provider_config"], where, problems)
        return
    section = schema["resources"] if top.kind == "resource" else schema["data_sources"]
    if top.type not in section:
        problems.unknown.append(f"{where}: no {top.kind} type {top.type} in the provider{_hint(top.type, list(section))}")
        return
    block = section[top.type]
    check_body(top.body, block, where, problems, (META_ARGUMENTS, META_BLOCKS[top.kind]))
    for lifecycle in top.body.get("lifecycle", []) if _is_block(top.body.get("lifecycle")) else []:
        for key in sorted(k for k in lifecycle if not k.startswith("__") and k not in LIFECYCLE_KEYS[top.kind]):
            hint = _hint(key, sorted(LIFECYCLE_KEYS[top.kind]))
            problems.unknown.append(f"{where}: unknown lifecycle argument {key}{hint}")
        if top.kind == "resource":
            # Terraform validates ignore_changes against the schema too (hashicorp/terraform#19665).
            ignored = lifecycle.get("ignore_changes")
            for entry in ignored if isinstance(ignored, list) else []:  # or the keyword `all`
                if not isinstance(entry, str):
                    continue
                first = re.match(r"(?:\$\{)?([A-Za-z_][\w-]*)", tfmodel.clean(entry))
                name = first.group(1) if first else ""
                if first and name not in block["attributes"] and name not in block["blocks"]:
                    problems.unknown.append(f"{where}: lifecycle.ignore_changes names unknown attribute {name}")


def google_blocks(tf_dir: Path) -> list[TopBlock]:
    return [t for t in top_blocks(tf_dir) if t.kind == "provider" or provider_of(t.type) == "google"]


def check_tree(tf_dir: Path, schema: dict) -> Problems:
    problems = Problems()
    for top in google_blocks(tf_dir):
        check_top(top, schema, problems)
    return problems


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def check_references(tf_dir: Path, schema: dict) -> list[str]:
    declared = {(t.kind, t.type, t.name) for t in top_blocks(tf_dir) if t.kind != "provider"}
    problems = []
    for path in sorted(tf_dir.glob("*.tf")):
        parsed = tfmodel.clean(_parse(path.read_text()))
        for text in _strings(parsed):
            for ref in REFERENCE.finditer(text):
                kind = "data" if ref.group("data") else "resource"
                section = schema["data_sources" if ref.group("data") else "resources"]
                rtype, name = ref.group("type", "name")
                label = f"{path.name}: {ref.group(0)}"
                if (kind, rtype, name) not in declared:
                    problems.append(f"{label}: no {kind} {rtype}.{name} in terraform/")
                    continue
                if rtype not in section:
                    continue  # reported by test_every_type_is_in_the_provider
                # Walk .a[0].b through nested blocks; stop at the first attribute (its value is
                # a map, list or object the schema here does not describe).
                block, owner = section[rtype], rtype
                for attr in re.findall(r"\.([A-Za-z_][\w-]*)", ref.group("path")):
                    if attr in block["blocks"]:
                        block, owner = block["blocks"][attr], f"{owner}.{attr}"
                        continue
                    if attr not in block["attributes"]:
                        known = sorted(set(block["attributes"]) | set(block["blocks"]))
                        problems.append(f"{label}: {owner} has no attribute {attr}{_hint(attr, known)}")
                    break
    return sorted(set(problems))


def _report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s) against the provider schema:\n  " + "\n  ".join(problems)


# --- the checks on terraform/ --------------------------------------------------------------------


def test_versions_tf_pins_the_checked_provider_version(tf_dir, schema):
    with (tf_dir / "versions.tf").open() as handle:
        parsed = tfmodel.clean(hcl2.load(handle))
    required = {}
    for terraform in parsed.get("terraform", []):
        for providers in terraform.get("required_providers", []):
            required.update(providers)
    assert "google" in required, "versions.tf has no required_providers.google"
    google = required["google"]
    assert f"registry.terraform.io/{google['source']}" == schema["provider"], google
    major, minor, _patch = schema["provider_version"].split(".")
    # "~> 6.50" allows 6.50.0 and any later 6.x, and nothing older than the schema checked here.
    assert google["version"] == f"~> {major}.{minor}", (
        f"versions.tf pins google {google['version']!r}, but the schema checked is "
        f"{schema['provider_version']} ({schema['package']}): pin \"~> {major}.{minor}\" or move the "
        "package in scripts/setup-provider-schema"
    )
    others = sorted(set(required) - {"google"} - set(OTHER_PROVIDERS))
    assert not others, f"providers {others} are neither checked here nor named in OTHER_PROVIDERS"


def test_every_type_is_in_the_provider(tf_dir, schema):
    problems = []
    for top in top_blocks(tf_dir):
        if top.kind == "provider":
            continue
        provider = provider_of(top.type)
        if provider != "google":
            if provider not in OTHER_PROVIDERS:
                problems.append(f"{top.file}: {top.address}: provider {provider} is not checked: name it in OTHER_PROVIDERS")
            continue
        section = schema["resources"] if top.kind == "resource" else schema["data_sources"]
        if top.type not in section:
            problems.append(
                f"{top.file}: {top.address}: no {top.kind} type {top.type} in {schema['provider']} "
                f"{schema['provider_version']}{_hint(top.type, list(section))}"
            )
    assert not problems, _report(problems)


def test_every_argument_and_block_is_in_the_provider_schema(tf_dir, schema):
    problems = check_tree(tf_dir, schema)
    assert not problems.unknown, _report(problems.unknown)


def test_every_required_argument_and_block_is_set(tf_dir, schema):
    problems = check_tree(tf_dir, schema)
    assert not problems.missing, _report(problems.missing)


def test_references_name_declared_resources_and_real_attributes(tf_dir, schema):
    problems = check_references(tf_dir, schema)
    assert not problems, _report(problems)


def test_the_checks_see_every_block(tf_dir):
    # Guard against a parser change silently hiding blocks: as many resource/data blocks as the text has.
    blocks = [t for t in top_blocks(tf_dir) if t.kind != "provider"]
    in_text = sum(
        len(re.findall(r'^(?:resource|data) "[^"]+" "[^"]+"', path.read_text(), re.M)) for path in tf_dir.glob("*.tf")
    )
    assert len(blocks) == in_text > 0


# --- the checks themselves catch what they claim to ---------------------------------------------


def _copy(tf_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "terraform"
    shutil.copytree(tf_dir, target, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    return target


def _break(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"break target {old!r} not in {path.name}: update this test"
    path.write_text(text.replace(old, new, 1))


BREAKS = [
    # (what, file, old, new, which list, expected message fragment)
    (
        "misspelled nested argument",
        "compute.tf",
        "    subnetwork = google_compute_subnetwork.pipeline.id\n  }",
        "    subnet_work = google_compute_subnetwork.pipeline.id\n  }",
        "unknown",
        "google_compute_instance.producer.network_interface[0]: unknown argument subnet_work (did you mean subnetwork?)",
    ),
    (
        "missing required argument",
        "network.tf",
        '  name                    = "binance-pipeline"\n  auto_create_subnetworks = false',
        "  auto_create_subnetworks = false",
        "missing",
        "google_compute_network.pipeline: required argument name is not set",
    ),
    (
        "missing required block",
        "compute.tf",
        "  autoscaling_policy {",
        "  autoscaling {",
        "missing",
        "google_compute_region_autoscaler.consumer: required block autoscaling_policy is missing",
    ),
    (
        "argument written as a block",
        "network.tf",
        "  log_config {\n    aggregation_interval",
        "  log_config {\n    metadata_fields {}\n    aggregation_interval",
        "unknown",
        "google_compute_subnetwork.pipeline.log_config: metadata_fields is an argument, not a block",
    ),
    (
        "unknown resource type",
        "pubsub.tf",
        'resource "google_pubsub_subscription" ',
        'resource "google_pubsub_subscriptions" ',
        "unknown",
        "no resource type google_pubsub_subscriptions in the provider (did you mean google_pubsub_subscription?)",
    ),
    (
        "computed-only attribute set",
        "network.tf",
        "  auto_create_subnetworks = false",
        '  auto_create_subnetworks = false\n  self_link               = "x"',
        "unknown",
        "google_compute_network.pipeline: self_link is computed by the provider and cannot be set",
    ),
]


@pytest.mark.parametrize("what,file,old,new,which,message", BREAKS, ids=[b[0] for b in BREAKS])
def test_a_break_in_a_copy_is_reported(tf_dir, schema, tmp_path, what, file, old, new, which, message):
    copy = _copy(tf_dir, tmp_path)
    assert not check_tree(copy, schema).all(), "the unbroken copy must pass"
    _break(copy / file, old, new)
    found = getattr(check_tree(copy, schema), which)
    assert any(message in p for p in found), _report(found)


def test_a_misspelled_reference_in_a_copy_is_reported(tf_dir, schema, tmp_path):
    copy = _copy(tf_dir, tmp_path)
    assert not check_references(copy, schema)
    _break(copy / "main.tf", "data.google_project.this.number}@cloudcomposer", "data.google_project.this.numbr}@cloudcomposer")
    found = check_references(copy, schema)
    assert any("google_project has no attribute numbr (did you mean number?)" in p for p in found), found
    _break(copy / "outputs.tf", "pipeline.config[0].airflow_uri", "pipeline.config[0].airflow_url")
    found = check_references(copy, schema)
    assert any("google_composer_environment.config has no attribute airflow_url (did you mean airflow_uri?)" in p for p in found), found
    _break(copy / "outputs.tf", "google_composer_environment.pipeline.", "google_composer_environment.pipe.")
    found = check_references(copy, schema)
    assert any("no resource google_composer_environment.pipe in terraform/" in p for p in found), found


SNIPPET = '''
resource "google_compute_instance" "a" {
  count        = 2
  for_each     = {}
  depends_on   = []
  provider     = google
  name         = "a"
  machine_type = "e2-small"
  zone         = null
  boot_disk {
    initialize_params {
      image = "cos"
      sizee = 10
    }
  }
  dynamic "network_interface" {
    for_each = ["x"]
    content {
      subnetwork = "s"
      dynamic "access_config" {
        for_each = []
        content {
          nat_ip = "1.2.3.4"
        }
      }
    }
  }
  service_account {
    scopes = ["cloud-platform"]
  }
  service_account {
    scopes = ["cloud-platform"]
  }
  metadata {
    a = "b"
  }
  lifecycle {
    ignore_changes        = [metadata["user-data"], labels, no_such]
    create_before_destroy = true
    prevent_destroyed     = true
  }
}

resource "google_pubsub_topic" "t" {
  dynamic "message_storage_policy" {
    for_each = ["x"]
    content {
      allowed_persistence_regions = ["asia-northeast1"]
    }
  }
  labels = { a = "b" }
}

resource "google_pubsub_subscription" "s" {
  name  = "s"
  topic = "t"
  dynamic "retry_policy" {
    for_each = ["x"]
    content {}
  }
  expiration_policy = { ttl = "" }
}
'''


def test_the_checker_on_a_known_snippet(schema, tmp_path):
    (tmp_path / "x.tf").write_text(SNIPPET)
    problems = check_tree(tmp_path, schema)
    assert sorted(problems.unknown) == sorted(
        [
            "x.tf: google_compute_instance.a.boot_disk.initialize_params: unknown argument sizee (did you mean size?)",
            "x.tf: google_compute_instance.a: block service_account may appear once, found 2",
            "x.tf: google_compute_instance.a: metadata is an argument, not a block: write `metadata = ...`",
            "x.tf: google_compute_instance.a: lifecycle.ignore_changes names unknown attribute no_such",
            "x.tf: google_compute_instance.a: unknown lifecycle argument prevent_destroyed (did you mean prevent_destroy?)",
            "x.tf: google_pubsub_subscription.s: expiration_policy is a block, not an argument: write `expiration_policy { ... }`",
        ]
    ), problems.unknown
    # zone = null does not count as set, but zone is optional; name is the only required one unset
    # for the topic; the dynamic network_interface satisfies the required block.
    assert sorted(problems.missing) == ["x.tf: google_pubsub_topic.t: required argument name is not set"], problems.missing


# --- the derivation maps the provider's names back correctly ------------------------------------


def test_schema_is_the_pinned_package_and_provider(schema):
    assert schema["provider"] == "registry.terraform.io/hashicorp/google"
    setup = (REPO_ROOT / "scripts" / "setup-provider-schema").read_text()
    version = re.search(r'^version="([^"]+)"', setup, re.M).group(1)
    integrity = re.search(r'^integrity="([^"]+)"', setup, re.M).group(1)
    assert schema["package"] == f"@cdktf/provider-google@{version}"
    assert schema["package_integrity"] == integrity
    assert len(schema["resources"]) > 1000 and len(schema["data_sources"]) > 300


def test_schema_has_the_facts_the_provider_documents(schema):
    instance = schema["resources"]["google_compute_instance"]
    # Required arguments and blocks, and the nesting of network_interface.access_config
    # (https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/compute_instance).
    assert instance["attributes"]["machine_type"] == "required"
    assert instance["attributes"]["name"] == "required"
    assert instance["attributes"]["zone"] == "optional"
    assert instance["attributes"]["self_link"] == "computed"
    assert instance["blocks"]["boot_disk"]["required"] and instance["blocks"]["boot_disk"]["max_one"]
    network_interface = instance["blocks"]["network_interface"]
    assert network_interface["required"] and not network_interface["max_one"]
    assert "nat_ip" in network_interface["blocks"]["access_config"]["attributes"]
    assert instance["blocks"]["timeouts"]["attributes"].keys() == {"create", "update", "delete"}
    # Names jsii mangles, mapped back through each property's docs link:
    # detectMd5Hash, buildAttribute (`build` clashes in jsii), systemAttribute.
    assert schema["resources"]["google_storage_bucket_object"]["attributes"]["detect_md5hash"] == "optional"
    assert "build" in schema["resources"]["google_cloudbuild_trigger"]["blocks"]
    assert schema["resources"]["google_dataplex_entry_type"]["attributes"]["system"] == "optional"
    assert "hugepage_size_1g" in (
        schema["resources"]["google_container_node_pool"]["blocks"]["node_config"]["blocks"]["linux_node_config"]
        ["blocks"]["hugepages_config"]["attributes"]
    )
    assert schema["data_sources"]["google_project"]["attributes"]["number"] == "computed"
    assert "default_labels" in schema["provider_config"]["attributes"]
    # A name converted from camelCase (its docs link was missing) is only ever one that needs no
    # conversion (`code`), so no guess can be wrong.
    for entry in schema["names_without_docs_link"]:
        jsii_name, tf_name = entry.rsplit(".", 1)[1].split(" -> ")
        assert jsii_name == tf_name, entry


# --- the derivation on a tiny package of known content (plain and compressed assembly) ----------

_NS = "@cdktf/provider-google"
_DOCS = "https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs"


def _prop(name: str, tf_name: str | None, page: str, type_ref: dict, optional: bool, summary: str = "") -> dict:
    docs = {"summary": summary or f"{tf_name or name}."}
    if tf_name:
        url = f"{_DOCS}/{page}" if page else _DOCS  # the provider's own arguments: .../docs#project
        docs["remarks"] = f"Docs at Terraform Registry: {{@link {url}#{tf_name} X#{tf_name}}}"
    return {"name": name, "type": type_ref, "docs": docs, **({"optional": True} if optional else {})}


def _tiny_package(tmp_path: Path, compressed: bool) -> Path:
    import gzip
    import io
    import json
    import tarfile

    string = {"primitive": "string"}
    page = "resources/foo_bar"
    types = {
        f"{_NS}.fooBar.FooBar": {
            "kind": "class", "assembly": _NS, "name": "FooBar",
            "docs": {"summary": f"Represents a {{@link {_DOCS}/{page} google_foo_bar}}."},
            "initializer": {"parameters": [{"name": "config", "type": {"fqn": f"{_NS}.fooBar.FooBarConfig"}}]},
            "locationInModule": {"filename": "src/foo-bar/index.ts"},
            "properties": [{"name": n} for n in ("tfResourceType", "selfLink", "name", "nameInput", "buildAttribute", "inner")],
        },
        f"{_NS}.fooBar.FooBarConfig": {
            "kind": "interface", "datatype": True, "assembly": _NS, "name": "FooBarConfig",
            "properties": [
                _prop("name", "name", page, string, optional=False),
                _prop("buildAttribute", "build", page, string, optional=True),  # jsii's rename of `build`
                _prop("inner", "inner", page, {"union": {"types": [{"fqn": "cdktf.IResolvable"}, {"collection": {
                    "kind": "array", "elementtype": {"fqn": f"{_NS}.fooBar.FooBarInner"}}}]}}, optional=True,
                    summary="inner block."),
            ],
        },
        f"{_NS}.fooBar.FooBarInner": {
            "kind": "interface", "datatype": True, "assembly": _NS, "name": "FooBarInner",
            "properties": [_prop("code", None, page, string, optional=False)],  # docs link lost
        },
        f"{_NS}.fooBar.FooBarInnerOutputReference": {
            "kind": "class", "assembly": _NS, "name": "FooBarInnerOutputReference",
            "properties": [{"name": "code"}, {"name": "codeInput"}, {"name": "ref"}, {"name": "internalValue"}],
        },
        f"{_NS}.dataGoogleFoo.DataGoogleFoo": {
            "kind": "class", "assembly": _NS, "name": "DataGoogleFoo",
            "docs": {"summary": f"Represents a {{@link {_DOCS}/data-sources/foo google_foo}}."},
            "initializer": {"parameters": [{"name": "config", "type": {"fqn": f"{_NS}.dataGoogleFoo.DataGoogleFooConfig"}}]},
            "locationInModule": {"filename": "src/data-google-foo/index.ts"},
            "properties": [{"name": "number"}],
        },
        f"{_NS}.dataGoogleFoo.DataGoogleFooConfig": {
            "kind": "interface", "datatype": True, "assembly": _NS, "name": "DataGoogleFooConfig", "properties": [],
        },
        f"{_NS}.provider.GoogleProvider": {
            "kind": "class", "assembly": _NS, "name": "GoogleProvider",
            "docs": {"summary": f"Represents a {{@link {_DOCS} google}}."},
            "initializer": {"parameters": [{"name": "config", "type": {"fqn": f"{_NS}.provider.GoogleProviderConfig"}}]},
            "locationInModule": {"filename": "src/provider/index.ts"},
            "properties": [{"name": "project"}, {"name": "projectInput"}],
        },
        f"{_NS}.provider.GoogleProviderConfig": {
            "kind": "interface", "datatype": True, "assembly": _NS, "name": "GoogleProviderConfig",
            "properties": [_prop("project", "project", "", string, optional=True)],  # docs#project
        },
    }
    assembly = json.dumps({"name": _NS, "version": "0.0.1", "types": types}).encode()
    files = {
        "package/package.json": json.dumps(
            {"cdktf": {"provider": {"name": "registry.terraform.io/hashicorp/google", "version": "6.50.0"}}}
        ).encode(),
        "package/lib/foo-bar/index.js": b"class FooBarInnerOutputReference extends cdktf.ComplexObject {\n"
        b"    // ref - computed: true, optional: false, required: false\n}\nexports.FooBarInnerOutputReference = 1;\n"
        b"class FooBar extends cdktf.TerraformResource {\n"
        b"        // self_link - computed: true, optional: false, required: false\n}\n",
        "package/lib/data-google-foo/index-structs/structs0.js": b"class DataGoogleFoo extends cdktf.TerraformDataSource {\n"
        b"    // number - computed: true, optional: false, required: false\n}\n",
    }
    if compressed:
        redirect = {"schema": "jsii/file-redirect", "compression": "gzip", "filename": ".jsii.gz"}
        files["package/.jsii"] = json.dumps(redirect).encode()
        files["package/.jsii.gz"] = gzip.compress(assembly)
    else:
        files["package/.jsii"] = assembly
    tarball = tmp_path / "tiny.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return tarball


@pytest.mark.parametrize("compressed", [False, True], ids=["plain .jsii", ".jsii redirect to .jsii.gz"])
def test_derivation_of_a_tiny_package(tmp_path, compressed):
    tarball = _tiny_package(tmp_path, compressed)
    out = tmp_path / "schema.json"
    built = provider_schema.build(tarball, provider_schema.integrity_of(tarball), out)
    assert provider_schema.load(out) == built
    assert built["provider_version"] == "6.50.0"
    assert built["resources"] == {
        "google_foo_bar": {
            "attributes": {"build": "optional", "name": "required", "self_link": "computed"},
            "blocks": {
                "inner": {
                    "required": False,
                    "max_one": False,
                    "attributes": {"code": "required", "ref": "computed"},
                    "blocks": {},
                }
            },
        }
    }
    assert built["data_sources"] == {"google_foo": {"attributes": {"number": "computed"}, "blocks": {}}}
    assert built["provider_config"] == {"attributes": {"project": "optional"}, "blocks": {}}
    assert built["names_without_docs_link"] == [f"{_NS}.fooBar.FooBarInner.code -> code"]
    with pytest.raises(provider_schema.SchemaError, match="integrity"):
        provider_schema.build(tarball, "sha512-" + "A" * 88, out)
