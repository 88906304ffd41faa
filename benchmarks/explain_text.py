"""Benchmark 2 of issue 17: text and LLM explanation latency, served vs captum (and shap) called in-process.

Cases (each: the explainer server as a child process, `python -m infertap.explainers`, against
the same library call made here on the same model, interleaved request by request):

- `llm-fa`: LLMFeatureAblation on the tiny LM (models/tiny-llm), a 64-token completions prompt
  cut into words, a 16-token completion given; reference: captum's `LLMAttribution(FeatureAblation)`
  over a `TextTemplateInput` of the same words, `forward_in_tokens=False`;
- `llm-ig`: LLMIntegratedGradients on the same prompt, an 8-token completion, n_steps 20;
  reference: captum's `LLMGradientAttribution(LayerIntegratedGradients)` on the input embeddings
  over a `TextTokenInput` of the prompt (pad baseline);
- `minilm-ig`: TextIntegratedGradients on all-MiniLM-L6-v2 with a fresh (seeded) two-class head,
  a 64-token text; reference: captum's `LayerIntegratedGradients` on the word embeddings with the
  same pad baseline and steps;
- `classifier-shap`: TextShap on the tiny sentiment classifier (models/tiny-classifier, the
  folder's model run in the explainer), a 64-token text, max_evals 300; reference: shap's
  partition explainer with the same masker.

Goal (issue 17): served within 1.2x of in-process. CPU here (the child and this process share
the cores, one at a time); figures on a GPU need a lent device (CUDA is used automatically where
torch sees one; none was lent when this was written).

    python -m benchmarks.explain_text [--requests 8] [--cases llm-fa llm-ig minilm-ig classifier-shap]

Writes benchmarks/results/explain_text.json (or --out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.explain_common import MODELS, RESULTS, Child, environment, free_port, summary, write

CASES = ("llm-fa", "llm-ig", "minilm-ig", "classifier-shap")
WORDS = "the model server streams tokens to every client and logs each request while detectors watch drift".split()
TEXT_WORDS = "what a wonderful train ride and the staff were kind but the room seemed dull today".split()


def sized_text(tokenizer: Any, words: list[str], tokens: int, special: bool = True) -> str:
    """Words cycled until the text tokenizes to exactly `tokens` tokens (or the first length past it)."""
    out: list[str] = []
    i = 0
    while len(tokenizer(" ".join(out), add_special_tokens=special)["input_ids"]) < tokens:
        out.append(words[i % len(words)])
        i += 1
    return " ".join(out)


def ratio(served: dict, raw: dict) -> float:
    return served["median_ms"] / raw["median_ms"]


def timed(served: Callable[[], Any], raw: Callable[[], Any], requests: int) -> tuple[dict, dict, Any, Any]:
    """Both warmed once, then interleaved `requests` times; (served summary, raw summary, last results)."""
    served_out, raw_out = served(), raw()
    times: dict[str, list[float]] = {"served": [], "raw": []}
    for i in range(requests):
        pair = [("raw", raw), ("served", served)]
        for name, call in pair if i % 2 else pair[::-1]:  # alternate who goes first
            t = time.perf_counter()
            result = call()
            times[name].append(time.perf_counter() - t)
            if name == "served":
                served_out = result
            else:
                raw_out = result
    return summary(times["served"]), summary(times["raw"]), served_out, raw_out


def explainer(tmp: Path, name: str, kind: str, folder: Path, *extra: str) -> tuple[Child, str]:
    port = free_port()
    args = ["--name", name, "--explainer-type", kind, "--storage-uri", str(folder), "--http-port", str(port)]
    args += ["--deadline-s", "600", "--max-samples", "100000", "--device", "auto", *extra]
    child = Child(
        [sys.executable, "-m", "infertap.explainers", *args],
        f"http://127.0.0.1:{port}/v2/health/ready",
        tmp / f"explainer-{kind}.log",
    )
    return child, f"http://127.0.0.1:{port}/v1/models/{name}:explain"


def post(client: httpx.Client, url: str, body: dict) -> dict:
    r = client.post(url, json=body)
    r.raise_for_status()
    return r.json()["explanations"][0]


def llm_case(kind: str, tmp: Path, requests: int, prompt_tokens: int) -> dict:
    import torch
    from captum.attr import (
        FeatureAblation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        TextTemplateInput,
        TextTokenInput,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = MODELS / "tiny-llm"
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    prompt = sized_text(tok, WORDS, prompt_tokens)
    ig = kind == "llm-ig"
    target_tokens, n_steps = (8, 20) if ig else (16, None)
    completion = sized_text(tok, list(reversed(WORDS)), target_tokens, special=False)
    target = torch.tensor(tok(completion, add_special_tokens=False)["input_ids"], device=model.device)
    words = [w + " " for w in prompt.split(" ")]
    words[-1] = words[-1].rstrip()
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    if ig:
        method = LLMGradientAttribution(LayerIntegratedGradients(model, model.get_input_embeddings()), tok)

        def raw():
            inp = TextTokenInput(prompt, tok, baselines=pad)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return method.attribute(inp, target=target, n_steps=n_steps, internal_batch_size=256)

    else:
        method = LLMAttribution(FeatureAblation(model), tok)

        def raw():
            inp = TextTemplateInput("{}" * len(words), words)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return method.attribute(inp, target=target, forward_in_tokens=False)

    server_kind = "LLMIntegratedGradients" if ig else "LLMFeatureAblation"
    extra = ["--n-steps", str(n_steps)] if ig else []
    child, url = explainer(tmp, "tiny-llm", server_kind, folder, "--max-target-tokens", "64", *extra)
    body = {"prompt": prompt, "completion": completion, "parameters": {"segments": "words"}}
    try:
        with httpx.Client(timeout=600) as client:
            served_s, raw_s, served_out, raw_out = timed(lambda: post(client, url, body), raw, requests)
    finally:
        child.stop()
    served_scores = [s["attribution"] for s in served_out["segments"]]
    if ig:  # per token in the reference: compare the sums (the segments partition the same tokens)
        diff = abs(sum(served_scores) - float(raw_out.seq_attr.sum()))
    else:
        diff = max(abs(a - b) for a, b in zip(served_scores, raw_out.seq_attr.tolist(), strict=True))
    return {
        "model": "tiny-llm",
        "method": server_kind,
        "prompt_tokens": served_out["prompt_tokens"],
        "completion_tokens": len(served_out["completion_tokens"]),
        "segments": len(served_out["segments"]),
        "n_steps": n_steps,
        "served": served_s,
        "in_process": raw_s,
        "served_over_in_process": ratio(served_s, raw_s),
        "max_abs_diff_served_vs_in_process": diff,
        "device": str(model.device.type),
    }


def minilm_classifier(tmp: Path) -> Path | None:
    """all-MiniLM-L6-v2 with a seeded, untrained two-class head, saved as a sequence classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = MODELS / "all-minilm-l6-v2"
    if not (source / "config.json").exists():
        return None
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2, local_files_only=True)
    out = tmp / "minilm-classifier"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(out)
    return out


