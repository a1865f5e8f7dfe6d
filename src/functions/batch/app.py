"""BatchFunction: scores files put under batch/in/, announced by S3 through SQS.

Each SQS record carries one S3 event notification. A record whose file cannot be scored is
reported as a partial batch failure, so SQS retries it and, after its retries, moves it to the
dead-letter queue. Whatever stopped it, the reason is logged and written first as the file's failed
summary (a stable code, a short message, and whether the queue delivers it again), so no file, and
no job, is left without a status.
"""

# ruff: noqa: E402 - collection is paused before the imports (shared.model_cache.making_long_lived)
import gc

gc.disable()  # INIT makes only what lives as long as the environment; frozen at its end

import json
import os
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas_core.shared.aws import s3_client, sqs_client
from maas_core.shared.batch import BatchDependencyFailed, failure_reason, score_object, score_part, write_failure
from maas_core.shared.model_cache import ModelCache, long_lived_made

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)

CHUNK_ROWS = int(os.environ["BATCH_CHUNK_ROWS"])
# Files larger than this are cut into parts on line boundaries and fanned out through the queue, so
# that no invocation runs into the Lambda timeout.
PART_BYTES = int(os.environ["BATCH_PART_BYTES"])
QUEUE_URL = os.environ["BATCH_QUEUE_URL"]
# BatchQueue's RedrivePolicy maxReceiveCount in template.yaml (tests/unit/test_batch_failures.py keeps
# them equal): the receive after which a failed message goes to the dead-letter queue.
MAX_RECEIVES = 3
models = ModelCache(
    bucket=os.environ["MODEL_BUCKET"],
    alias_ttl_seconds=float(os.environ["ALIAS_TTL_SECONDS"]),
    optimized_dir=os.environ["OPTIMIZED_MODEL_DIR"],
)


def send_parts(messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), 10):
        batch = messages[start : start + 10]
        response = sqs_client().send_message_batch(
            QueueUrl=QUEUE_URL, Entries=[{"Id": str(i), "MessageBody": json.dumps(m)} for i, m in enumerate(batch)]
        )
        if response.get("Failed"):  # the record fails and comes back; parts already done are skipped
            raise BatchDependencyFailed(f"{len(response['Failed'])} part messages were not queued")


def report_failure(record: SQSRecord, bucket: str, key: str, etag: str, exc: Exception, **context: Any) -> None:
    """Log why the file (or part) failed and write its failed summary before the record is retried or
    parked. A refused file (4xx) fails the same way every time; anything else may pass on a later
    receive, so the summary says which receive this was and whether another follows."""
    reason = failure_reason(exc)
    attempt = int(record.attributes.approximate_receive_count or 1)
    retry: dict[str, Any] = {"retrying": reason.status >= 500 and attempt < MAX_RECEIVES}
    if reason.status >= 500:
        retry.update(attempt=attempt, max_attempts=MAX_RECEIVES)
    log = {"key": key, "code": reason.code, "reason": reason.message, "attempt": attempt, **context}
    if reason is exc:
        logger.error("batch file failed", extra=log)
    else:  # a defect or a raw dependency error: its trace goes to the log, never to the summary
        logger.exception("batch file failed", extra=log)
    try:
        write_failure(s3_client(), bucket, key, etag, reason, retry)
    except Exception:  # S3 itself may be what failed: the record is still retried, the log says why
        logger.exception("the failed summary could not be written", extra={"key": key})


def time_left() -> float:
    """Seconds this invocation has left (Lambda's context; unbounded where a caller passes none)."""
    remaining = getattr(processor.lambda_context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if remaining else float("inf")


@tracer.capture_method
def record_handler(record: SQSRecord) -> list[dict[str, Any]]:
    notification = json.loads(record.body)
    if notification.get("Event") == "s3:TestEvent":  # sent once when the notification is configured
        return []
    if "maas_batch_part" in notification:
        part = notification["maas_batch_part"]
        try:
            summary = score_part(s3_client(), part, models, CHUNK_ROWS, time_left)
        except Exception as exc:
            report_failure(record, part["bucket"], part["key"], part["etag"], exc, part=part["part"])
            raise
        logger.info("batch part scored", extra={k: summary.get(k) for k in ("status", "part", "parts", "rows")})
        return [summary]
    summaries = []
    for entry in notification.get("Records", []):
        bucket = entry["s3"]["bucket"]["name"]
        key = unquote_plus(entry["s3"]["object"]["key"])  # S3 URL-encodes keys in events
        etag = entry["s3"]["object"].get("eTag", "")
        try:
            summary = score_object(
                s3_client(), bucket, key, etag, models, CHUNK_ROWS, PART_BYTES, send_parts, time_left
            )
        except Exception as exc:
            report_failure(record, bucket, key, etag, exc)
            raise
        logger.info("batch file scored", extra={k: summary.get(k) for k in ("input", "version", "rows", "failed")})
        metrics.add_metric(name="BatchRows", unit=MetricUnit.Count, value=summary.get("rows") or 0)
        metrics.add_metric(name="BatchRowErrors", unit=MetricUnit.Count, value=summary.get("failed") or 0)
        summaries.append(summary)
    return summaries


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


long_lived_made()  # the end of INIT: what the imports made is out of the collector's way (shared.model_cache)
