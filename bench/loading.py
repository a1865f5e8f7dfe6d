"""Loading a large ONNX model: peak RSS and time of a cold session build, by how the weights reach onnxruntime.

    .venv/bin/python -m bench.loading [--sizes 25,100,400] [--rounds 3] [--modes path,external,...] [--side 512]

Each load runs in a fresh child process (one process per load, so ``ru_maxrss`` is that load's peak)
on a generated model: a chain of MatMuls with float32 initialisers of 1024 x 1024 (4 MiB each;
``--side 512``: 1 MiB, for sizes under 4 MiB) until the file has the size asked for. Random weights,
size only: nothing is trained. The models are written under a temporary folder and deleted at the
end; nothing large is committed.

- ``path``: ``InferenceSession(path)``, the file on local disk (how the model cache loads).
- ``external``: the same model saved split (``training.weights.save_split``: the graph in
  ``model.onnx``, every weight in ``model.onnx.data`` beside it), ``InferenceSession(path)`` of the
  graph: how the model cache loads a split version.
- ``path_save``: the same, also writing the optimised graph (what the model cache's first load of a version
  did while it kept optimised graphs in ``/tmp``; it no longer does).
- ``bytes``: the file read into one Python ``bytes`` first, then ``InferenceSession(bytes)`` (how the
  cache loaded before: the download held in memory).
- ``ort_bytes``: the model converted once to onnxruntime's ORT format, read into ``bytes`` and loaded
  with ``session.use_ort_model_bytes_directly``. Not ``session.use_ort_model_bytes_for_initializers``:
  through the Python binding (onnxruntime 1.32) the session's weights then point into a buffer the
  binding frees, and it answers garbage (2.7e20 where the model gives -23.3) or crashes.

With ``--download``, the same files are also fetched from moto's S3 server on 127.0.0.1 into a file,
sha256 checked: one streamed GET (read in 8 MiB parts, as AdminFunction checked a version before) and
the registry's ranged parallel GETs hashed as they are written (``Registry.download_model``). This
measures moto, not S3: moto copies the whole object, under a lock, for every ranged GET (``FakeKey.value``),
so here the ranged path costs about one full copy per 8 MiB part (12.7 s against 1.0 s for 400 MiB);
on S3 each connection has its own bandwidth and parallel byte ranges are what AWS recommends.

Printed per size and mode: peak RSS over the child's baseline (onnxruntime and numpy imported), the
session build time, each the median of the rounds with its min and max (the spread of this one run);
then the fits ``rss = a x size + b`` (least squares over every round of the ``path`` and of the
``external`` mode; size is the graph's and the weights' files together) that ``maas_core.shared.sizing``
uses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.stats import MIB, Stat
from maas_core.shared.layout import DATA_FILE

SIDE = 1024  # each initialiser is SIDE x SIDE float32: 4 MiB

CHILD = r"""
import json, sys, time
import numpy, onnxruntime as ort
def status(field):
    # VmHWM is this address space's peak; ru_maxrss would carry the parent's peak across fork and exec.
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024
mode, path, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = status("VmRSS")
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
started = time.perf_counter()
if mode.startswith("path") or mode == "external":
    source = path
    if mode == "path_save":
        opts.optimized_model_filepath = path + ".basic.onnx"
else:
    source = open(path, "rb").read()
    if mode == "ort_bytes":
        opts.add_session_config_entry("session.use_ort_model_bytes_directly", "1")
