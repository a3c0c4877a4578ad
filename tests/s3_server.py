"""A real S3 API for the tests: ``moto.server`` in a subprocess on a free local port.

The server enforces credentials (``INITIAL_NO_AUTH_ACTION_COUNT``): the first three requests, which
create an IAM user, its policy and its access key, go unauthenticated; every later one must be signed
with that key, so a wrong key is refused as by a real store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ALLOW_ALL = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self):
        import boto3

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto.server did not start on port {self.port}") from None
                time.sleep(0.1)
        anon = {"endpoint_url": self.endpoint, "region_name": REGION, "aws_access_key_id": "setup",
                "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **anon)
        iam.create_user(UserName="reorder")
        iam.put_user_policy(UserName="reorder", PolicyName="all", PolicyDocument=ALLOW_ALL)
        key = iam.create_access_key(UserName="reorder")["AccessKey"]
        self.key, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=self.key,
                               aws_secret_access_key=self.secret)

    def options(self, **over) -> dict:
        """The ``storage_options:`` that reach this server."""
        return {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret,
                "client_kwargs": {"region_name": REGION}, **over}

    def bucket(self, name: str) -> str:
        self.s3.create_bucket(Bucket=name)
        return name

    def upload(self, files: list[Path], bucket: str, prefix: str) -> list[str]:
        """Put ``files`` under ``s3://bucket/prefix/``; returns their URLs in order."""
        urls = []
        for f in files:
            key = f"{prefix}/{Path(f).name}"
            self.s3.upload_file(str(f), bucket, key)
            urls.append(f"s3://{bucket}/{key}")
        return urls

    def put(self, bucket: str, key: str, data: bytes) -> str:
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
