"""`make demo`, second part: LLM traffic monitored at the serving hop, end to end.

Starts `infertap up examples/tiny-llm-monitoring.yaml` (embedded broker, the Hugging Face
runtime serving the tiny example LLM, a logger sidecar in front of it) and sends, with the
official `openai` client through the sidecar: streamed chats (with and without
`include_usage`), a non-streamed chat, a text completion, a chat carrying personal data, and a
call for a model that is not there. Then it reads the events back from Kafka with a plain
client and prints, per call, what a user of Langfuse or Phoenix would look for (operation,
tokens, time to first token, finish reason) and checks what infertap promises:

- each streamed answer is logged as one reassembled `chat.completion` whose content equals
  what the client accumulated from the stream;
- token counts equal the usage the runtime reported;
- none of the personal data sent reaches the topic;
- the sidecar's GenAI metrics counted the calls, the tokens and the redactions.

Exits non-zero with a sentence when a check fails. The model has random weights: its text is
meaningless, every code path is real.

    python -m examples.llm_demo
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from examples.demo import DemoFailed, TopicReader, body, check_up, free_port, start_up, stop, wait_up

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "tiny-llm-monitoring.yaml"
ISVC = MODEL = "tiny-llm"
EVENTS_TOPIC = f"{ISVC}-events"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
PII = {
    "e-mail": "jane.roe@example.com",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
}
PII_PROMPT = f"Hello, I am Jane: mail me at {PII['e-mail']}, call {PII['phone']}, my card is {PII['card']}."
MAX_TOKENS = 24


def calls(client: Any) -> dict[str, dict[str, Any]]:
    """Send the demo's calls; request id -> what the client saw (content, usage, error)."""
    import openai

    seen: dict[str, dict[str, Any]] = {}
    user = [{"role": "user", "content": "Why do detectors watch the embeddings of questions?"}]

    def stream(rid: str, messages: list[dict], include_usage: bool) -> None:
        content, usage = [], None
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        chunks = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=MAX_TOKENS,
            seed=1,
            stream=True,
            extra_headers={"x-request-id": rid},
            **options,
        )
        for chunk in chunks:
            content += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
        seen[rid] = {"content": "".join(content), "usage": usage, "stream": True}

    stream("chat-stream-usage", user, include_usage=True)
    stream("chat-stream", user, include_usage=False)
    stream("chat-pii", [{"role": "user", "content": PII_PROMPT}], include_usage=True)
    answer = client.chat.completions.create(
        model=MODEL, messages=user, max_tokens=MAX_TOKENS, seed=2, extra_headers={"x-request-id": "chat"}
    )
    seen["chat"] = {"content": answer.choices[0].message.content, "usage": answer.usage, "stream": False}
    text = client.completions.create(
        model=MODEL, prompt="the model server streams", max_tokens=MAX_TOKENS, extra_headers={"x-request-id": "text"}
    )
    seen["text"] = {"content": text.choices[0].text, "usage": text.usage, "stream": False}
    try:
        client.chat.completions.create(model="gpt-nope", messages=user, extra_headers={"x-request-id": "wrong-model"})
        raise DemoFailed("a call for an unknown model was answered 2xx")
    except openai.NotFoundError as exc:
        seen["wrong-model"] = {"error": exc.status_code}
    return seen


def logged_content(data: dict) -> str:
    choice = (data.get("choices") or [{}])[0]
    return str((choice.get("message") or {}).get("content") or choice.get("text") or "")


def printable(text: str) -> str:
    """The text without what a terminal cannot show (a random-weights model emits any byte)."""
    return "".join(ch if ch.isprintable() and ch != "\ufffd" else "." for ch in text)


def check_events(events: list, seen: dict[str, dict[str, Any]]) -> list[str]:
    """Print one line per logged answer; the failed promises, as sentences."""
    failures = []
    ids = {}
    for e in events:
        meta = json.loads(e.get_attributes().get("metadata") or "{}")
        ids[e.get_id()] = (meta.get("X-Request-Id") or [""])[0]
    print(f"\n{len(events)} events on {EVENTS_TOPIC} (a request and a response per call):")
    print(f"  {'call':<18} {'operation':<16} {'in':>4} {'out':>4} {'usage':<8} {'TTFT ms':>8}  finish    content")
    for e in events:
        if e.get_type() != RESPONSE_TYPE:
            continue
        rid, attrs = ids.get(e.get_id(), ""), e.get_attributes()
        data = body(e)
        ttft = attrs.get("genaiservertimetofirsttoken")
        print(
            f"  {rid:<18} {attrs.get('genaioperationname', '-'):<16} {attrs.get('genaiusageinputtokens', '-'):>4} "
            f"{attrs.get('genaiusageoutputtokens', '-'):>4} {attrs.get('genaiusagesource', '-'):<8} "
            f"{f'{float(ttft) * 1000:.1f}' if ttft else '-':>8}  "
            f"{json.loads(attrs.get('genairesponsefinishreasons') or '[]')!s:<9} {printable(logged_content(data))[:40]!r}"
        )
        want = seen.get(rid)
        if want is None or "error" in want:
            continue
        if rid != "chat-pii" and logged_content(data) != want["content"]:
            failures.append(f"{rid}: the logged content differs from what the client received")
        usage = want["usage"]
        logged = attrs.get("genaiusageoutputtokens")
        if usage is not None and (logged is None or int(logged) != usage.completion_tokens):
            failures.append(f"{rid}: logged {logged} output tokens, the usage said {usage.completion_tokens}")
        if want["stream"] and not ttft:
            failures.append(f"{rid}: no time to first token on a streamed answer")
    answered = {ids.get(e.get_id()) for e in events if e.get_type() == RESPONSE_TYPE}
    if missing := set(seen) - answered:
        failures.append(f"no response event for {sorted(missing)}")
    wire = "\n".join(json.dumps(body(e)) + json.dumps(e.get_attributes(), default=str) for e in events)
    # the phone and card numbers also without their spaces, as a redactor might miss them
    leaked = [
        kind for kind, value in PII.items() if value in wire or (kind != "e-mail" and value.replace(" ", "") in wire)
    ]
    print(f"\npersonal data sent in `chat-pii`: {', '.join(PII)}; found on the topic: {', '.join(leaked) or 'none'}")
    failures += [f"the {kind} sent reached Kafka unredacted" for kind in leaked]
    return failures


