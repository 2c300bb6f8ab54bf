# Other teams' own subscriptions to the trade and gap topics (docs/trade-topic.md, docs/iam.md).
#
# Creating a subscription needs pubsub.subscriptions.create on the project that will hold it and
# pubsub.topics.attachSubscription on the topic (https://cloud.google.com/pubsub/docs/access-control).
# We grant only the topic half: roles/pubsub.subscriber on the two topics (its other permissions,
# consume and snapshot seek, act on subscriptions and snapshots, not on a topic). Subscribers keep
# their subscriptions in their own project, where they hold the create/consume/delete rights;
# nobody listed here gets anything on the pipeline's own subscriptions or project.
resource "google_pubsub_topic_iam_member" "subscriber_trades" {
  for_each = toset(var.subscribers)

  topic  = google_pubsub_topic.trades.id
  role   = "roles/pubsub.subscriber"
  member = each.value
}

# A subscriber that waits for contiguous trade ids also needs the gap announcements.
resource "google_pubsub_topic_iam_member" "subscriber_gaps" {
  for_each = toset(var.subscribers)

  topic  = google_pubsub_topic.gaps.id
  role   = "roles/pubsub.subscriber"
  member = each.value
}
