"""What our binaries expose on /metrics, read from their Rust sources (producer/src/metrics.rs,
consumer/src/metrics.rs): each `registry.register("name", "help", handle.clone())`, the kind of
that handle (the type it is declared with: Counter, Gauge, Histogram, in a `let` or a struct
field), the registry's prefix, and the label names the file uses (`("symbol", ...)` tuples and
the fields of `#[derive(EncodeLabelSet)]` structs).

The exposition names follow prometheus-client's text encoder: a counter family `x` is written as
samples `x_total`, a gauge as `x`, a histogram as `x_bucket{le=...}`, `x_sum` and `x_count`. In
Managed Service for Prometheus the same samples are `prometheus.googleapis.com/x_total/counter`,
`.../x/gauge` and `.../x/histogram`, queried in PromQL by the sample names.

The parser refuses what it cannot read (a register call it did not match, a handle whose type it
cannot find), so a refactor of metrics.rs fails the tests instead of silently hiding a metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

STRING = r'"(?:[^"\\]|\\.)*"'
REGISTER = re.compile(rf"\.register\(\s*({STRING})\s*,\s*({STRING})\s*,\s*([\w.]+)\.clone\(\)\s*,?\s*\)", re.S)
KINDS = ("histogram", "counter", "gauge")  # checked in this order: HistogramFamily is a histogram


@dataclass(frozen=True)
class Metric:
    family: str  # with the prefix, e.g. producer_trades_published
    kind: str  # counter, gauge, histogram
    help: str

    @property
    def samples(self) -> set[str]:
        """Sample names in the text exposition."""
        if self.kind == "counter":
            return {f"{self.family}_total"}
        if self.kind == "gauge":
            return {self.family}
        return {f"{self.family}_bucket", f"{self.family}_sum", f"{self.family}_count"}

    @property
    def gmp_type(self) -> str:
        """The metric type in Cloud Monitoring (Managed Service for Prometheus)."""
        name = f"{self.family}_total" if self.kind == "counter" else self.family
        return f"prometheus.googleapis.com/{name}/{self.kind}"


@dataclass
class Binary:
    name: str
    source: Path
    prefix: str
    metrics: dict[str, Metric] = field(default_factory=dict)  # by family
    labels: set[str] = field(default_factory=set)
    test_needles: set[str] = field(default_factory=set)  # sample names the Rust unit tests assert

    def sample(self, name: str) -> Metric | None:
        """The family a sample name belongs to."""
        for metric in self.metrics.values():
            if name in metric.samples:
                return metric
        return None


def _kind_of(type_text: str) -> str | None:
    for kind in KINDS:
        if kind.capitalize() in type_text:
            return kind
    return None


def _handle_kind(text: str, handle: str) -> str | None:
    """The kind of `handle` from `let handle[: T] = ...;`, else from a struct field `handle: T`."""
    for found in re.finditer(rf"\blet\s+(?:mut\s+)?{handle}\s*(?::\s*([^=;]+))?=\s*([^;]+);", text):
        declared, value = found.groups()
        kind = _kind_of(declared or "") or _kind_of(value.split("(")[0])
        if kind:
            return kind
    for found in re.finditer(rf"^\s*(?:pub(?:\([^)]*\))?\s+)?{handle}\s*:\s*([^\n]+),\s*$", text, re.M):
        kind = _kind_of(found.group(1))
        if kind:
            return kind
    return None


def parse(name: str, source: Path) -> Binary:
    text = source.read_text()
    code, _, tests = text.partition("#[cfg(test)]")
    prefixes = set(re.findall(r'Registry::with_prefix\(\s*"([a-z_]+)"\s*\)', code))
    assert len(prefixes) == 1, f"{source}: want one Registry::with_prefix(...), found {prefixes}"
    prefix = prefixes.pop()
    binary = Binary(name=name, source=source, prefix=prefix)

    calls = REGISTER.findall(code)
    assert len(calls) == code.count(".register("), (
        f"{source}: {code.count('.register(')} register calls, {len(calls)} understood: update tests/terraform/rustmetrics.py"
    )
    for raw_name, raw_help, handle in calls:
        family = f"{prefix}_{raw_name[1:-1]}"
        kind = _handle_kind(code, handle.split(".")[-1])
        assert kind, f"{source}: cannot tell the kind of {handle} (registered as {family})"
        assert family not in binary.metrics, f"{source}: {family} registered twice"
        binary.metrics[family] = Metric(family=family, kind=kind, help=raw_help[1:-1])

    # The shared build_info gauge (service/src/build_info.rs) registered into this registry.
    if "service::build_info::register(" in code:
        family = f"{prefix}_build_info"
        binary.metrics[family] = Metric(family=family, kind="gauge", help="The running build")
        binary.labels |= {"version", "git_revision"}

    # Label tuples such as ("symbol", s.clone()); the register calls' ("name", "help", ...) aside.
    binary.labels |= set(re.findall(r'\(\s*"([a-z_]+)"\s*,\s*[a-z_]', REGISTER.sub("", code)))
    for body in re.findall(r"#\[derive\([^)]*EncodeLabelSet[^)]*\)\]\s*(?:pub\s+)?struct\s+\w+\s*\{([^}]*)\}", code):
        binary.labels |= set(re.findall(r"(?:pub\s+)?([a-z_][a-z0-9_]*)\s*:", body))
    binary.test_needles = set(re.findall(rf"\b({prefix}_[a-z0-9_]+)", tests))
    return binary


def load(repo_root: Path) -> dict[str, Binary]:
    return {name: parse(name, repo_root / name / "src" / "metrics.rs") for name in ("producer", "consumer")}


def metrics_addr_default(repo_root: Path, crate: str) -> str:
    """`default_value` of the clap argument with `env = "METRICS_ADDR"` in the crate's config.rs."""
    text = (repo_root / crate / "src" / "config.rs").read_text()
    for attribute in re.findall(r"#\[arg\((.*?)\)\]", text, re.S):
        if re.search(r'env\s*=\s*"METRICS_ADDR"', attribute):
            found = re.search(r'default_value\s*=\s*"([^"]*)"', attribute)
            assert found, f"{crate}: METRICS_ADDR has no default_value"
            return found.group(1)
    raise AssertionError(f"{crate}/src/config.rs has no METRICS_ADDR argument")
