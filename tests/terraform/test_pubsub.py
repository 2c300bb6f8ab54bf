"""Pub/Sub: schemas are the proto files themselves; the subscriptions are set up for the consumer."""

from __future__ import annotations

import re

import contract
from tfmodel import block


def _by_name(tf, rtype):
    return {tf.resolve(body["name"]): (name, body) for name, body in tf.of_type(rtype).items()}


def test_schemas_read_the_proto_files_in_place(tf, tf_dir):
    for resource, proto in (("trade", "trade.proto"), ("gap", "gap.proto")):
        body = tf.resource("google_pubsub_schema", resource)
        assert body["type"] == "PROTOCOL_BUFFER"
        assert body["definition"] == f'${{file("${{path.module}}/../proto/proto/{proto}")}}'
        path = tf_dir / ".." / "proto" / "proto" / proto
        assert path.is_file(), f"{path} does not exist"


def test_topics_and_subscriptions_of_the_contract_exist(tf):
    assert set(_by_name(tf, "google_pubsub_topic")) >= contract.TOPICS
    assert set(_by_name(tf, "google_pubsub_subscription")) >= contract.SUBSCRIPTIONS


def test_typed_topics_use_binary_proto_schemas(tf):
    topics = _by_name(tf, "google_pubsub_topic")
    for topic, schema in (("binance-trades", "trade"), ("binance-gaps", "gap")):
        settings = block(topics[topic][1], "schema_settings")
        assert settings, f"{topic} has no schema"
        assert settings["schema"] == f"${{google_pubsub_schema.{schema}.id}}"
        assert settings["encoding"] == "BINARY"
    # Dead letters must accept anything, including payloads that are not a valid Trade.
    assert block(topics["binance-trades-dead-letter"][1], "schema_settings") is None


def test_consumer_subscriptions_keep_good_trades_until_bigquery_takes_them(tf):
    """No dead_letter_policy: Pub/Sub counts nacks, lapsed leases and restarts as delivery
    attempts, so a long BigQuery outage would move good trades out. The consumer dead-letters
    poison itself. Unacked trades are kept 7 days: how long BigQuery may refuse appends before
    trades are lost from Pub/Sub."""
    subs = _by_name(tf, "google_pubsub_subscription")
    topics = _by_name(tf, "google_pubsub_topic")
    for sub, topic in (("binance-trades-bq", "binance-trades"), ("binance-gaps-bq", "binance-gaps")):
        body = subs[sub][1]
        assert body["topic"] == f"${{google_pubsub_topic.{topics[topic][0]}.id}}"
        assert block(body, "dead_letter_policy") is None, (
            f"{sub} has a dead_letter_policy: a long outage would dead-letter good trades"
        )
        assert block(body, "retry_policy"), f"{sub} has no retry_policy"
        assert body.get("ack_deadline_seconds"), f"{sub} has no ack deadline"
        assert body.get("message_retention_duration") == "604800s"
        assert body.get("retain_acked_messages") is False
        expiration = block(body, "expiration_policy")
        assert expiration is not None and expiration["ttl"] == "", f"{sub} must never expire"
    trades = subs["binance-trades-bq"][1]
    assert trades.get("enable_message_ordering") is False, "the consumer needs no order; ordered delivery blocks a symbol behind one message"
    assert "enable_exactly_once_delivery" in trades


def test_dead_letter_topic_has_its_own_subscription(tf):
    topics = _by_name(tf, "google_pubsub_topic")
    resource = topics["binance-trades-dead-letter"][0]
    readers = [
        body
        for body in tf.of_type("google_pubsub_subscription").values()
        if body["topic"] == f"${{google_pubsub_topic.{resource}.id}}"
    ]
    assert readers, "nothing subscribes to the dead-letter topic: dead letters would be lost"
    assert block(readers[0], "dead_letter_policy") is None


def test_pubsub_service_agent_can_forward_dead_letters_wherever_a_policy_asks(tf):
    """Only a subscription with a dead_letter_policy needs the Pub/Sub service agent (publisher on
    its dead-letter topic, subscriber on the subscription); the consumer's have none."""
    agent_ref = "${local.pubsub_service_agent}"
    publishers = {
        b["topic"]
        for b in tf.of_type("google_pubsub_topic_iam_member").values()
        if b["member"] == agent_ref and b["role"] == "roles/pubsub.publisher"
    }
    subscribed = {
        b["subscription"]
        for b in tf.of_type("google_pubsub_subscription_iam_member").values()
        if b["member"] == agent_ref and b["role"] == "roles/pubsub.subscriber"
    }
    for name, body in tf.of_type("google_pubsub_subscription").items():
        policy = block(body, "dead_letter_policy")
        if policy:
            assert re.fullmatch(
                r"serviceAccount:service-\$\{data\.google_project\.this\.number\}@gcp-sa-pubsub\.iam\.gserviceaccount\.com",
                tf.locals.get("pubsub_service_agent", ""),
            )
            assert policy["dead_letter_topic"] in publishers, (
                f"the Pub/Sub service agent needs roles/pubsub.publisher on {name}'s dead-letter topic"
            )
            assert f"${{google_pubsub_subscription.{name}.id}}" in subscribed, (
                f"the Pub/Sub service agent needs roles/pubsub.subscriber on {name} to dead-letter from it"
            )
