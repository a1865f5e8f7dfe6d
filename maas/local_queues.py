"""SQS on the embedded moto server: the template's queues, S3 notifications into them, and pollers
that hand messages to local Lambda containers as the SQS event source mapping would.

A poller receives up to the event's BatchSize messages, invokes the function with the SQS event,
deletes the messages it succeeded on (ReportBatchItemFailures), and leaves the rest to reappear
after the visibility timeout; moto's redrive moves a message to the dead-letter queue after
maxReceiveCount receives, as SQS does. Locally a failed message is made visible again after one
second instead of the visibility timeout, so retries and the dead-letter queue are quick to watch.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote_plus

from maas.embedded_s3 import LOCAL_REGION
from maas.lambda_runtime import FunctionError, LocalFunction
from maas.template import Template

LOCAL_ACCOUNT = "123456789012"
RETRY_AFTER_S = 1
# Short polls with this wait between empty ones, not SQS long polls: a poller stopping waits for its
# poll, and a stack stops within this instead of a long poll's second.
IDLE_WAIT_S = 0.1


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{name}"


def setup(template: Template, sqs: Any, s3: Any, function_timeout: int) -> dict[str, str]:
    """Create the template's queues (by logical id) and bucket notifications; return queue URLs."""
    specs = template.queues()
    urls: dict[str, str] = {}
    for name in sorted(specs, key=lambda n: specs[n]["dead_letter"] is not None):  # dead-letter queues first
        spec = specs[name]
        attributes = {"VisibilityTimeout": str(min(spec["visibility_timeout"], function_timeout + 5))}
        if spec["dead_letter"]:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": queue_arn(spec["dead_letter"]), "maxReceiveCount": spec["max_receive_count"]}
            )
        urls[name] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    for note in template.bucket_notifications():
        rules = [{"Name": "prefix", "Value": note["prefix"]}] if note["prefix"] else []
        by_bucket.setdefault(note["bucket"], []).append(
            {"QueueArn": queue_arn(note["queue"]), "Events": note["events"], "Filter": {"Key": {"FilterRules": rules}}}
        )
    for bucket, configs in by_bucket.items():
        current = s3.get_bucket_notification_configuration(Bucket=bucket).get("QueueConfigurations", [])
        if [(c["QueueArn"], c["Events"]) for c in current] != [(c["QueueArn"], c["Events"]) for c in configs]:
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configs}
            )
    return urls


def missing_queues(template: Template, sqs: Any) -> set[str]:
    """The template's queues the server does not hold yet: all of them on a freshly started server."""
    held = {url.rsplit("/", 1)[-1] for url in sqs.list_queues().get("QueueUrls", [])}
    return set(template.queues()) - held


def s3_event(bucket: str, key: str, size: int, etag: str) -> dict[str, Any]:
    """The notification S3 sends for a new object (moto's server sends the same shape)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": LOCAL_REGION,
                "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "maas-local-reannounce",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key), "size": size, "eTag": etag.strip('"')},
                },
            }
        ]
    }


def _client_errors() -> set[str]:
    """Error codes of refusals (4xx): a file refused once is refused again, so is not re-announced."""
    import maas_core.shared.batch  # noqa: F401 - defines the batch file errors, subclasses of MaasError
    from maas_core.shared.errors import MaasError

    found, todo = set(), [MaasError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.status < 500:
            found.add(cls.code)
    return found


def unfinished(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Objects under ``prefix`` that the batch function has not finished: no summary, or a failed one
    for a dependency failure (5xx, worth another try); a succeeded file or a refused one (4xx) is done."""
    from maas_core.shared.layout import failure_prefix

    refusals = _client_errors()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            try:
                body = s3.get_object(Bucket=bucket, Key=failure_prefix(obj["Key"], obj["ETag"]) + "summary.json")
                summary = json.loads(body["Body"].read())
            except s3.exceptions.NoSuchKey:
                yield obj
                continue
            if summary.get("status") != "succeeded" and summary.get("code") not in refusals:
                yield obj


def reannounce(template: Template, sqs: Any, s3: Any, urls: dict[str, str], queues: set[str], log: IO[str]) -> int:
    """Announce again, to these (new, empty) queues, every file their bucket notification covers that
    was not finished: on a fresh server the messages of the one before are gone, as S3 keeps the
    files and SQS would have kept the messages. Returns the number of files re-announced."""
    count = 0
    for note in template.bucket_notifications():
        if note["queue"] not in queues or not any(e.startswith("s3:ObjectCreated") for e in note["events"]):
            continue
        for obj in unfinished(s3, note["bucket"], note["prefix"]):
            event = s3_event(note["bucket"], obj["Key"], obj["Size"], obj["ETag"])
            sqs.send_message(QueueUrl=urls[note["queue"]], MessageBody=json.dumps(event))
            log.write(
                f"[sqs] re-announced s3://{note['bucket']}/{obj['Key']} to {note['queue']}: not finished before\n"
            )
            count += 1
    log.flush()
    return count


def sqs_event(messages: list[dict[str, Any]], queue: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn(queue),
                "awsRegion": LOCAL_REGION,
            }
            for m in messages
        ]
    }


class Poller:
    def __init__(self, sqs: Any, queue: str, url: str, batch_size: int, function: LocalFunction) -> None:
        self.sqs, self.queue, self.url, self.batch_size, self.function = sqs, queue, url, batch_size, function
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"poll-{queue}")

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if not self.poll_once():
                    self.stop_event.wait(IDLE_WAIT_S)
            except Exception as exc:  # a poller must outlive one bad round, as the real one does
                sys.stderr.write(f"[sqs] {self.queue}: {exc.__class__.__name__}: {exc}\n")
                self.stop_event.wait(1)

    def poll_once(self) -> int:
        messages = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=min(self.batch_size, 10), WaitTimeSeconds=0, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return 0
        try:
            result = self.function.invoke(sqs_event(messages, self.queue))
            failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        except (FunctionError, OSError) as exc:
            sys.stderr.write(f"[sqs] {self.function.spec.logical_id} failed: {exc}\n")
            failed = {m["MessageId"] for m in messages}  # the whole batch comes back after the timeout
        for message in messages:
            if message["MessageId"] in failed:  # retry soon, not after the full visibility timeout
                self.sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=RETRY_AFTER_S
                )
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)

    def start(self) -> Poller:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def pollers(functions: list[LocalFunction], sqs: Any, urls: dict[str, str]) -> Iterator[list[Poller]]:
    """One poller per SQS event source of the given functions (queues made by ``setup``)."""
    running = [Poller(sqs, queue, urls[queue], size, fn).start() for fn in functions for queue, size in fn.spec.queues]
    try:
        yield running
    finally:
        for poller in running:
            poller.stop()
