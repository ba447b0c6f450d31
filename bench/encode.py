"""Encoding throughput of the default encoder on this machine, ONNX Runtime vs PyTorch in one run.

    python bench/encode.py [--json] [--n-images 256] [--n-texts 128] [--encoder rs-lite]

Images are real RSICD test images (224 px JPEGs). Measures, per runtime:
  images_e2e        JPEG path -> decode -> preprocess -> model -> normalised vector (what indexing pays)
  images_predecoded decoded RGB arrays -> preprocess -> model
  images_model      preprocessed tensors -> model only
  texts             RSICD test captions -> text tower -> normalised vector
Each measure gets one warm-up batch first. Writes `results_dir()/bench_encode.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from rsrag.config import results_dir  # noqa: E402
from rsrag.data import load_dataset  # noqa: E402
from rsrag.encoders import DEFAULT_ENCODER, Encoder, create_encoder  # noqa: E402
from rsrag.imageio import load_image  # noqa: E402

RUNTIMES = ("onnx", "torch")


def timed(fn, n: int) -> dict:
    """Run `fn` once and return its time and rate over `n` items."""
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return {"n": n, "seconds": round(seconds, 3), "per_s": round(n / seconds, 2)}


def bench_encoder(enc: Encoder, paths: list[Path], texts: list[str], batch_size: int) -> dict[str, dict]:
    """All four measures for one encoder instance."""
    decoded = [np.asarray(load_image(p)) for p in paths]
    tensors = enc.preprocess.stack(decoded)
    warm = slice(0, batch_size)

    def model_only():
        # preprocessed pixels -> normalised vectors: the model and nothing else (no decode, no preprocess)
        for i in range(0, len(tensors), batch_size):
            enc.encode_arrays(tensors[i : i + batch_size])

    enc.encode_images(paths[warm], batch_size=batch_size)
    enc.encode_arrays(tensors[warm])
    enc.encode_texts(texts[warm])
    return {
        "images_e2e": timed(lambda: enc.encode_images(paths, batch_size=batch_size), len(paths)),
        "images_predecoded": timed(lambda: enc.encode_images(decoded, batch_size=batch_size), len(decoded)),
        "images_model": timed(model_only, len(tensors)),
        "texts": timed(lambda: enc.encode_texts(texts), len(texts)),
    }


def make_encoders(name: str):
    """(runtime, encoder) pairs, built one at a time: both runtimes when the backend takes
    `runtime=` (rs-lite), else the single encoder under the runtime name "default"."""
    try:
        enc = create_encoder(name, runtime=RUNTIMES[0])
    except TypeError:  # backend without a `runtime` argument
        yield "default", create_encoder(name)
        return
    yield RUNTIMES[0], enc
    del enc
    for runtime in RUNTIMES[1:]:
        yield runtime, create_encoder(name, runtime=runtime)


def machine_info() -> dict:
    import onnxruntime
    import torch

    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cuda": torch.cuda.is_available(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the JSON result to stdout")
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--n-texts", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--output", type=Path, default=None, help="default: results dir / bench_encode.json")
    args = parser.parse_args()

    records = load_dataset("rsicd", split="test")
    paths = [r.path for r in records[: args.n_images]]
    texts = [c for r in records for c in r.captions][: args.n_texts]

    rows, encoder_ids, image_size = [], {}, None
    for runtime, enc in make_encoders(args.encoder):
        encoder_ids[runtime] = enc.id
        image_size = enc.preprocess.size
        for measure, stats in bench_encoder(enc, paths, texts, args.batch_size).items():
            rows.append({"runtime": runtime, "measure": measure, **stats})
        del enc

    rate = {(r["runtime"], r["measure"]): r["per_s"] for r in rows}
    main_runtime = "onnx" if ("onnx", "images_e2e") in rate else rows[0]["runtime"]
    by_measure = {
        m: round(rate[("onnx", m)] / rate[("torch", m)], 2)
        for m in ("images_e2e", "images_predecoded", "images_model", "texts")
        if ("onnx", m) in rate and ("torch", m) in rate
    }
    result = {
        "benchmark": "encode",
        "encoder": args.encoder,
        "encoder_ids": encoder_ids,
        "dataset": "rsicd/test",
        "image_size": image_size,
        "batch_size": args.batch_size,
        "images_per_s": rate[(main_runtime, "images_e2e")],
        "texts_per_s": rate[(main_runtime, "texts")],
        "runtime": main_runtime,
        "onnx_vs_torch_speedup": by_measure.get("images_e2e"),
        "onnx_vs_torch_speedup_by_measure": by_measure,
        "rows": rows,
        "machine": machine_info(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    out = args.output or results_dir() / "bench_encode.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Encoding throughput: {args.encoder}, {image_size} px, batch {args.batch_size}")
        for col in ("runtime", "measure", "n", "seconds", "items/s"):
            table.add_column(col, justify="left" if col in ("runtime", "measure") else "right")
        for r in rows:
            table.add_row(r["runtime"], r["measure"], str(r["n"]), f"{r['seconds']:.2f}", f"{r['per_s']:.1f}")
        console = Console()
        console.print(table)
        if by_measure:
            console.print("onnx vs torch speedup: " + ", ".join(f"{m} {v:.2f}x" for m, v in by_measure.items()))
        m = result["machine"]
        console.print(f"{m['cpus_usable']} CPUs ({m['cpu_model']}), torch threads {m['torch_threads']}, "
                      f"load {m['load_avg_1m']}")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
