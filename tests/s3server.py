"""A real S3-speaking server (moto in server mode) on loopback, for the storage tests.

Started once per test session, in its own process, on a free port; clients find it through
the standard ``AWS_ENDPOINT_URL`` variable, so subprocesses started by the tests reach it too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key="testing", secret="testing")

    def bucket(self) -> str:
        """A fresh, empty bucket; returns its name."""
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.fs().mkdir(name)
        return name


ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def start() -> S3Server:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the moto S3 server did not start") from None
            time.sleep(0.05)
    os.environ.update(ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    return S3Server(endpoint, proc)