def classifier_case(kind: str, tmp: Path, requests: int, text_tokens: int) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    shap_case = kind == "classifier-shap"
    folder = MODELS / "tiny-classifier" if shap_case else minilm_classifier(tmp)
    if folder is None:
        return {"skipped": "models/all-minilm-l6-v2 is missing (pip install infertap[huggingface]; make models)"}
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
    model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    text = sized_text(tok, TEXT_WORDS, text_tokens)
    device = model.device
    if shap_case:
        import shap

        def probabilities(texts):
            enc = tok([str(t) for t in texts], padding=True, truncation=True, return_tensors="pt").to(device)
            with torch.no_grad():
                return torch.softmax(model(**enc).logits, -1).cpu().numpy()

        reference = shap.Explainer(probabilities, shap.maskers.Text(tok))

        def raw():
            result = reference([text], max_evals=300, batch_size=64, silent=True)
            target = int(probabilities([text])[0].argmax())
            return np.asarray(result.values[0])[:, target]

        child, url = explainer(tmp, "sentiment", "TextShap", folder)
        body = {"instances": [text], "parameters": {"nsamples": 300}}
    else:
        from captum.attr import LayerIntegratedGradients

        def logits(ids, mask):
            return model(input_ids=ids, attention_mask=mask).logits

        lig = LayerIntegratedGradients(logits, model.get_input_embeddings())

        def raw():
            enc = tok([text], return_tensors="pt", return_special_tokens_mask=True).to(device)
            ids, mask = enc["input_ids"], enc["attention_mask"]
            baseline = torch.where(enc["special_tokens_mask"].bool(), ids, torch.full_like(ids, tok.pad_token_id))
            with torch.no_grad():
                target = logits(ids, mask).argmax(1)
            attributions = lig.attribute(
                ids, baselines=baseline, additional_forward_args=(mask,), target=target, n_steps=50,
                internal_batch_size=256,
            )  # fmt: skip
            return attributions.sum(-1)[0, 1:-1].detach().cpu().numpy()

        child, url = explainer(tmp, "minilm", "TextIntegratedGradients", folder, "--n-steps", "50")
        body = {"instances": [text]}
    try:
        with httpx.Client(timeout=600) as client:
            served_s, raw_s, served_out, raw_out = timed(lambda: post(client, url, body), raw, requests)
    finally:
        child.stop()
    raw_values = [float(v) for v in raw_out]
    if shap_case:  # shap's rows include the special tokens ([CLS] first, [SEP] last), at 0
        raw_values = raw_values[1:-1]
    return {
        "model": "tiny-classifier" if shap_case else "all-MiniLM-L6-v2 + fresh 2-class head",
        "method": "TextShap" if shap_case else "TextIntegratedGradients",
        "text_tokens": len(tok(text)["input_ids"]),
        "served": served_s,
        "in_process": raw_s,
        "served_over_in_process": ratio(served_s, raw_s),
        "max_abs_diff_served_vs_in_process": max(
            abs(a - b) for a, b in zip(served_out["attributions"], raw_values, strict=True)
        ),
        "device": str(device.type),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=8, help="timed requests per case and side")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--cases", nargs="*", choices=CASES, default=list(CASES))
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/explain_text.json)")
    a = p.parse_args(argv)
    import torch

    torch.manual_seed(0)
    result: dict[str, Any] = {
        "benchmark": "explain_text",
        "environment": environment() | {"torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "requests": a.requests,
        "prompt_tokens": a.prompt_tokens,
        "cases": {},
        "goal": "served within 1.2x of the library called in-process (issue 17, benchmark 2)",
    }
    if not torch.cuda.is_available():
        result["gpu"] = "not measured: no GPU here; on a lent device the same script runs every case on CUDA"
    with tempfile.TemporaryDirectory() as tmp:
        for case in a.cases:
            run = llm_case if case.startswith("llm") else classifier_case
            print(f"{case} ...", file=sys.stderr, flush=True)
            result["cases"][case] = run(case, Path(tmp), a.requests, a.prompt_tokens)
    ratios = [c["served_over_in_process"] for c in result["cases"].values() if "served_over_in_process" in c]
    result["cases_meeting_goal"] = sum(r <= 1.2 for r in ratios)
    if a.out is None:
        write("explain_text", result)
    else:
        import json

        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


__all__ = ["CASES", "RESULTS", "main", "sized_text"]

if __name__ == "__main__":
    sys.exit(main())
