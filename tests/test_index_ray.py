"""The Ray build (`rsrag index build ... --ray`) on a real local cluster of two nodes on loopback.

The cluster is two `ray start --block` processes (a head and a second node, one CPU each), each in a
session of its own with its own ports and temp dir, so killing a session (a node dying, or the
teardown) ends exactly the processes of that node, never another Ray on the machine. The encoder is
rs-lite, which every Ray worker rebuilds from the index's encoder spec. Skipped, with the reason, only
when Ray Data is not installed or the cluster cannot start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import rsrag
from index_helpers import assert_consistent, make_cli, make_records
from rsrag.index.build import build_index, build_scene_index

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'rsrag[ray]')")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'rsrag[ray]')")

from rsrag.index.distributed import RayOptions, build_index_ray, build_scene_index_ray  # noqa: E402

N_RECORDS = 36  # 3 colours x 12, in batches of 6: several batches in flight on each node
BATCH = 6
START_TIMEOUT = 90.0
AUTH_MODE = "disabled"  # explicit: with it unset, Ray turns token auth on when ~/.ray holds a token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """The processes of one session (a node started with start_new_session=True: its raylet, agents
    and workers, whatever their process group)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except OSError:  # gone meanwhile
                continue
    return pids


class LocalCluster:
    """A head node and a second node on 127.0.0.1, each a `ray start --block` in its own session."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        # the workers import this checkout's rsrag (the one the test imports)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(rsrag.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": AUTH_MODE}

    def _start(self, args: list[str], log_name: str) -> subprocess.Popen:
        ray_cli = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus=1",
                   "--node-ip-address=127.0.0.1", "--object-store-memory=150000000",
                   f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}"]
        log = open(self.workdir / log_name, "w")
        proc = subprocess.Popen(ray_cli + args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.nodes.append(proc)
        return proc

    def start(self) -> None:
        self._start(["--head", f"--port={self.port}", f"--temp-dir={self.workdir / 'ray'}",
                     "--include-dashboard=false", f"--dashboard-port={_free_port()}",
                     ], "head.log")
        self._wait(1)
        self._start([f"--address={self.address}"], "node2.log")
        self._wait(2)

    def _wait(self, nodes: int) -> None:
        """Until `nodes` nodes are alive, or fail with the nodes' logs (a node process that exits, or
        the time is up)."""
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline and all(p.poll() is None for p in self.nodes):
                try:  # ray.init would block a long while on a GCS that is not listening yet
                    socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                except OSError:
                    time.sleep(0.5)
                    continue
                if not ray.is_initialized():
                    ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
                if sum(1 for n in ray.nodes() if n["Alive"]) >= nodes:
                    return
                time.sleep(0.5)
        except (ConnectionError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = "timed out" if all(p.poll() is None for p in self.nodes) else "a node process exited"
        finally:
            ray.shutdown()
        logs = "\n".join(f.read_text()[-2000:] for f in sorted(self.workdir.glob("*.log")))
        raise RuntimeError(f"the local Ray cluster did not start {nodes} node(s) ({error}):\n{logs}")

    def titles(self, index: int) -> list[str]:
        """The process titles of a node (Ray names a worker after its task or actor, e.g.
        `ray::MapWorker(...)`)."""
        out = []
        for pid in _session_pids(self.nodes[index].pid):
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
            except OSError:
                continue
        return out

    def kill_node(self, index: int) -> None:
        """A node dies: SIGKILL to every process of its session (raylet, agents, workers)."""
        sid = self.nodes[index].pid
        for pid in _session_pids(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.nodes[index].wait(timeout=30)

    def stop(self) -> None:
        """End both nodes: every process of their sessions (a throwaway cluster keeps no state)."""
        for i in range(len(self.nodes)):
            self.kill_node(i)


@pytest.fixture(scope="module")
def cluster():
    if not sys.platform.startswith("linux"):
        pytest.skip("the local two-node cluster is managed through /proc (Linux)")
    workdir = Path(tempfile.mkdtemp(prefix="rsrag-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    local = LocalCluster(workdir)
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = AUTH_MODE  # the driver (this process) as the nodes
    try:
        try:
            local.start()
        except RuntimeError as exc:
            pytest.skip(f"cannot start a local Ray cluster: {exc}")
        yield local
    finally:
        if ray.is_initialized():
            ray.shutdown()
        local.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if auth_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth_mode


def _vectors(lib) -> dict[str, np.ndarray]:
    table = lib.rows(["id", "vector"])
    return dict(zip(table.column("id").to_pylist(), np.asarray(table.column("vector").to_pylist(), np.float32)))


def _assert_same_index(lib, reference) -> None:
    """The same ids, each once, and the same vectors (within float tolerance) as the reference build."""
    assert_consistent(lib)
    got, want = _vectors(lib), _vectors(reference)
    assert sorted(got) == sorted(want)
    assert len(lib) == len(want)
    for rid in want:
        np.testing.assert_allclose(got[rid], want[rid], atol=1e-4)


@pytest.fixture
def images(tmp_path):
    """Synthetic records and the single-process rs-lite index of them (the reference)."""
    records = make_records(tmp_path / "images", n_per_colour=N_RECORDS // 3)
    reference, _ = build_index(records, "single", tmp_path / "indexes", encoder="rs-lite")
    return records, reference


def test_ray_build_on_two_nodes_matches_single_process(cluster, images, tmp_path):
    """`rsrag index build FOLDER --ray ADDRESS` gives the single-process build's records and vectors;
    run again, it embeds nothing."""
    records, reference = images
    runner = CliRunner()
    args = ["index", "build", str(tmp_path / "images"), "--name", "viaray", "--root", str(tmp_path / "indexes"),
            "--encoder", "rs-lite", "--ray", cluster.address, "--ray-batch-size", str(BATCH), "--json"]
    result = runner.invoke(make_cli(), args)
    assert result.exit_code == 0, result.output
    from rsrag.index.library import Library

    lib = Library.open(tmp_path / "indexes", "viaray")
    _assert_same_index(lib, reference)
    again = runner.invoke(make_cli(), args)
    assert again.exit_code == 0, again.output
    assert '"skipped": 36' in again.output and '"added": 0' in again.output


def test_ray_scene_build_matches_single_process(cluster, data_root, tmp_path):
    """A NAIP scene tiled on the driver, its chips read and embedded by the workers: the same chip
    records (ids, footprints) and vectors as the single-process scene build."""
    from rsrag.geo import Tiling

    scene = sorted((data_root / "geo" / "naip").glob("*.tif"))[0]
    tiling = Tiling(size=224)
    reference, want = build_scene_index(scene, "scene1", tmp_path, encoder="rs-lite", tiling=tiling)
    lib, got = build_scene_index_ray(scene, "sceneray", tmp_path, address=cluster.address, encoder="rs-lite",
                                     tiling=tiling, options=RayOptions(batch_size=BATCH))
    assert got.added == want.added > 0 and got.skipped_nodata == want.skipped_nodata and not got.failed
    _assert_same_index(lib, reference)
    cols = ["id", "window", "footprint", "stretch"]
    assert sorted(lib.rows(cols).to_pylist(), key=str) == sorted(reference.rows(cols).to_pylist(), key=str)


def test_ray_build_survives_a_node_killed_mid_build(cluster, images, tmp_path):
    """The second node dies after the first batch is committed: the build still ends with exactly
    the single-process records, none twice, and a re-run adds nothing."""
    records, reference = images
    killed = []
    # Ray Data starts work as soon as one actor is up; here it waits for both, so node 2 has batches
    # of its own in flight when it dies
    context = ray.data.DataContext.get_current()
    wait, context.wait_for_min_actors_s = context.wait_for_min_actors_s, int(START_TIMEOUT)

    def progress(done: int, total: int) -> None:
        if not killed:
            killed.append(done)
            killed.append([t for t in cluster.titles(1) if "MapWorker" in t])  # node 2's encoder actor
            cluster.kill_node(1)

    try:
        lib, report = build_index_ray(records, "killed", tmp_path / "indexes", address=cluster.address,
                                      encoder="rs-lite", options=RayOptions(actors=2, batch_size=BATCH),
                                      chunk_size=BATCH, progress=progress)
    finally:
        context.wait_for_min_actors_s = wait
    assert killed and killed[0] < N_RECORDS  # the node died while batches were still to come
    assert killed[1], "node 2 ran no encoder actor when it was killed"
    assert report.nodes == 2 and report.added == N_RECORDS and not report.failed
    _assert_same_index(lib, reference)
    again, report2 = build_index_ray(records, "killed", tmp_path / "indexes", address=cluster.address)
    assert report2.skipped == N_RECORDS and report2.added == 0
    _assert_same_index(again, reference)


def test_ray_build_without_a_cluster_says_so(tmp_path):
    """`--ray` at an address nobody listens on fails at once with one clear line (exit status 2),
    instead of Ray's minutes of retries."""
    make_records(tmp_path / "images", n_per_colour=1)
    result = CliRunner().invoke(make_cli(), [
        "index", "build", str(tmp_path / "images"), "--name", "noray", "--root", str(tmp_path / "indexes"),
        "--encoder", "test-hash", "--ray", f"127.0.0.1:{_free_port()}"])
    assert result.exit_code == 2, result.output
    assert "no Ray cluster at 127.0.0.1:" in result.output