def check_metrics(logger_url: str) -> list[str]:
    text = httpx.get(f"{logger_url}/infertap/metrics", timeout=10).text

    def total(name: str, **labels: str) -> float:
        out = 0.0
        for line in text.splitlines():
            if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                out += float(line.rsplit(" ", 1)[1])
        return out

    ttft = total("infertap_gen_ai_server_time_to_first_token_seconds_count")
    tokens_out = total("infertap_gen_ai_client_token_usage_total", gen_ai_token_type="output")
    requests = total("infertap_gen_ai_server_requests_total")
    redactions = total("infertap_tap_redactions_total")
    print(
        f"sidecar metrics: {requests:.0f} GenAI requests, {tokens_out:.0f} output tokens, "
        f"{ttft:.0f} TTFT observations, {redactions:.0f} redactions"
    )
    failures = []
    if ttft < 3:
        failures.append(f"{ttft:.0f} TTFT observations for 3 streamed calls")
    if redactions < len(PII):
        failures.append(f"{redactions:.0f} redactions counted for {len(PII)} kinds of personal data sent")
    return failures


def run(log_dir: Path, children: dict[str, subprocess.Popen]) -> list[str]:
    import openai

    ports = {"predictor": free_port(8080), "logger": free_port(9081), "broker": free_port(9092)}
    print(f"infertap up {SPEC.relative_to(ROOT)} (logs in {log_dir}) ...")
    children["up"] = start_up(log_dir, ports, SPEC)
    wait_up(children["up"], log_dir)
    print((log_dir / "up.log").read_text().split("\nlogs in ")[0][-2500:])
    logger_url = f"http://127.0.0.1:{ports['logger']}"
    client = openai.OpenAI(base_url=f"{logger_url}/openai/v1", api_key="unused", max_retries=0, timeout=120)
    t0 = time.monotonic()
    seen = calls(client)
    print(f"{len(seen)} calls through the sidecar with the official openai client in {time.monotonic() - t0:.1f} s")
    reader = TopicReader(f"127.0.0.1:{ports['broker']}", EVENTS_TOPIC)
    try:
        done = reader.until(
            lambda evs: sum(e.get_type() == RESPONSE_TYPE for e in evs) >= len(seen),
            timeout=60,
            alive=lambda: check_up(children["up"], log_dir),
        )
        if not done:
            return [f"{len(reader.events)} events on {EVENTS_TOPIC} within 60 s, fewer than the {2 * len(seen)} sent"]
        failures = check_events(reader.events, seen)
    finally:
        reader.close()
    return failures + check_metrics(logger_url)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    if not (ROOT / "models" / MODEL / "config.json").exists():
        sys.exit("llm demo: models/tiny-llm is missing; run `make models` (or `make demo`, which builds it)")
    log_dir = Path(tempfile.mkdtemp(prefix="infertap-llm-demo-"))
    children: dict[str, subprocess.Popen] = {}
    started = time.monotonic()
    try:
        failures = run(log_dir, children)
    except DemoFailed as exc:
        failures = [str(exc)]
    except Exception as exc:  # noqa: BLE001 - a sentence, not a traceback; `up`'s own error first when it stopped
        try:
            check_up(children["up"], log_dir) if "up" in children else None
            failures = [f"{type(exc).__name__}: {exc} (logs in {log_dir})"]
        except DemoFailed as up_failed:
            failures = [str(up_failed)]
    except KeyboardInterrupt:
        failures = ["interrupted"]
    finally:
        stop(children.get("up"), signal.SIGINT, 60)
    print(f"stopped every process the LLM demo started; {time.monotonic() - started:.0f} s in all")
    if failures:
        sys.exit("llm demo failed: " + "; ".join(failures))
    print("llm demo done.")


if __name__ == "__main__":
    main()
