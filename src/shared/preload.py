"""Models an execution environment loads during its INIT (``PRELOAD_MODELS``; ARCHITECTURE.md, Serving:
preloading): the production version of each named model (``*``: every model), downloaded, verified
and made a session before a request asks for it.

How it runs depends on how Lambda initialises the environment (``AWS_LAMBDA_INITIALIZATION_TYPE``):

- ``on-demand`` (or unset, as outside Lambda): in a background thread started before the handler's
  heavier imports, so the download overlaps them and the INIT that follows; the cold request that
  arrived meanwhile waits only for what is left of the load (``ModelCache.load``'s lock), not for
  all of it after INIT.
- ``provisioned-concurrency`` and ``snap-start``: the handler waits for the thread before INIT ends,
  since Lambda may freeze the environment (or take its snapshot) as soon as INIT returns, and a frozen
  download would resume on a dead connection.

A model that fails to preload is logged with its error code and loads on its first request as
without preloading; the environment starts either way.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from maas_core.shared.errors import MaasError

if TYPE_CHECKING:
    from maas_core.shared.model_cache import ModelCache

logger = Logger(child=True)

# Initialisations that Lambda may freeze or snapshot as soon as INIT returns.
WAITING_INIT_TYPES = frozenset({"provisioned-concurrency", "snap-start"})
READY_WAIT_S = 1.0


def wanted(setting: str) -> list[str]:
    """The model names of a ``PRELOAD_MODELS`` value (comma-separated; ``*`` alone for every model)."""
    return [name.strip() for name in setting.split(",") if name.strip()]


class Preload:
    """The background load of one environment's ``PRELOAD_MODELS``."""

    def __init__(self, models: ModelCache, setting: str) -> None:
        self.models = models
        self.names = wanted(setting)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> Preload:
        if self.names:
            self._thread = threading.Thread(target=self._run, name="maas-preload", daemon=True)
            self._thread.start()
            self._ready.wait(READY_WAIT_S)
        return self

    def finish_init(self) -> None:
        """At the end of INIT: wait for the loads where Lambda may freeze the environment next. Elsewhere,
        while a load is still underway, import onnxruntime here, where INIT has nothing else to do: the
        session build after the download would otherwise import it (about 0.02 s) while the request waits."""
        if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand") in WAITING_INIT_TYPES:
            self.wait()
        elif self._thread is not None and self._thread.is_alive():
            import onnxruntime  # noqa: F401

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _prepare_download(self) -> list[str]:
        """What the first download needs before its first byte, done while INIT waits (up to READY_WAIT_S):
        s3transfer and its transfer config, the S3 client, the names and the first model's alias. That
        work holds the GIL; run beside the handler's imports, it took 0.22 s instead of 0.15, and BERT-base
        int8's download started 0.33 s after the spawn instead of 0.27 (the ladder's cold start, python3.12).
        The transfer that follows mostly releases the GIL (sockets, sha256, file writes), so it overlaps the
        imports that INIT does next."""
        from maas_core.shared.aws import model_transfer_config

        model_transfer_config()  # imports s3transfer
        registry = self.models.registry  # the S3 client
        names = registry.list_models() if self.names == ["*"] else self.names
        if names:
            with contextlib.suppress(MaasError):  # the load reports it, with the model's name
                self.models.route(names[0])
        return names

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            names = self._prepare_download()
        except MaasError as error:
            logger.warning("models to preload could not be listed", extra={"code": error.code})
            return
        except Exception:  # a bug must not end the thread silently, nor the environment
            logger.exception("models to preload could not be listed")
            return
        finally:
            self._ready.set()
        for name in names:
            try:
                self.models.get(name)
            except MaasError as error:  # the first request for it tries again, and answers the error
                logger.warning("model not preloaded", extra={"model": name, "code": error.code})
            except Exception:  # a bug must not end the thread silently, nor the environment
                logger.exception("model not preloaded", extra={"model": name})
        logger.info(
            "models preloaded",
            extra={"loaded": self.models.loaded(), "seconds": round(time.perf_counter() - started, 3)},
        )
