"""BigQuery: the JSON schemas match the proto and the contract; tables are wired to them."""

from __future__ import annotations

import re

import pytest

import contract
import tfmodel
from tfmodel import block, blocks

# proto scalar type -> BigQuery types it may land as (the contract picks one per column).
PROTO_TO_BQ = {
    "string": {"STRING", "NUMERIC"},
    "int64": {"INT64", "TIMESTAMP"},
    "bool": {"BOOL"},
}
PROTO_LABEL_TO_MODE = {"required": "REQUIRED", "optional": "NULLABLE", "repeated": "REPEATED", "": "NULLABLE"}


def _schema(tf_dir, name):
    return tfmodel.load_schema(tf_dir / "schemas" / name)


@pytest.mark.parametrize("schema_file", sorted(contract.PROTO_TABLES))
def test_table_schema_matches_proto(root, tf_dir, schema_file):
    proto_file, message = contract.PROTO_TABLES[schema_file]
    fields = tfmodel.parse_proto((root / "proto" / "proto" / proto_file).read_text())[message]
    columns = _schema(tf_dir, schema_file)
    assert [c["name"] for c in columns] == [f.name for f in fields], (
        f"{schema_file} columns must be exactly proto {message}'s fields, in order"
    )
    for column, proto_field in zip(columns, fields):
        allowed = PROTO_TO_BQ.get(proto_field.type)
        assert allowed, f"proto type {proto_field.type} of {message}.{proto_field.name} has no BigQuery mapping"
        assert column["type"] in allowed, (
            f"{schema_file}: {column['name']} is {column['type']}, proto {proto_field.type} allows {sorted(allowed)}"
        )
        assert column.get("mode", "NULLABLE") == PROTO_LABEL_TO_MODE[proto_field.label], (
            f"{schema_file}: {column['name']} mode {column.get('mode')} does not match proto label {proto_field.label!r}"
        )


@pytest.mark.parametrize("schema_file", sorted(contract.COLUMNS))
def test_table_schema_matches_contract(tf_dir, schema_file):
    columns = _schema(tf_dir, schema_file)
    actual = [(c["name"], c["type"], c.get("mode", "NULLABLE")) for c in columns]
    assert actual == contract.COLUMNS[schema_file]


@pytest.mark.parametrize("schema_file", sorted(contract.COLUMNS))
def test_every_column_is_documented(tf_dir, schema_file):
    for column in _schema(tf_dir, schema_file):
        assert column.get("description", "").strip(), f"{schema_file}: {column['name']} has no description"


def test_proto_parser_reads_every_declared_field(root):
    # Guards the regex parser itself: it must see as many fields as there are `= N;` declarations.
    for name in ("trade.proto", "gap.proto"):
        text = (root / "proto" / "proto" / name).read_text()
        messages = tfmodel.parse_proto(text)
        declared = len(re.findall(r"^\s*(required|optional|repeated)\s+\w+\s+\w+\s*=\s*\d+\s*;", text, re.M))
        assert sum(len(f) for f in messages.values()) == declared > 0


def _tables(tf):
    """(dataset, table_id) -> body for every google_bigquery_table."""
    out = {}
    datasets = {name: tf.resolve(body["dataset_id"]) for name, body in tf.of_type("google_bigquery_dataset").items()}
    for name, body in tf.of_type("google_bigquery_table").items():
        ref = re.fullmatch(r"\$\{google_bigquery_dataset\.(\w+)\.dataset_id\}", body["dataset_id"])
        dataset = datasets[ref.group(1)] if ref else tf.resolve(body["dataset_id"])
        out[(dataset, tf.resolve(body["table_id"]))] = body
    return out


def test_datasets_exist_in_the_location_variable(tf):
    datasets = tf.of_type("google_bigquery_dataset")
    assert {tf.resolve(b["dataset_id"]) for b in datasets.values()} == contract.DATASETS
    for name, body in datasets.items():
        assert body["location"] == "${var.bigquery_location}", f"dataset {name} must use var.bigquery_location"
        assert body.get("delete_contents_on_destroy", False) is False


@pytest.mark.parametrize("key", sorted(contract.TABLES))
def test_table_reads_its_schema_file_with_partitioning_and_clustering(tf, key):
    schema_file, partition, clustering = contract.TABLES[key]
    tables = _tables(tf)
    assert key in tables, f"no table {key[0]}.{key[1]}"
    body = tables[key]
    assert body["schema"] == f'${{file("${{path.module}}/schemas/{schema_file}")}}'
    if partition:
        tp = block(body, "time_partitioning")
        assert tp and tp["type"] == "DAY" and tp["field"] == partition, f"{key} must be day-partitioned on {partition}"
    if clustering:
        assert body.get("clustering") == clustering
    assert body.get("deletion_protection") in (True, "${var.deletion_protection}")


def test_kline_table_per_symbol(tf):
    klines = tf.resource("google_bigquery_table", "klines")
    assert klines["for_each"] == "${local.kline_tables}"
    assert klines["table_id"] == "klines_${each.key}"
    assert klines["dataset_id"] == "${google_bigquery_dataset.dwh.dataset_id}"
    assert klines["schema"] == '${file("${path.module}/schemas/klines.json")}'
    tp = block(klines, "time_partitioning")
    assert tp and tp["type"] == "DAY" and tp["field"] == contract.KLINES[1]
    # The map is keyed by the lower-case symbol, from the symbols variable.
    assert re.fullmatch(r"\$\{\{for (\w+) in var\.symbols : lower\(\1\) => \1\}\}", tf.locals["kline_tables"])
    assert tf.variables["symbols"]["default"] == contract.SYMBOLS


def test_trades_between_filters_before_it_dedups(tf):
    routine = tf.resource("google_bigquery_routine", "trades_between")
    assert routine["dataset_id"] == "${google_bigquery_dataset.market.dataset_id}"
    assert (routine["routine_id"], routine["routine_type"], routine["language"]) == (
        "trades_between",
        "TABLE_VALUED_FUNCTION",
        "SQL",
    )
    body = re.sub(r"`(?:\$\{var\.project_id\}\.)?([\w.]+)`", r"\1", tf.resolve(routine["definition_body"]))
    assert " ".join(body.split()) == contract.TRADES_BETWEEN_SQL
    arguments = [(a["name"], a["data_type"]) for a in blocks(routine, "arguments")]
    assert arguments == [
        ("start_time", '${jsonencode({typeKind = "TIMESTAMP"})}'),
        ("end_time", '${jsonencode({typeKind = "TIMESTAMP"})}'),
    ]


def test_trades_view_is_the_contract_dedup_query(tf):
    view_body = _tables(tf).get(("market", "trades"))
    assert view_body, "no market.trades view"
    view = block(view_body, "view")
    assert view["use_legacy_sql"] is False
    query = tf.resolve(view["query"])
    # Drop the project qualifier and backticks: the contract names the table dataset.table.
    query = re.sub(r"`(?:\$\{var\.project_id\}\.)?([\w.]+)`", r"\1", query)
    assert " ".join(query.split()) == contract.TRADES_VIEW_SQL
