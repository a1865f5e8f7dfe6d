"""Lambda SnapStart (python3.12+): what goes into the snapshot, and what each restored copy renews.

Before the snapshot: the production versions of the models named in ``PRELOAD_MODELS`` are loaded
(``shared.preload``: INIT waits for them in a ``snap-start`` initialisation), so a restored
environment answers its first request without touching S3. After each restore: what must not be
shared between copies of the snapshot is made again — AWS clients (their connections and
credentials), random state (canary picks without a request id), the container id — and aliases are
re-checked on the next request, since the snapshot may be older than the last promote.

Outside a SnapStart runtime (``snapshot_restore_py`` absent), nothing is registered.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from maas_core.shared.aws import s3_client, sqs_client


def renew_shared_state() -> None:
    """Fresh clients and entropy for this copy of the snapshot."""
    s3_client.cache_clear()
    sqs_client.cache_clear()
    random.seed(os.urandom(32))


def register(before: Callable[[], Any], after: Callable[[], Any]) -> bool:
    """Register the hooks with the runtime; False where this is not a SnapStart runtime."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before)
    register_after_restore(after)
    return True
