"""Plain-Python views of what the deployment files name: the Cargo workspace, the Dockerfile, a
binary's command line (from its `--help`), .dockerignore rules, the environment Terraform gives
each component, and the cloud-init Terraform renders. No container engine and no cloud needed.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Cargo workspace


@dataclass
class Package:
    name: str
    dir: Path
    bins: list[str]
    manifest: dict


@dataclass
class Workspace:
    root: Path
    version: str
    members: list[str]
    packages: dict[str, Package]

    def package_of_bin(self, binary: str) -> Package:
        owners = [p for p in self.packages.values() if binary in p.bins]
        assert len(owners) == 1, f"binary {binary!r} is built by {[p.name for p in owners]} (want exactly one crate)"
        return owners[0]


def load_workspace(root: Path) -> Workspace:
    manifest = tomllib.loads((root / "Cargo.toml").read_text())
    members = manifest["workspace"]["members"]
    packages = {}
    for member in members:
        crate_dir = root / member
        crate = tomllib.loads((crate_dir / "Cargo.toml").read_text())
        name = crate["package"]["name"]
        bins = [b["name"] for b in crate.get("bin", [])]
        if not bins and (crate_dir / "src" / "main.rs").is_file():
            bins = [name]  # cargo's implicit binary
        packages[name] = Package(name=name, dir=crate_dir, bins=bins, manifest=crate)
    return Workspace(root=root, version=manifest["workspace"]["package"]["version"], members=members, packages=packages)


# ---------------------------------------------------------------------------------------------
# Dockerfile


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the (joined) line
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of CMD/ENTRYPOINT, or None for the shell form."""
        text = self.args.strip()
        if text.startswith("["):
            return json.loads(text)
        return None


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise AssertionError(f"the Dockerfile has no stage (target) {name!r}")

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        chain = [self.stage(name)]
        names = {s.name for s in self.stages}
        while chain[-1].base in names:
            chain.append(self.stage(chain[-1].base))
        return chain

    def resolve_base(self, stage: Stage) -> str:
        """The base image with global ARG defaults substituted."""
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1)) or m.group(0), stage.base)


def parse_dockerfile(text: str) -> Dockerfile:
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a line continuation"

    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name=name, base=words[0]))
        elif not stages:
            assert keyword == "ARG", f"line {number}: only ARG may come before the first FROM"
            key, _, default = args.strip().partition("=")
            global_args[key] = default or None
        else:
            stages[-1].instructions.append(Instruction(keyword=keyword, args=args.strip(), line=number))
    return Dockerfile(global_args=global_args, stages=stages)


def labels(stage_chain: list[Stage]) -> dict[str, str]:
    """LABEL key="value" pairs of a stage and the stages below it (nearest wins)."""
    found: dict[str, str] = {}
    for stage in reversed(stage_chain):
        for instruction in stage.all("LABEL"):
            for key, value in re.findall(r'([\w.\-]+)="([^"]*)"', instruction.args):
                found[key] = value
    return found


# ---------------------------------------------------------------------------------------------
# .dockerignore