session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
seconds = time.perf_counter() - started
session.run(None, {"x": numpy.ones((1, side), numpy.float32)})
print(json.dumps({"rss_mib": status("VmHWM") - base, "load_s": seconds}))
"""


def matmul_chain(size_bytes: int, side: int = SIDE) -> bytes:
    """An ONNX model ``x [batch, side] -> y [batch, side]``: MatMuls whose float32 initialisers add up to
    about ``size_bytes`` (at least one). Random weights, size only; the tests use small ones."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    layers = max(1, size_bytes // (side * side * 4))
    rng = np.random.default_rng(0)
    weights, nodes, previous = [], [], "x"
    for i in range(layers):
        # Scaled so that values stay finite through the chain.
        w = (rng.standard_normal((side, side), dtype=np.float32) / side**0.5).astype(np.float32)
        weights.append(numpy_helper.from_array(w, name=f"w{i}"))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [out]))
        previous = out
    graph = helper.make_graph(
        nodes,
        "matmul_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, side])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return bytes(model.SerializeToString())


def to_ort(onnx_path: Path) -> Path:
    import onnxruntime as ort

    target = onnx_path.with_suffix(".ort")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(target)
    opts.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    return target


def load_once(mode: str, path: Path, side: int = SIDE) -> dict[str, float]:
    command = [sys.executable, "-c", CHILD, mode, str(path), str(side)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def download_times(model: Path, rounds: int) -> dict[str, Stat]:
    """Seconds to fetch ``model`` from moto's S3 server into a checked file: one GET, and ranged GETs."""
    import hashlib
    import logging
    import time

    import boto3
    from moto.server import ThreadedMotoServer

    from maas.embedded_s3 import free_port
    from maas_core.shared.manifest import Artifact
    from maas_core.shared.registry import Registry

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - moto's, not a secret
        )
        s3.create_bucket(Bucket="bench")
        data = model.read_bytes()
        s3.put_object(Bucket="bench", Key="model.onnx", Body=data)
        artifact = Artifact(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
        del data
        target = model.with_suffix(".downloaded")

        def one_get() -> None:
            digest = hashlib.sha256()
            body = s3.get_object(Bucket="bench", Key="model.onnx")["Body"]
            with target.open("wb") as sink:
                while chunk := body.read(8 * MIB):
                    digest.update(chunk)
                    sink.write(chunk)
            assert digest.hexdigest() == artifact.sha256

        def ranged() -> None:
            assert Registry("bench", s3)._download_checked("model.onnx", artifact, target)[0] == []

        timed: dict[str, Stat] = {}
        for name, fetch in (("one GET", one_get), ("ranged", ranged)):
            runs = []
            for _ in range(rounds):
                started = time.perf_counter()
                fetch()
                runs.append(time.perf_counter() - started)
            timed[name] = Stat.of(runs)
        target.unlink(missing_ok=True)
        return timed
    finally:
        server.stop()


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = a x + b``."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    a = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return a, my - a * mx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loading", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="25,100,400", help="model sizes in MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="path,external,path_save,bytes,ort_bytes")
    parser.add_argument("--download", action="store_true", help="also time fetching each model from moto's S3")
    parser.add_argument(
        "--side", type=int, default=SIDE, help=f"each weight is side x side float32 (default {SIDE}: 4 MiB; 512: 1 MiB)"
    )
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    points: dict[str, list[tuple[float, float]]] = {"path": [], "external": []}
    print(f"{'size MiB':>9} {'mode':>10} {'peak RSS over baseline, MiB':>34} {'session build, s':>28}")
    with tempfile.TemporaryDirectory(prefix="maas-bench-loading-") as folder:
        for size in (int(s) for s in args.sizes.split(",")):
            model = Path(folder) / f"chain-{size}.onnx"
            model.write_bytes(matmul_chain(size * MIB, side=args.side))
            file_mib = model.stat().st_size / MIB
            sources = {"path": model, "path_save": model, "bytes": model}
            if "ort_bytes" in modes:
                sources["ort_bytes"] = to_ort(model)
            if "external" in modes:
                from training.weights import save_split

                split = Path(folder) / f"chain-{size}-split"
                split.mkdir()
                sources["external"] = save_split(model, split)
            for mode in modes:
                runs = [load_once(mode, sources[mode], args.side) for _ in range(args.rounds)]
                rss = Stat.of(r["rss_mib"] for r in runs)
                seconds = Stat.of(r["load_s"] for r in runs)
                if mode in points:
                    points[mode] += [(file_mib, r["rss_mib"]) for r in runs]
                print(
                    f"{file_mib:9.1f} {mode:>10} {rss.spread('{:.0f}'):>34} {seconds.spread('{:.2f}'):>28}",
                    flush=True,
                )
            if args.download:
                for name, stat in download_times(model, args.rounds).items():
                    print(f"{file_mib:9.1f} {'download':>10} {name:>34} {stat.spread('{:.2f}'):>28}", flush=True)
            for path in {*sources.values(), model.with_name(model.name + ".basic.onnx")}:
                path.unlink(missing_ok=True)
                path.with_name(DATA_FILE).unlink(missing_ok=True)
    for mode, measured in points.items():
        if len({x for x, _ in measured}) > 1:
            a, b = fit(measured)
            print(f"\n{mode} mode, every round: peak RSS over baseline = {a:.3f} x file size + {b:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
