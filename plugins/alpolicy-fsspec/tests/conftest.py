"""Fixtures: moto's S3 server on loopback (started once), a counting proxy in front of it per test,
and an environment whose credentials and endpoint are the usual AWS variables."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from fsspec_servers import SECRET, S3Proxy

_buckets = itertools.count()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    import moto.server as moto_server  # installed by make install: a missing one fails, never skips
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class S3:
    """One test's bucket behind its own counting proxy; ``env`` is what a user's shell would export."""

    proxy: S3Proxy
    bucket: str
    client: Any
    env: dict[str, str] = field(default_factory=dict)

    def upload(self, folder: Path, prefix: str) -> list[str]:
        keys = []
        for path in sorted(folder.iterdir()):
            if path.is_file():
                key = f"{prefix}/{path.name}"
                self.client.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
                keys.append(key)
        return keys

    def gets(self, key: str | None = None) -> int:
        """Object GETs (not listings), of ``key`` or of any object."""
        if key is not None:
            return self.proxy.count("GET", f"/{self.bucket}/{key}")
        return sum(1 for method, path, _ in self.proxy.requests if method == "GET" and path.count("/") >= 2)

    def listings(self) -> int:
        return self.proxy.count("GET", f"/{self.bucket}", "list-type=2")


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    import boto3
    for name in list(os.environ):
        if name.startswith(("AWS_", "FSSPEC_")):
            monkeypatch.delenv(name)
    env = {"AWS_ACCESS_KEY_ID": "AKIAALPOLICYTESTING", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    client = boto3.client("s3", endpoint_url=moto_url, aws_access_key_id="AKIAALPOLICYTESTING",
                          aws_secret_access_key=SECRET, region_name="us-east-1")
    bucket = f"alpolicy-{os.getpid()}-{next(_buckets)}"
    client.create_bucket(Bucket=bucket)
    with S3Proxy(moto_url) as proxy:
        env["AWS_ENDPOINT_URL"] = proxy.url
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield S3(proxy, bucket, client, env)
