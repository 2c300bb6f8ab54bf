"""Service accounts and IAM: one account per component, used, least privilege, no keys."""

from __future__ import annotations

import re

import contract
from tfmodel import block, blocks

# Project-level grants that have no resource-level form; each one is justified in iam.tf (and
# proved against the calls that need it by test_iam_proof.py). Custom roles as custom:<role_id>.
PROJECT_LEVEL_ALLOWED = {
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/bigquery.jobUser",
    "roles/composer.worker",
    "custom:binancePipelineRunOperationsReader",
}


def _walk(value, path=""):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _walk(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _walk(inner, f"{path}[{i}]")
    else:
        yield path, value


def _attachments(tf):
    """Service-account references a workload actually runs as."""
    refs = []
    for rtype in ("google_compute_instance", "google_compute_instance_template"):
        for body in tf.of_type(rtype).values():
            refs += [sa.get("email") for sa in blocks(body, "service_account")]
    for body in tf.of_type("google_cloud_run_v2_job").values():
        inner = block(block(body, "template") or {}, "template") or {}
        refs.append(inner.get("service_account"))
    for body in tf.of_type("google_composer_environment").values():
        node = block(block(body, "config") or {}, "node_config") or {}
        refs.append(node.get("service_account"))
    return [r for r in refs if r]


def test_one_service_account_per_component(tf):
    accounts = tf.of_type("google_service_account")
    assert set(accounts) == {"producer", "consumer", "batch", "composer"}
    ids = [b["account_id"] for b in accounts.values()]
    assert len(set(ids)) == len(ids)


def test_every_service_account_is_used_by_a_workload_and_granted_something(tf):
    attached = _attachments(tf)
    text = tf.all_text()
    for name in tf.of_type("google_service_account"):
        ref = f"${{google_service_account.{name}.email}}"
        assert ref in attached, f"service account {name} is created but no VM, job or environment runs as it"
        granted = [
            body
            for rtype, _, body in tf.iter_resources()
            if rtype.endswith("_iam_member") and f"google_service_account.{name}.email" in str(body.get("member", ""))
        ]
        # for_each maps of accounts (e.g. local.component_accounts) count too.
        assert granted or re.search(rf"{name}\s*=\s*google_service_account\.{name}\.email", text), (
            f"service account {name} has no role at all"
        )


def test_workloads_never_run_as_the_default_compute_account(tf):
    for ref in _attachments(tf):
        assert ref.startswith("${google_service_account."), f"workload runs as {ref}, not one of ours"


def _grants_primitive(value: str) -> str | None:
    for role in contract.PRIMITIVE_ROLES:
        if re.search(rf"(?<![\w/.]){re.escape(role)}(?![\w.])", value):
            return role
    return None


def test_no_primitive_roles(tf):
    # Any string anywhere (role, roles lists, for_each maps, locals) naming a primitive role fails.
    for rtype, name, body in tf.iter_resources():
        for path, value in _walk(body):
            if isinstance(value, str) and (role := _grants_primitive(value)):
                raise AssertionError(f"{rtype}.{name}{path} grants primitive role {role}")
    for path, value in _walk(tf.locals):
        if isinstance(value, str) and (role := _grants_primitive(value)):
            raise AssertionError(f"local{path} holds primitive role {role}")


def test_no_service_account_keys_and_no_authoritative_project_policy(tf):
    kinds = {rtype for rtype, _, _ in tf.iter_resources()}
    assert "google_service_account_key" not in kinds, "workloads use metadata-server credentials, never keys"
    # Authoritative project bindings would strip grants made outside this configuration.
    assert not kinds & {"google_project_iam_policy", "google_project_iam_binding"}


def _custom(tf, role: str) -> str:
    """`${google_project_iam_custom_role.X.name}` as custom:<role_id>; other roles unchanged."""
    m = re.fullmatch(r"\$\{google_project_iam_custom_role\.(\w+)\.(name|id)\}", role)
    return f"custom:{tf.resource('google_project_iam_custom_role', m.group(1))['role_id']}" if m else role


def test_project_level_roles_are_only_those_without_a_resource_level_form(tf):
    for name, body in tf.of_type("google_project_iam_member").items():
        role = _custom(tf, body["role"])
        if role.startswith("${each.value"):
            roles = set()
            for _, leaf in _walk(tf.locals):
                if isinstance(leaf, str) and leaf.startswith("roles/"):
                    roles.add(leaf)
        else:
            roles = {role}
        extra = roles - PROJECT_LEVEL_ALLOWED
        assert not extra, f"google_project_iam_member.{name} grants {extra} at project level: bind it on the resource"


def test_producer_may_only_publish(tf):
    producer = "${google_service_account.producer.email}"
    roles = set()
    for rtype, name, body in tf.iter_resources():
        if rtype.endswith("_iam_member") and producer in str(body.get("member", "")):
            roles.add((rtype, body["role"]))
    assert ("google_pubsub_topic_iam_member", "roles/pubsub.publisher") in roles
    assert all(
        rtype in {"google_pubsub_topic_iam_member", "google_artifact_registry_repository_iam_member"} for rtype, _ in roles
    ), f"producer has grants beyond publishing and pulling its image: {roles}"


def _grants(tf, account: str):
    ref = f"${{google_service_account.{account}.email}}"
    for rtype, name, body in tf.iter_resources():
        if rtype.endswith("_iam_member") and ref in str(body.get("member", "")):
            yield rtype, name, body


def test_consumer_writes_its_two_tables_and_nothing_dataset_wide(tf):
    grants = list(_grants(tf, "consumer"))
    assert not [n for t, n, _ in grants if t == "google_bigquery_dataset_iam_member"], "the consumer must not hold a dataset-wide role"
    tables = [b for t, _, b in grants if t == "google_bigquery_table_iam_member"]
    assert len(tables) == 1 and tables[0]["role"] == "roles/bigquery.dataEditor"
    assert sorted(tables[0]["for_each"].values()) == [
        "${google_bigquery_table.gaps.table_id}",
        "${google_bigquery_table.trades_raw.table_id}",
    ]


def test_composer_may_run_the_batch_job_with_overrides_and_nothing_more_on_it(tf):
    jobs = [b for t, _, b in _grants(tf, "composer") if t == "google_cloud_run_v2_job_iam_member"]
    assert len(jobs) == 1 and jobs[0]["name"] == "${google_cloud_run_v2_job.batch.name}"
    role = _custom(tf, jobs[0]["role"])
    assert role.startswith("custom:"), "run.invoker lacks run.jobs.runWithOverrides; run.developer can also delete the job"
    perms = next(b["permissions"] for b in tf.of_type("google_project_iam_custom_role").values() if f"custom:{b['role_id']}" == role)
    assert sorted(perms) == ["run.jobs.get", "run.jobs.run", "run.jobs.runWithOverrides"]
    roles = {_custom(tf, b["role"]) for _, _, b in _grants(tf, "composer")}
    assert not {"roles/run.invoker", "roles/run.viewer", "roles/run.developer"} & roles, roles
    assert not [r for r in roles if r.startswith("roles/bigquery.")], "the DAG runs no BigQuery operator: Composer needs no BigQuery role"
