"""Errors a person can act on (issue 20): one line each, saying what to do, exit code 2."""

from __future__ import annotations

import socket

import pytest

from maas.cli import main


def test_an_s3_endpoint_that_does_not_answer_is_one_line_at_once(monkeypatch, capsys):
    with socket.socket() as closed:  # bound, not listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        assert main(["models", "list"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"maas: the S3 endpoint {endpoint} (AWS_ENDPOINT_URL_S3) does not answer (Connection refused); "
        "start it, or unset AWS_ENDPOINT_URL_S3 to use the embedded S3"
    ]


def test_a_taken_port_is_one_line_before_anything_starts():
    from maas.console import Refused
    from maas.local_api import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Refused) as refused:
            bind(port)
    assert (
        str(refused.value) == f"port {port} is in use on 127.0.0.1; stop what listens there or pick another with --port"
    )
