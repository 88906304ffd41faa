"""Generation tokens/s and time to first token of the huggingface runtime vs `model.generate` in-process.

    python -m benchmarks.hf_generation [--prompts 8] [--max-tokens 64] [--rounds 3] [--sizes tiny,small]

For each model size (built here, seeded, with examples/hf_models.py: `tiny` is the test
suite's 2-layer / 64-wide Llama, `small` a 4-layer / 256-wide one), one server
(`python -m infertap.serving --model-format huggingface`) streams chat completions
(`stream: true`, greedy, `ignore_eos` so every run makes exactly `--max-tokens` tokens) to an
httpx client that times the first content chunk (TTFT) and the whole answer. The reference
is `model.generate()` in this process on the same chat-templated prompts with the same
settings and a streamer that notes the first token, with the server idle. They take turns
`--rounds` times; medians of tokens/s (sequential requests) and TTFT are reported with the
ratio infertap / reference (goal >= 0.9 for tokens/s). Writes `benchmarks/results/hf_generation.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.processes import ROOT, free_port, start, stop, wait_http

RESULTS = ROOT / "benchmarks" / "results"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SIZES = {"tiny": {"hidden_size": 64, "layers": 2}, "small": {"hidden_size": 256, "layers": 4}}
QUESTIONS = [
    "What does a model server do?",
    "Why log every request to Kafka?",
    "How do detectors find drift in embeddings?",
    "Write a poem about colours.",
    "What is the weather like on a train?",
    "Explain vector search to a cat.",
    "Which rivers have music?",
    "When should a client stream tokens?",
]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_pass(url: str, model: str, prompts: list[list[dict]], max_tokens: int, pid: int) -> dict:
    import httpx

    cpu0 = _cpu_seconds(pid)
    ttfts, tokens, start_t = [], 0, time.perf_counter()
    with httpx.Client(timeout=300) as client:
        for messages in prompts:
            body = {
                "model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "ignore_eos": True, "stream_options": {"include_usage": True},
            }  # fmt: skip
            t0 = time.perf_counter()
            first = None
            with client.stream("POST", f"{url}/openai/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                # The client parses as little as it can: on 2 cores its CPU is taken from the server.
                for line in r.iter_lines():
                    if first is None and '"content":"' in line and '"content":""' not in line:
                        first = time.perf_counter() - t0
                    elif line.startswith("data: {") and '"usage":{' in line:
                        tokens += json.loads(line[6:])["usage"]["completion_tokens"]
            ttfts.append(first if first is not None else float("nan"))
    elapsed = time.perf_counter() - start_t
    cpu_ms = 1000 * (_cpu_seconds(pid) - cpu0) / max(tokens, 1)
    return {
        "tokens_per_s": tokens / elapsed, "ttft_ms": 1000 * statistics.median(ttfts), "tokens": tokens,
        "cpu_ms_per_token": cpu_ms,
    }  # fmt: skip


def _reference_pass(model, tokenizer, device, prompts: list[list[dict]], max_tokens: int) -> dict:
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls, self.first = 0, None

        def put(self, value) -> None:
            self.calls += 1
            if self.calls == 2:  # the first put is the prompt
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    ttfts, tokens, start_t, cpu0 = [], 0, time.perf_counter(), time.process_time()
    for messages in prompts:
        t0 = time.perf_counter()
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
        streamer = FirstToken()
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                min_new_tokens=max_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                pad_token_id=tokenizer.pad_token_id, streamer=streamer,
            )  # fmt: skip
        tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        tokens += out.shape[1] - ids.shape[1]
        ttfts.append((streamer.first or time.perf_counter()) - t0)
    elapsed = time.perf_counter() - start_t
    cpu_ms = 1000 * (time.process_time() - cpu0) / max(tokens, 1)
    return {
        "tokens_per_s": tokens / elapsed, "ttft_ms": 1000 * statistics.median(ttfts), "tokens": tokens,
        "cpu_ms_per_token": cpu_ms,
    }  # fmt: skip


def _measure(size: str, folder: Path, args: argparse.Namespace, device: str, logs: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    port, name = free_port(), f"bench-{size}"
    cmd = [
        sys.executable, "-m", "infertap.serving", "--model-format", "huggingface", "--storage-uri", str(folder),
        f"--model_name={name}", "--backend=huggingface", "--http-port", str(port), "--device", device,
        "--dtype=float32", "--log-level", "warning",
    ]  # fmt: skip
    proc = start(cmd, logs / f"{size}.log")
    url = f"http://127.0.0.1:{port}"
    prompts = [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(args.prompts)]
    try:
        wait_http(f"{url}/v2/health/ready", proc, timeout=300, log=logs / f"{size}.log")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        model = model.to(device).eval()
        _server_pass(url, name, prompts[:2], 8, proc.pid)  # warm-up, both
        _reference_pass(model, tokenizer, device, prompts[:2], 8)
        rounds = []
        for r in range(args.rounds):
            order = ("server", "reference") if r % 2 == 0 else ("reference", "server")
            row = {}
            for who in order:
                if who == "server":
                    row[who] = _server_pass(url, name, prompts, args.max_tokens, proc.pid)
                else:
                    row[who] = _reference_pass(model, tokenizer, device, prompts, args.max_tokens)
            rounds.append({k: {m: round(v, 2) for m, v in d.items()} for k, d in row.items()})
        med = {
            who: {
                m: statistics.median(r[who][m] for r in rounds) for m in ("tokens_per_s", "ttft_ms", "cpu_ms_per_token")
            }
            for who in ("server", "reference")
        }
        paired = [r["server"]["tokens_per_s"] / r["reference"]["tokens_per_s"] for r in rounds]
        params = sum(p.numel() for p in model.parameters())
        return {
            "parameters": params,
            "rounds": rounds,
            "infertap": med["server"],
            "reference": med["reference"],
            "tokens_per_s_ratio": round(med["server"]["tokens_per_s"] / med["reference"]["tokens_per_s"], 3),
            "tokens_per_s_ratio_per_round_median": round(statistics.median(paired), 3),
            "cpu_per_token_ratio": round(med["server"]["cpu_ms_per_token"] / med["reference"]["cpu_ms_per_token"], 3),
            "ttft_ratio": round(med["server"]["ttft_ms"] / med["reference"]["ttft_ms"], 3),
        }
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", default="tiny,small", help=f"comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, default=RESULTS / "hf_generation.json")
    args = p.parse_args(argv)
    os.environ.update(OFFLINE)

    import torch

    from examples.hf_models import build_tiny_llm

    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    logs = Path(tempfile.mkdtemp(prefix="hf-generation-"))
    results = {}
    for size in [s for s in args.sizes.split(",") if s]:
        folder = logs / f"model-{size}"
        build_tiny_llm(folder, **SIZES[size])
        results[size] = _measure(size, folder, args, device, logs)
        print(json.dumps({size: {k: results[size][k] for k in ("infertap", "reference", "tokens_per_s_ratio")}}))
    result = {
        "benchmark": "hf_generation",
        "device": device,
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "decoding": "greedy, ignore_eos (exactly max_tokens per answer), sequential requests",
        "sizes": results,
        "goal": {"tokens_per_s_ratio": 0.9},
        "reference": "model.generate() in-process on the same chat-templated prompts, streamer noting the first token",
        "client": "httpx, POST /openai/v1/chat/completions stream=true, TTFT at the first content chunk",
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
