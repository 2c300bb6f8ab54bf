"""The hashicorp/google provider schema, derived offline from the npm package @cdktf/provider-google.

`terraform validate` needs the provider binary, which cannot be downloaded here. The prebuilt CDKTF
bindings carry the same schema: the package is generated from the provider's own schema
(`terraform providers schema -json`) and its jsii assembly (`package/.jsii`, JSON) keeps enough of
it to hold our configuration against:

* every resource and data source is a class whose docs summary reads
  "Represents a {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/compute_instance google_compute_instance}"
  (`data-sources/...` for data sources): the Terraform type name and the provider version;
* its constructor takes a `...Config` struct whose properties are the configurable arguments,
  `optional: true` unless required; a property whose type is another struct of the package (alone:
  at most one; in an array: a list or set) is a nested block, and its docs summary reads "x block.";
* jsii names are camelCase and a few are mangled (`build` -> `buildAttribute`, `system` ->
  `systemAttribute`, `get_details` ... -> `fetchhDetails`, `hugepage_size_1g` -> `hugepageSize1G`),
  so the Terraform name is taken from the link every property's docs end with:
  "Docs at Terraform Registry: {@link .../compute_instance#machine_type ComputeInstance#machine_type}"
  (in the summary, the remarks or a custom tag; camelCase is converted back only when that link is
  missing, and only if the conversion round-trips);
* computed-only attributes (not settable, but readable, e.g. `self_link`) are not in the Config
  struct; the generated JavaScript (`package/lib/<resource>/index.js`) marks each of them with a
  comment "// self_link - computed: true, optional: false, required: false" inside the class of
  its level (the resource class, or `<Struct>OutputReference` for a nested block; large resources
  keep those in `lib/<resource>/index-structs/*.js`). Their number is cross-checked against the
  getter-only properties of the same class in the assembly.

Run as a script (by scripts/setup-provider-schema, with the system python3: standard library only):

    python3 provider_schema.py build --tarball PKG.tgz --integrity sha512-... --out schema.json

The output (see `derive`) maps every type to {"attributes": {name: "required" | "optional" |
"computed"}, "blocks": {name: {"required": bool, "max_one": bool, "attributes": ..., "blocks": ...}}}.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import re
import sys
import tarfile
from pathlib import Path
from typing import Any

ASSEMBLY = "@cdktf/provider-google"
PROVIDER_SOURCE = "registry.terraform.io/hashicorp/google"

REPRESENTS = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/hashicorp/google/(?P<version>[0-9.]+)"
    r"/docs(?:/(?P<kind>resources|data-sources)/(?P<slug>\w+))? (?P<type>\w+)\}"
)
DOCS_LINK = re.compile(
    r"Docs at Terraform Registry: \{@link https://registry\.terraform\.io/providers/hashicorp/google/"
    r"(?P<version>[0-9.]+)/docs(?:/(?:resources|data-sources)/\w+)?#(?P<anchor>\w+) \w+#(?P<name>\w+)\}"
)
JS_CLASS = re.compile(r"^class (\w+) extends ")
JS_COMPUTED = re.compile(r"^\s*// ([a-z0-9_]+) - computed: true, optional: false, required: false$")
# Properties every generated class has that are not provider attributes.
CLASS_PLUMBING = {"internalValue", "tfResourceType"}


class SchemaError(Exception):
    """The package does not look the way this module expects: fail loudly rather than check less."""


def snake(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", camel).lower()


def camel(snake_name: str) -> str:
    head, *rest = snake_name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _docs_strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _docs_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _docs_strings(item)


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def read_package(tarball: Path) -> tuple[dict, dict, dict[tuple[str, str], set[str]]]:
    """The assembly, package.json and {(lib dir, JS class): computed-only names} of the package."""
    jsii_files: dict[str, bytes] = {}
    package_json: dict | None = None
    computed: dict[tuple[str, str], set[str]] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if not member.isfile():
                continue
            name = member.name
            if name.startswith("package/.jsii"):
                jsii_files[name[len("package/") :]] = archive.extractfile(member).read()
            elif name == "package/package.json":
                package_json = json.loads(archive.extractfile(member).read())
            elif name.startswith("package/lib/") and name.endswith(".js") and name.count("/") >= 3:
                # lib/<resource>/index.js, and for large resources lib/<resource>/index-structs/*.js
                directory = name.split("/")[2]
                current = None
                for line in archive.extractfile(member).read().decode().splitlines():
                    found = JS_CLASS.match(line)
                    if found:
                        current = found.group(1)
                        continue
                    if line.startswith(("exports.", "function ")):
                        current = None
                        continue
                    found = JS_COMPUTED.match(line)
                    if found:
                        if current is None:
                            raise SchemaError(f"{name}: computed attribute outside a class: {line}")
                        computed.setdefault((directory, current), set()).add(found.group(1))
    if ".jsii" not in jsii_files or package_json is None:
        raise SchemaError(f"{tarball} has no package/.jsii or package/package.json")
    assembly = json.loads(jsii_files[".jsii"])
    # jsii may store the assembly compressed: .jsii is then a redirect to the real file.
    if assembly.get("schema") == "jsii/file-redirect":
        target = assembly["filename"]
        if target not in jsii_files:
            raise SchemaError(f".jsii redirects to {target}, which the package does not contain")
        data = jsii_files[target]
        if assembly.get("compression") == "gzip":
            data = gzip.decompress(data)
        elif assembly.get("compression") not in (None, ""):
            raise SchemaError(f"unknown .jsii compression {assembly.get('compression')!r}")
        assembly = json.loads(data)
    if assembly.get("name") != ASSEMBLY:
        raise SchemaError(f"assembly is {assembly.get('name')!r}, expected {ASSEMBLY}")
    return assembly, package_json, computed


class _Deriver:
    def __init__(self, assembly: dict, computed: dict[tuple[str, str], set[str]], version: str):
        self.types: dict[str, dict] = assembly["types"]
        self.computed = computed
        self.version = version
        self.fallbacks: list[str] = []

    def _struct_of(self, type_ref: dict) -> tuple[str | None, bool]:
        """(struct fqn, is a collection) of a property type, or (None, _) for a plain attribute."""
        if "fqn" in type_ref:
            fqn = type_ref["fqn"]
            target = self.types.get(fqn)
            if target and target.get("datatype"):
                return fqn, False
            return None, False
        if "collection" in type_ref:
            fqn, _ = self._struct_of(type_ref["collection"]["elementtype"])
            return fqn, True
        if "union" in type_ref:
            found = [self._struct_of(t) for t in type_ref["union"]["types"]]
            structs = {f for f, _ in found if f}
            if len(structs) > 1:
                raise SchemaError(f"property type with more than one struct: {type_ref}")
            for fqn, many in found:
                if fqn:
                    return fqn, many
        return None, False

    def tf_name(self, owner: str, prop: dict) -> str:
        links = [m for text in _docs_strings(prop.get("docs", {})) for m in DOCS_LINK.finditer(text)]
        names = {m.group("name") for m in links}
        if len(names) > 1:
            raise SchemaError(f"{owner}.{prop['name']}: docs link to several names {sorted(names)}")
        for link in links:
            if link.group("version") != self.version:
                raise SchemaError(f"{owner}.{prop['name']}: docs of provider {link.group('version')}")
            if link.group("anchor") != link.group("name"):
                raise SchemaError(f"{owner}.{prop['name']}: anchor {link.group('anchor')} != {link.group('name')}")
            return link.group("name")
        guess = snake(prop["name"])
        if camel(guess) != prop["name"]:
            raise SchemaError(f"{owner}.{prop['name']}: no docs link and no reliable snake_case form")
        self.fallbacks.append(f"{owner}.{prop['name']} -> {guess}")
        return guess

    def block(self, struct_fqn: str, js_dir: str, js_class: str, jsii_class: str | None, stack: tuple = ()) -> dict:
        if struct_fqn in stack:
            raise SchemaError(f"recursive block {' -> '.join(stack + (struct_fqn,))}")
        struct = self.types[struct_fqn]
        attributes: dict[str, str] = {}
        blocks: dict[str, dict] = {}
        for prop in struct.get("properties", []):
            name = self.tf_name(struct_fqn, prop)
            if name in attributes or name in blocks:
                raise SchemaError(f"{struct_fqn}: {name} twice")
            nested, many = self._struct_of(prop["type"])
            if nested is None:
                attributes[name] = "optional" if prop.get("optional") else "required"
                continue
            summary = prop.get("docs", {}).get("summary", "")
            if summary != f"{name} block.":
                raise SchemaError(f"{struct_fqn}.{prop['name']}: struct-typed but not documented as a block")
            nested_name = self.types[nested]["name"]
            nested_class = f"{nested}OutputReference"
            body = self.block(
                nested,
                js_dir,
                f"{nested_name}OutputReference",
                nested_class if nested_class in self.types else None,
                stack + (struct_fqn,),
            )
            blocks[name] = {"required": not prop.get("optional"), "max_one": not many, **body}
        computed = self.computed.get((js_dir, js_class), set())
        for name in sorted(computed):
            if name in attributes or name in blocks:
                raise SchemaError(f"{js_dir}/{js_class}: computed-only {name} is also configurable")
            attributes[name] = "computed"
        if jsii_class is not None:
            # Cross-check: the class has one getter-only property per computed-only attribute.
            settable = {p["name"] for p in struct.get("properties", [])}
            getters = {
                p["name"]
                for p in self.types[jsii_class].get("properties", [])
                if not p.get("static")
                and not p["name"].endswith("Input")
                and p["name"] not in settable
                and p["name"] not in CLASS_PLUMBING
            }
            if len(getters) != len(computed):
                raise SchemaError(
                    f"{jsii_class}: {len(getters)} getter-only properties {sorted(getters)} but "
                    f"{len(computed)} computed-only attributes in lib/{js_dir}/ {sorted(computed)}"
                )
        return {"attributes": dict(sorted(attributes.items())), "blocks": dict(sorted(blocks.items()))}


def derive(assembly: dict, package_json: dict, computed: dict[tuple[str, str], set[str]]) -> dict:
    provider = package_json.get("cdktf", {}).get("provider", {})
    if provider.get("name") != PROVIDER_SOURCE:
        raise SchemaError(f"package.json cdktf.provider.name is {provider.get('name')!r}")
    version = provider["version"]
    deriver = _Deriver(assembly, computed, version)
    out: dict[str, Any] = {
        "provider": PROVIDER_SOURCE,
        "provider_version": version,
        "package": f"{assembly['name']}@{assembly['version']}",
        "resources": {},
        "data_sources": {},
    }
    for fqn, cls in sorted(assembly["types"].items()):
        if cls["kind"] != "class" or cls.get("assembly") != ASSEMBLY:
            continue
        found = REPRESENTS.search(cls.get("docs", {}).get("summary", ""))
        if not found:
            continue
        if found.group("version") != version:
            raise SchemaError(f"{fqn} documents provider {found.group('version')}, package.json says {version}")
        config = [p for p in cls["initializer"]["parameters"] if p["name"] == "config"]
        if not config:
            raise SchemaError(f"{fqn} has no config parameter")
        js_dir = Path(cls["locationInModule"]["filename"]).parent.name
        body = deriver.block(config[0]["type"]["fqn"], js_dir, cls["name"], fqn)
        if found.group("kind") is None:
            out["provider_config"] = body
            continue
        section = "resources" if found.group("kind") == "resources" else "data_sources"
        tf_type = found.group("type")
        if tf_type != f"google_{found.group('slug')}":
            raise SchemaError(f"{fqn}: type {tf_type} does not match its docs page {found.group('slug')}")
        if tf_type in out[section]:
            raise SchemaError(f"{tf_type} defined twice in {section}")
        out[section][tf_type] = body
    if not out["resources"] or not out["data_sources"] or "provider_config" not in out:
        raise SchemaError("no resources, data sources or provider configuration found in the assembly")
    out["names_without_docs_link"] = deriver.fallbacks
    return out


def build(tarball: Path, integrity: str, out: Path) -> dict:
    actual = integrity_of(tarball)
    if actual != integrity:
        raise SchemaError(f"{tarball}: integrity {actual}, expected {integrity}")
    assembly, package_json, computed = read_package(tarball)
    schema = derive(assembly, package_json, computed)
    schema["package_integrity"] = integrity
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    tmp.replace(out)
    return schema


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="derive the compact schema JSON from the package tarball")
    cmd.add_argument("--tarball", type=Path, required=True)
    cmd.add_argument("--integrity", required=True, help="npm integrity string (sha512-...) of the tarball")
    cmd.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        schema = build(args.tarball, args.integrity, args.out)
    except SchemaError as err:
        print(f"provider_schema: {err}", file=sys.stderr)
        return 1
    print(
        f"{schema['package']}: {PROVIDER_SOURCE} {schema['provider_version']}, "
        f"{len(schema['resources'])} resources, {len(schema['data_sources'])} data sources, "
        f"{len(schema['names_without_docs_link'])} names without a docs link -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
