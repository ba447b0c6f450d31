"""Index build throughput on Ray: 1 worker vs 2 workers vs the plain single-process build.

    python bench/ray_build.py [--n-images 300] [--batch-size 16] [--encoder rs-lite] [--json]

Builds the same index three times from the first N UCM images (real 256 px JPEGs), each into a fresh
temporary folder: `single` is `build_index` (Library.add: decode threads + the encoder in one process),
`ray-1` and `ray-2` are `build_index_ray` on a local Ray node with 2 CPUs and 1 or 2 encoder actors
(one CPU and one ONNX thread each; Ray Data waits for all of them before the first batch). Reported per run: end-to-end images/s (whole call: connecting,
starting the actors, reading, embedding, committing) and steady images/s (from the first committed
batch to the last, i.e. without actor start-up). Efficiency = rate with 2 workers / (2 x rate with 1
worker), on the steady rates and on the end-to-end ones; 1.0 is perfect scaling. The Ray builds are
checked to hold the single-process build's ids and vectors. Writes `results_dir()/bench_ray_build.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from rsrag.config import results_dir  # noqa: E402
from rsrag.data import load_dataset  # noqa: E402
from rsrag.index.build import build_index  # noqa: E402
from rsrag.index.distributed import RayOptions, build_index_ray  # noqa: E402


class Clock:
    """A progress callback that remembers when each batch was committed."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.marks.append((time.perf_counter(), done))

    def steady_rate(self) -> float | None:
        """Images/s from the first progress mark to the last (None with fewer than two)."""
        if len(self.marks) < 2:
            return None
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def vectors(lib) -> dict[str, np.ndarray]:
    table = lib.rows(["id", "vector"])
    return dict(zip(table.column("id").to_pylist(), np.asarray(table.column("vector").to_pylist(), np.float32)))


def run(name: str, build, n: int) -> tuple[dict, dict[str, np.ndarray]]:
    clock = Clock()
    start = time.perf_counter()
    lib, report = build(clock)
    seconds = time.perf_counter() - start
    assert report.added == n, f"{name}: added {report.added} of {n}"
    steady = clock.steady_rate()
    return ({"run": name, "images": n, "seconds": round(seconds, 2), "e2e_per_s": round(n / seconds, 2),
             "steady_per_s": round(steady, 2) if steady else None,
             "workers": getattr(report, "actors", None) or 1}, vectors(lib))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16, help="images per Ray task")
    parser.add_argument("--encoder", default="rs-lite")
    parser.add_argument("--json", action="store_true", help="print the JSON result to stdout")
    parser.add_argument("--output", type=Path, default=None, help="default: results dir / bench_ray_build.json")
    args = parser.parse_args()

    import ray
    import ray.data

    records = load_dataset("ucm")[: args.n_images]
    n = len(records)
    rows, reference = [], None
    with tempfile.TemporaryDirectory(prefix="rsrag-bench-ray-") as tmp:
        row, reference = run("single", lambda p: build_index(records, "single", tmp, encoder=args.encoder,
                                                              progress=p), n)
        rows.append(row)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local node: no token written to ~/.ray
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        ray.data.DataContext.get_current().wait_for_min_actors_s = 600  # every actor up before the first batch
        try:
            for actors in (1, 2):
                options = RayOptions(actors=actors, batch_size=args.batch_size)
                row, got = run(f"ray-{actors}", lambda p: build_index_ray(
                    records, f"ray{actors}", tmp, address=None, encoder=args.encoder, options=options,
                    progress=p), n)
                row["max_abs_diff_vs_single"] = float(max(np.abs(got[i] - reference[i]).max() for i in reference))
                assert sorted(got) == sorted(reference), "the Ray build holds other ids"
                rows.append(row)
        finally:
            ray.shutdown()

    by = {r["run"]: r for r in rows}

    def efficiency(key: str) -> float | None:
        one, two = by["ray-1"][key], by["ray-2"][key]
        return round(two / (2 * one), 3) if one and two else None

    result = {
        "n_images": n, "encoder": args.encoder, "batch_size": args.batch_size, "rows": rows,
        "efficiency_steady": efficiency("steady_per_s"), "efficiency_e2e": efficiency("e2e_per_s"),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "ray": ray.__version__},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    out = args.output or results_dir() / "bench_ray_build.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'run':8} {'workers':>7} {'seconds':>8} {'e2e img/s':>10} {'steady img/s':>13}")
    for r in rows:
        print(f"{r['run']:8} {r['workers']:>7} {r['seconds']:>8} {r['e2e_per_s']:>10} {str(r['steady_per_s']):>13}")
    print(f"efficiency (2 workers / 2 x 1 worker): steady {result['efficiency_steady']}, "
          f"end to end {result['efficiency_e2e']}  ({n} images, {os.cpu_count()} CPUs, "
          f"load {result['machine']['load_avg_1m']}) -> {out}")


if __name__ == "__main__":
    main()
