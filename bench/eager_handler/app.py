"""ApiFunction made eager, for the benchmark only: what the handler defers is done at import (INIT).

The same handler (``functions.api.app``), then, still at import, the S3 client, ONNX Runtime's
import with a ``SessionOptions``, and every route's request-validation models; each step's time is
kept in ``EAGER_MS``. The handler goes first so that each step's figure is what it adds on top of it
(onnxruntime's would otherwise include numpy, which the handler imports anyway). Set against the
handler as built, it shows what each lazy choice saves a cold start that does not need it, and what
it costs (or saves) the first prediction.
"""

import time

from eager import onnxruntime_session_options, route_models, s3_client_made, timed

_started = time.perf_counter()
from maas_core.functions.api.app import app, lambda_handler, models  # noqa: E402  (timed)

EAGER_MS = {"handler_import": (time.perf_counter() - _started) * 1000}
EAGER_MS["s3_client_made"] = timed(s3_client_made)
EAGER_MS["onnxruntime"] = timed(onnxruntime_session_options)
EAGER_MS["route_models"] = timed(lambda: route_models(app))

__all__ = ["EAGER_MS", "lambda_handler", "models"]