def dockerignore_rules(text: str) -> list[tuple[bool, str]]:
    """(exclude?, pattern) in file order; `!` marks a re-include."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((not negate, pattern.strip("/")))
    return rules


def _match(pattern: str, path: str) -> bool:
    """Docker's matching: filepath.Match per component, `**` for any number of components; a
    pattern matching a directory excludes what is under it."""
    regex = ""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if part == "**":
            regex += "(?:[^/]+/)*" if i < len(parts) - 1 else ".*"
            continue
        regex += fnmatch.translate(part).replace("(?s:", "(?:").removesuffix("\\Z").replace(".*", "[^/]*")
        if i < len(parts) - 1:
            regex += "/"
    return re.fullmatch(regex + "(?:/.*)?", path) is not None


def excluded(rules: list[tuple[bool, str]], path: str) -> bool:
    """Whether `path` (relative, `/`-separated) is left out of the build context."""
    state = False
    for exclude, pattern in rules:
        if _match(pattern, path):
            state = exclude
    return state


# ---------------------------------------------------------------------------------------------
# A binary's command line, from --help


@dataclass
class Option:
    flag: str  # long flag, e.g. "--metrics-addr"
    env: str | None
    default: str | None


@dataclass
class Cli:
    name: str
    options: dict[str, Option]  # by long flag, the binary's and its subcommands' together
    subcommands: list[str]
    help_text: str
    version_text: str

    def env_vars(self) -> dict[str, Option]:
        return {o.env: o for o in self.options.values() if o.env}


OPTION_START = re.compile(r"^\s{2,}(?:-\w, )?(--[a-z0-9][a-z0-9-]*)")
COMMAND_LINE = re.compile(r"^\s{2}([a-z][a-z0-9-]*)\s{2,}")


def _clean_env() -> dict[str, str]:
    # A variable set in our environment would show as its value in `[env: X=value]`.
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "COLUMNS": "200"}


def _run(path: Path, args: list[str]) -> str:
    result = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=30, env=_clean_env())
    assert result.returncode == 0, f"`{path.name} {' '.join(args)}` exited {result.returncode}: {result.stderr}"
    return result.stdout


def parse_help(text: str) -> tuple[dict[str, Option], list[str]]:
    """Options (with env and default) and subcommand names of one clap `--help` page."""
    options: dict[str, Option] = {}
    commands: list[str] = []
    section = ""
    current: list[str] = []

    def close():
        if current:
            block = " ".join(s.strip() for s in current)
            flag = OPTION_START.match(current[0]).group(1)
            env = re.search(r"\[env: ([A-Z0-9_]+)(?:=[^\]]*)?\]", block)
            default = re.search(r"\[default: ([^\]]*)\]", block)
            options[flag] = Option(flag=flag, env=env.group(1) if env else None, default=default.group(1) if default else None)
            current.clear()

    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Za-z ]*:\s*$", line):
            close()
            section = line.strip().rstrip(":")
            continue
        if section == "Commands":
            found = COMMAND_LINE.match(line)
            if found and found.group(1) != "help":
                commands.append(found.group(1))
            continue
        if OPTION_START.match(line):
            close()
            current.append(line)
        elif current:
            current.append(line)
    close()
    return options, commands


def read_cli(path: Path) -> Cli:
    """`path --help` plus `path <sub> --help` for each subcommand, and `path --version`."""
    text = _run(path, ["--help"])
    options, commands = parse_help(text)
    pages = [text]
    for command in commands:
        page = _run(path, [command, "--help"])
        pages.append(page)
        sub_options, _ = parse_help(page)
        for flag, option in sub_options.items():
            options.setdefault(flag, option)
    return Cli(
        name=path.name,
        options=options,
        subcommands=commands,
        help_text="\n".join(pages),
        version_text=_run(path, ["--version"]).strip(),
    )


def source_default(crate_dir: Path, env: str) -> str | None:
    """`default_value = "..."` of the clap argument with `env = "<env>"` in the crate's source."""
    for path in sorted((crate_dir / "src").rglob("*.rs")):
        for attribute in re.findall(r"#\[arg\((.*?)\)\]", path.read_text(), re.S):
            if re.search(rf'env\s*=\s*"{env}"', attribute):
                found = re.search(r'default_value\s*=\s*"([^"]*)"', attribute)
                return found.group(1) if found else None
    return None


def parse_duration_seconds(text: str) -> float:
    """`20s`, `1m30s`, `500ms`, a bare number of seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(a + b for a, b in parts) == text, f"cannot read the duration {text!r}"
    return sum(float(a) * units[b] for a, b in parts)


# ---------------------------------------------------------------------------------------------
# Terraform: the environment of each component and the rendered cloud-init

PLACEHOLDER_PROJECT = "my-project"


def _tf_value(tf, raw) -> str:
    value = tf.resolve(raw)
    join = re.fullmatch(r'\$\{join\("(.*)", var\.(\w+)\)\}', value)
    if join:
        return join.group(1).join(tf.variables[join.group(2)]["default"])
    return value.replace("${var.project_id}", PLACEHOLDER_PROJECT)


def component_env(tf, component: str) -> tuple[dict[str, str], dict[str, str]]:
    """(common, specific): the shared environment and what `<component>_env` adds or overrides."""
    common = {k: _tf_value(tf, v) for k, v in tf.locals["common_env"].items()}
    expression = tf.locals[f"{component}_env"]
    found = re.fullmatch(r"\$\{merge\(local\.common_env, \{(.*)\}\)\}", expression, re.S)
    assert found, f"local.{component}_env is not merge(local.common_env, {{...}}): {expression}"
    specific = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', found.group(1)))
    return common, specific


def template_call(tf, rtype: str, name: str) -> dict[str, str]:
    """The literal arguments a VM passes to templatefile(...)."""
    user_data = tf.resource(rtype, name)["metadata"]["user-data"]
    return dict(re.findall(r"\b(\w+) = ([^,}]+)", user_data))


def render_template(template: Path, variables: dict, workdir: Path) -> str:
    """Terraform's own templatefile(), through `terraform console` (no provider, no init)."""
    terraform = shutil.which("terraform")
    assert terraform, "terraform is not installed (needed to render the cloud-init template)"

    def hcl(value):
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k} = {hcl(v)}" for k, v in value.items()) + "}"
        if isinstance(value, int):
            return str(value)
        return json.dumps(value)

    expression = f"templatefile({json.dumps(str(template))}, {hcl(variables)})"
    result = subprocess.run(
        [terraform, "console"], input=expression, cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"<<EOT\n(.*)\nEOT", result.stdout, re.S)
    assert match, result.stdout
    return match.group(1)


def unit_exec(unit: str, key: str) -> list[list[str]]:
    """The command lines of `key=` (ExecStart, ExecStop, ...), split like a shell would."""
    return [shlex.split(line.split("=", 1)[1].lstrip("-@+!:")) for line in unit.splitlines() if line.startswith(f"{key}=")]


def unit_value(unit: str, key: str) -> str | None:
    values = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]
    assert len(values) <= 1, f"{key} is set {len(values)} times"
    return values[0] if values else None
