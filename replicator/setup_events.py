"""``replicator setup-events``: the queue, its dead-letter queue and the bucket's notifications.

Idempotent: it creates what is missing, corrects what differs, leaves the
rest alone, and says what it changed.
"""

from __future__ import annotations

import json
from typing import Any

from .clients import Clients
from .config import Config
from .errors import NoSuchQueue
from .s3 import translated


async def _queue(sqs: Any, name: str, changes: list[str]) -> tuple[str, str]:
    """The queue's URL and ARN, creating it if needed."""
    try:
        with translated("queue", "GetQueueUrl"):
            url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
    except NoSuchQueue:
        with translated("queue", "CreateQueue"):
            url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        changes.append(f"created queue {name}")
    with translated("queue", "GetQueueAttributes"):
        attrs = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))
    return url, attrs["Attributes"]["QueueArn"]


async def setup_events(config: Config) -> list[str]:
    """Make the source bucket notify the feed's queue; return what was changed."""
    feed, source = config.feed, config.source
    assert feed.queue is not None, "feed.queue is required"
    changes: list[str] = []
    clients = Clients(pool_size=4)
    try:
        sqs = await clients.client_for(source, "sqs")
        s3 = await clients.client_for(source)
        _, dlq_arn = await _queue(sqs, f"{feed.queue}-dlq", changes)
        url, arn = await _queue(sqs, feed.queue, changes)
        bucket_arn = f"arn:aws:s3:::{source.bucket}"
        wanted = {
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": feed.max_receives}),
            "VisibilityTimeout": str(feed.visibility_timeout),
            "Policy": json.dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "s3-notifications", "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
                "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": bucket_arn}}}]}),
        }
        with translated("queue", "GetQueueAttributes"):
            have = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))
        have = have.get("Attributes", {})
        differ = {k: v for k, v in wanted.items() if _normal(have.get(k)) != _normal(v)}
        if differ:
            with translated("queue", "SetQueueAttributes"):
                await sqs.set_queue_attributes(QueueUrl=url, Attributes=differ)
            changes.append(f"set {', '.join(sorted(differ))} on queue {feed.queue}")
        with translated("source", "GetBucketNotificationConfiguration"):
            current = await s3.get_bucket_notification_configuration(Bucket=source.bucket)
        current = {k: v for k, v in current.items() if k != "ResponseMetadata"}
        ours = {"Id": "replicator", "QueueArn": arn,
                "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
        queues = current.get("QueueConfigurations", [])
        if not any(q.get("QueueArn") == arn and set(ours["Events"]) <= set(q.get("Events", []))
                   for q in queues):
            current["QueueConfigurations"] = [q for q in queues if q.get("Id") != "replicator"] + [ours]
            with translated("source", "PutBucketNotificationConfiguration"):
                await s3.put_bucket_notification_configuration(
                    Bucket=source.bucket, NotificationConfiguration=current)
            changes.append(f"bucket {source.bucket} now notifies queue {feed.queue}")
    finally:
        await clients.close()
    return changes


def _normal(value: str | None) -> Any:
    """Compare JSON attributes by meaning, not by spelling."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value
