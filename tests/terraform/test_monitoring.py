"""Monitoring: every failure mode that loses or delays data pages someone, and each alert watches
a resource this configuration creates."""

from __future__ import annotations

import re

from tfmodel import block, blocks

# What must page, as (resource type in the filter, resource reference, metric type).
WATCHED = {
    "consumer behind": ("pubsub_subscription", "google_pubsub_subscription.trades_bq", "subscription/oldest_unacked_message_age"),
    "producer silent": ("pubsub_topic", "google_pubsub_topic.trades", "topic/send_request_count"),
    "dead letters": ("pubsub_subscription", "google_pubsub_subscription.dead_letter", "subscription/num_undelivered_messages"),
    "trade ids lost": ("pubsub_topic", "google_pubsub_topic.gaps", "topic/send_request_count"),
    "batch failed": ("cloud_run_job", "google_cloud_run_v2_job.batch", "job/completed_execution_count"),
}


def _conditions(tf):
    """Filter conditions on Google's metrics; the PromQL ones on ours are test_metrics.py's."""
    for name, body in tf.of_type("google_monitoring_alert_policy").items():
        for c in blocks(body, "conditions"):
            if block(c, "condition_prometheus_query_language"):
                continue
            inner = block(c, "condition_threshold") or block(c, "condition_absent")
            assert inner, f"{name}: a condition without threshold, absence or PromQL"
            yield name, body, inner["filter"]


def test_every_data_loss_or_delay_has_an_alert(tf):
    filters = [f for _, _, f in _conditions(tf)]
    for what, (rtype, ref, metric) in WATCHED.items():
        assert any(
            f'resource.type = "{rtype}"' in f and f"${{{ref}.name}}" in f and metric in f for f in filters
        ), f"no alert for {what}: {rtype} {ref} {metric}"


def test_alerts_notify_the_channels_and_say_what_to_do(tf):
    for name, body in tf.of_type("google_monitoring_alert_policy").items():
        assert body["notification_channels"] == "${local.notification_channels}", name
        doc = block(body, "documentation")
        assert doc and len(doc["content"]) > 40, f"{name}: no runbook text"


def test_alert_filters_reference_resources_that_exist(tf):
    for name, _, f in _conditions(tf):
        for rtype, rname in re.findall(r"\$\{(google_\w+)\.(\w+)\.name\}", f):
            assert rname in tf.of_type(rtype), f"{name} watches {rtype}.{rname}, which is not created"
