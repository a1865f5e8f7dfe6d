"""CanaryGuardFunction: the automatic rollback of canaries when the canary error alarm fires.

EventBridge delivers the alarm's change to ALARM; every alias that still sends a share of its
traffic to a canary gets that canary removed (one compare-and-swap each, kept in the alias
history with the alarm's name as the reason). The stable versions keep serving; nothing else moves.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas_core.shared.errors import AliasConflict
from maas_core.shared.registry import Registry

logger = Logger()
metrics = Metrics()

MODEL_BUCKET = os.environ["MODEL_BUCKET"]
ACTOR = "canary-guard"


def end_canaries(registry: Registry, reason: str) -> list[dict[str, Any]]:
    """Remove every canary in the registry; returns what was ended."""
    ended = []
    for name in registry.list_models():
        for alias, canary in registry.list_canaries(name).items():
            for _attempt in range(3):  # someone else may be changing the alias: read again and retry
                try:
                    record = registry.update_alias(name, alias, canary=None, actor=ACTOR, reason=reason)
                    break
                except AliasConflict:
                    continue
            else:
                logger.error("could not end a canary", extra={"model": name, "alias": alias})
                continue
            ended.append({"model": name, "alias": alias, "canary": canary, "version": record.version})
    return ended


@logger.inject_lambda_context
@metrics.log_metrics
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    detail = event.detail
    alarm = str(detail.get("alarmName", "unknown alarm"))
    state = detail.get("state", {}).get("value")
    if state != "ALARM":
        logger.info("alarm not in ALARM: nothing to do", extra={"alarm": alarm, "state": state})
        return {"alarm": alarm, "state": state, "ended": []}
    ended = end_canaries(Registry(MODEL_BUCKET), reason=f"automatic rollback: alarm {alarm} in ALARM")
    metrics.add_metric(name="CanariesEnded", unit=MetricUnit.Count, value=len(ended))
    logger.warning("canaries ended by the canary alarm", extra={"alarm": alarm, "ended": ended})
    return {"alarm": alarm, "state": state, "ended": ended}
