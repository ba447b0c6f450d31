"""A model server behind rsrag: time to first token and total time through the openai generator, against
the same server called directly (raw HTTP streaming) in the same run.

    python bench/vlm.py [--model FOLDER] [--requests 20] [--json]

Starts `transformers serve` on loopback over FOLDER (default: a tiny random chat model written to a
temporary folder, `rsrag.generators.tiny`, so the numbers measure rsrag's overhead, not a model), then
per request: rsrag's `OpenAIGenerator.stream` with the query image (a 1600 x 900 PNG: re-encoded and
sent as an `image_url` part) and a numbered context; and the baseline, the same server streamed with
httpx directly on the same text without the image. Reports p50 / p90 of time to first token and of total
time, their ratios, and one captured request body (the data URL shortened). Writes
`results/bench_vlm.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rsrag.config import results_dir  # noqa: E402
from rsrag.generators import Evidence, GenerationRequest, create_generator  # noqa: E402
from rsrag.generators.tiny import tiny_chat_model  # noqa: E402
from rsrag.rag import PromptBuilder  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model: Path) -> tuple[subprocess.Popen, str]:
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    port = _port()
    proc = subprocess.Popen([cli, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("transformers serve did not start")


def _raw_stream(url: str, body: dict) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = None
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data:") and '"content"' in line and first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - t0, end - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a local model folder (default: a tiny random one)")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_chat_model(Path(tmp) / "tiny")
        image = Path(tmp) / "scene.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 1600, 3), dtype=np.uint8)).save(image)
        proc, url = _serve(model)
        try:
            evidence = [Evidence("harbor05#caption-1", "many boats are moored in a harbour", "harbor05", "harbor",
                                 "caption", 0.9)]
            prompt = PromptBuilder().build("vqa", "what is moored here?", evidence)
            request = GenerationRequest("what is moored here?", "vqa", evidence, prompt, [], None, str(image))
            gen = create_generator("openai", url=f"{url}/v1", model=str(model), max_tokens=args.max_tokens)
            text_body = {"model": str(model), "messages": prompt.messages, "max_tokens": args.max_tokens,
                         "temperature": 0.0}
            list(gen.stream(request))  # warm-up: the server loads the model
            _raw_stream(url, text_body)
            ours, raw = [], []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                pieces = list(gen.stream(request))
                ours.append((pieces[-1].extra["first_token_ms"] / 1000, time.perf_counter() - t0))
                raw.append(_raw_stream(url, text_body))
            captured = gen.body(request)
            part = captured["messages"][-1]["content"][1]["image_url"]
            part["url"] = part["url"][:48] + f"... ({len(part['url'])} characters)"
        finally:
            proc.terminate()
            proc.wait(timeout=20)

    def stats(rows: list[tuple[float, float]], i: int) -> dict:
        values = np.array([r[i] for r in rows]) * 1000
        return {"p50_ms": round(float(np.percentile(values, 50)), 1), "p90_ms": round(float(np.percentile(values, 90)), 1)}

    result = {
        "model": "tiny random chat model" if args.model is None else str(args.model), "requests": args.requests,
        "rsrag_first_token": stats(ours, 0), "rsrag_total": stats(ours, 1),
        "raw_first_token": stats(raw, 0), "raw_total": stats(raw, 1),
        "first_token_ratio": round(stats(ours, 0)["p50_ms"] / max(stats(raw, 0)["p50_ms"], 1e-6), 2),
        "total_ratio": round(stats(ours, 1)["p50_ms"] / max(stats(raw, 1)["p50_ms"], 1e-6), 2),
        "captured_request": captured, "load_1min": os.getloadavg()[0],
    }
    path = results_dir() / "bench_vlm.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("| path | first token p50 / p90 | total p50 / p90 |\n| --- | --- | --- |")
        for name, key in (("rsrag openai generator (with the image)", "rsrag"), ("raw HTTP stream (text only)", "raw")):
            f, t = result[f"{key}_first_token"], result[f"{key}_total"]
            print(f"| {name} | {f['p50_ms']} / {f['p90_ms']} ms | {t['p50_ms']} / {t['p90_ms']} ms |")
        print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
