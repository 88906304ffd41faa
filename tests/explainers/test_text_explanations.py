"""Token attributions for a text classifier and prompt attributions for LLM completions, from real processes.

One model server (`python -m infertap.serving`) serves the tiny sentiment classifier and the
tiny LLM that `make models` builds (examples/hf_models.py); four explainer servers (`python -m
infertap.explainers`) explain them: TextShap over the served classifier (black box), the
white-box TextIntegratedGradients, LLMFeatureAblation and LLMIntegratedGradients over the
folders. The method's promises are checked against the models run here in the test process:
IG completeness, shap additivity, and a segment's ablation score equal to the change in the
completion's log-probability when that segment is removed from the prompt.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Child, free_port

CLASSIFIER, LLM = "sentiment", "tiny-llm"
POSITIVE = ["what a wonderful train", "honestly the song seemed superb to me"]
NEGATIVE = ["our meal today felt dreadful", "the river was boring"]
ADJECTIVES = {"wonderful", "superb", "dreadful", "boring"}
CHAT = [
    {"role": "system", "content": "You answer questions about trains."},
    {"role": "user", "content": "Why do rivers flow? Tell me how the server streams tokens."},
]


@pytest.fixture(scope="module")
def folders(models_dir: Path) -> dict[str, Path]:
    from examples.hf_models import build_tiny_classifier, build_tiny_llm

    out = {CLASSIFIER: models_dir / "tiny-classifier", LLM: models_dir / "tiny-llm"}
    for name, build in ((CLASSIFIER, build_tiny_classifier), (LLM, build_tiny_llm)):
        if not (out[name] / "config.json").exists():  # a models/ built before the builder existed
            build(out[name])
    return out


@pytest.fixture(scope="module")
def servers(folders, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """URLs of the model server and the four explainers, started together (imports overlap)."""
    tmp = tmp_path_factory.mktemp("text-explainers")
    port = free_port()
    config = tmp / "serving.json"
    models = [
        {
            "name": CLASSIFIER,
            "format": "huggingface",
            "uri": str(folders[CLASSIFIER]),
            "task": "sequence_classification",
        },
        {"name": LLM, "format": "huggingface", "uri": str(folders[LLM])},
    ]
    config.write_text(json.dumps({"http_port": port, "models": models, "inference_service": "text-tests"}))
    urls = {"predictor": f"http://127.0.0.1:{port}"}
    children = [Child([sys.executable, "-m", "infertap.serving", "--config", str(config)], tmp / "serving.log")]
    explainers = {
        "TextShap": (CLASSIFIER, ["--predictor-url", urls["predictor"]]),
        "TextIntegratedGradients": (CLASSIFIER, []),
        "LLMFeatureAblation": (LLM, ["--max-prompt-tokens", "96", "--max-target-tokens", "8"]),
        "LLMIntegratedGradients": (LLM, ["--max-target-tokens", "8"]),
    }
    for kind, (model, extra) in explainers.items():
        eport = free_port()
        urls[kind] = f"http://127.0.0.1:{eport}"
        args = ["--name", model, "--explainer-type", kind, "--storage-uri", str(folders[model])]
        args += ["--http-port", str(eport), "--inference-service", "text-tests", "--token-metric-top-k", "5"]
        children.append(Child([sys.executable, "-m", "infertap.explainers", *args, *extra], tmp / f"{kind}.log"))
    try:
        children[0].wait_http(f"{urls['predictor']}/v2/health/ready", timeout=300)
        for child, kind in zip(children[1:], explainers, strict=True):
            child.wait_http(f"{urls[kind]}/v2/health/ready", timeout=300)
        yield urls
    finally:
        for child in children:
            child.stop()


@pytest.fixture(scope="module")
def local(folders):
    """The two models loaded here, as the independent judge of what the explainers report."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    classifier = AutoModelForSequenceClassification.from_pretrained(folders[CLASSIFIER], local_files_only=True)
    llm = AutoModelForCausalLM.from_pretrained(folders[LLM], local_files_only=True)
    return {
        "torch": torch,
        "classifier": classifier.eval(),
        "classifier_tok": AutoTokenizer.from_pretrained(folders[CLASSIFIER], local_files_only=True),
        "llm": llm.eval(),
        "llm_tok": AutoTokenizer.from_pretrained(folders[LLM], local_files_only=True),
    }


def explain(url: str, model: str, body: dict, timeout: float = 120) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{model}:explain", json=body, timeout=timeout)


def logits(local, text: str, pad_own_tokens: bool = False) -> list[float]:
    """The classifier's logits for `text` (its own tokens replaced by [PAD]: the IG baseline)."""
    torch, tok = local["torch"], local["classifier_tok"]
    enc = tok(text, return_tensors="pt", return_special_tokens_mask=True)
    ids = enc["input_ids"]
    if pad_own_tokens:
        ids = torch.where(enc["special_tokens_mask"].bool(), ids, torch.full_like(ids, tok.pad_token_id))
    with torch.no_grad():
        return local["classifier"](input_ids=ids, attention_mask=enc["attention_mask"]).logits[0].tolist()


def completion_log_prob(local, messages: list[dict], completion: str) -> float:
    """log p(completion | chat prompt) under the tiny LLM, teacher-forced, the prompt rendered as the server does."""
    torch, tok = local["torch"], local["llm_tok"]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    target = tok(completion, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = local["llm"](input_ids=torch.tensor([prompt + target])).logits[0]
    scores = torch.log_softmax(out[len(prompt) - 1 : -1], -1)
    return float(sum(scores[i, t] for i, t in enumerate(target)))


# --- text classifier --------------------------------------------------------------------------


def test_integrated_gradients_add_up_to_the_logit_difference(servers, local):
    texts = POSITIVE + NEGATIVE
    r = explain(servers["TextIntegratedGradients"], CLASSIFIER, {"instances": texts, "parameters": {"nsamples": 100}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["explainer"] == "TextIntegratedGradients" and len(body["explanations"]) == 4
    for text, e in zip(texts, body["explanations"], strict=True):
        assert e["kind"] == "text" and e["method"] == "LayerIntegratedGradients" and e["output_space"] == "logit"
        assert e["tokens"] == [text[a:b] for a, b in e["offsets"]] and "".join(e["tokens"]) == text.replace(" ", "")
        assert e["target_label"] == ("positive" if text in POSITIVE else "negative")
        # the model run here agrees on the logits at the text and at the baseline (pad tokens)
        assert e["prediction"] == pytest.approx(logits(local, text)[e["target"]], abs=1e-4)
        assert e["base_value"] == pytest.approx(logits(local, text, pad_own_tokens=True)[e["target"]], abs=1e-4)
        difference = e["prediction"] - e["base_value"]
        total = sum(e["attributions"])
        # completeness: the reported delta is what is missing, and it is small
        assert total - difference == pytest.approx(e["convergence_delta"], abs=1e-4)
        assert abs(e["convergence_delta"]) <= 0.02 * abs(difference) + 1e-3, e
        # the adjective decides the label, and the attributions say so
        top = max(range(len(e["tokens"])), key=lambda i: abs(e["attributions"][i]))
        assert e["tokens"][top] in ADJECTIVES, e


def test_shap_over_the_served_model_adds_up_to_its_probability(servers):
    texts = [POSITIVE[0], NEGATIVE[0]]
    v2 = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}],
        "parameters": {"nsamples": 300},
    }
    r = httpx.post(f"{servers['TextShap']}/v2/models/{CLASSIFIER}-explainer/infer", json=v2, timeout=120)
    assert r.status_code == 200, r.text
    answer = json.loads(r.json()["outputs"][0]["data"][0])
    served = httpx.post(
        f"{servers['predictor']}/v1/models/{CLASSIFIER}:predict",
        json={"instances": texts, "parameters": {"predict_proba": True}},
        timeout=30,
    ).json()["predictions"]
    for text, e, probabilities in zip(texts, answer["explanations"], served, strict=True):
        assert e["text"] == text and e["method"] == "PartitionShap" and e["output_space"] == "probability"
        assert e["raw"]["predictor"]
        assert e["prediction"] == pytest.approx(probabilities[e["target"]], abs=1e-5)  # the served model's output
        assert e["base_value"] + sum(e["attributions"]) == pytest.approx(e["prediction"], abs=1e-5)  # additivity
        top = max(range(len(e["tokens"])), key=lambda i: abs(e["attributions"][i]))
        assert e["tokens"][top] in ADJECTIVES, e
    metrics = httpx.get(f"{servers['TextShap']}/metrics", timeout=10).text
    calls = [line for line in metrics.splitlines() if line.startswith("infertap_explainer_predictor_requests_total{")]
    assert calls and float(calls[0].rsplit(" ", 1)[1]) >= 2  # the masked texts went to the served model


def test_a_requested_class_is_explained_and_tokens_are_a_bounded_metric(servers):
    url = servers["TextIntegratedGradients"]
    r = explain(url, CLASSIFIER, {"instances": [POSITIVE[0]], "parameters": {"target": 0}})
    assert r.status_code == 200, r.text
    e = r.json()["explanations"][0]
    assert e["target"] == 0 and e["target_label"] == "negative"
    assert sum(e["attributions"]) == pytest.approx(e["prediction"] - e["base_value"] + e["convergence_delta"], abs=1e-4)
    lines = [
        line
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
        if line.startswith("infertap_explainer_token_mean_abs_attribution{")
    ]
    assert 0 < len(lines) <= 5  # --token-metric-top-k 5, however many distinct tokens were explained
    assert any('token="wonderful"' in line or 'token="dreadful"' in line for line in lines), lines


# --- LLM completions ---------------------------------------------------------------------------


def test_feature_ablation_scores_are_the_log_prob_change_of_removing_a_segment(servers, local):
    completion = "trains and rivers"
    body = {"messages": CHAT, "completion": completion, "parameters": {"segments": "words", "per_token": True}}
    r = explain(servers["LLMFeatureAblation"], LLM, body)
    assert r.status_code == 200, r.text
    e = r.json()["explanations"][0]
    words = [(i, w) for i, m in enumerate(CHAT) for w in m["content"].split()]
    assert e["kind"] == "llm" and e["method"] == "FeatureAblation" and not e["generated"]
    assert [(s["message"], s["text"].strip()) for s in e["segments"]] == words
    assert [s["role"] for s in e["segments"]] == [CHAT[i]["role"] for i, _ in words]
    assert all(math.isfinite(s["attribution"]) for s in e["segments"])
    assert e["completion"] == completion
    full = completion_log_prob(local, CHAT, completion)
    assert e["target_log_prob"] == pytest.approx(full, abs=1e-3)
    for k in (0, 5, len(words) - 1):  # a system word, a user word, the last one
        segment = e["segments"][k]
        content = CHAT[segment["message"]]["content"]
        cut = content[: segment["start"]] + content[segment["start"] + len(segment["text"]) :]
        removed = [m | {"content": cut} if i == segment["message"] else m for i, m in enumerate(CHAT)]
        assert segment["attribution"] == pytest.approx(full - completion_log_prob(local, removed, completion), abs=1e-3)
    per_token = e["raw"]["token_attributions"]
    assert len(per_token) == len(e["completion_tokens"]) and len(per_token[0]) == len(words)


def test_the_explainer_generates_the_completion_the_server_gives_at_temperature_0(servers):
    served = httpx.post(
        f"{servers['predictor']}/openai/v1/chat/completions",
        json={"model": LLM, "messages": CHAT, "max_tokens": 6, "temperature": 0},
        timeout=60,
    ).json()["choices"][0]["message"]["content"]
    r = httpx.post(
        f"{servers['LLMFeatureAblation']}/openai/v1/chat/completions:explain",
        json={"model": LLM, "messages": CHAT, "max_tokens": 6, "parameters": {"segments": "sentences"}},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    e = r.json()["explanations"][0]
    assert e["generated"] and e["completion"] == served
    assert [s["text"] for s in e["segments"]] == [
        "You answer questions about trains.",
        "Why do rivers flow? ",
        "Tell me how the server streams tokens.",
    ]
    prompt = httpx.post(
        f"{servers['LLMFeatureAblation']}/openai/v1/completions:explain",
        json={"model": LLM, "prompt": "Cats and trains.", "completion": " music", "parameters": {"segments": "words"}},
        timeout=120,
    )
    assert prompt.status_code == 200, prompt.text
    assert [s["text"] for s in prompt.json()["explanations"][0]["segments"]] == ["Cats ", "and ", "trains."]


def test_v2_bytes_are_prompts_or_json_requests(servers):
    request = json.dumps({"messages": CHAT, "completion": "on rails", "parameters": {"ignored": True}})
    v2 = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["Cats and trains.", request]}],
        "parameters": {"explain_parameters": {"segments": "messages", "max_new_tokens": 3}},
    }
    r = httpx.post(f"{servers['LLMFeatureAblation']}/v2/models/{LLM}-explainer/infer", json=v2, timeout=120)
    assert r.status_code == 200, r.text
    plain, chat = json.loads(r.json()["outputs"][0]["data"][0])["explanations"]
    assert [s["text"] for s in plain["segments"]] == ["Cats and trains."] and plain["generated"]
    assert len(plain["completion_tokens"]) <= 3
    assert [s["role"] for s in chat["segments"]] == ["system", "user"] and chat["completion"] == "on rails"


def test_integrated_gradients_over_messages_add_up(servers):
    body = {
        "messages": CHAT,
        "completion": "trains and rivers",
        "parameters": {"segments": "messages", "roles": ["user"], "nsamples": 100},
    }
    r = explain(servers["LLMIntegratedGradients"], LLM, body)
    assert r.status_code == 200, r.text
    e = r.json()["explanations"][0]
    assert [(s["role"], s["text"]) for s in e["segments"]] == [("user", CHAT[1]["content"])]
    total = sum(s["attribution"] for s in e["segments"])
    difference = e["target_log_prob"] - e["base_value"]
    assert total - difference == pytest.approx(e["convergence_delta"], abs=1e-3)
    assert abs(e["convergence_delta"]) <= 0.05 * abs(difference) + 1e-2, e
    shares = [
        line
        for line in httpx.get(f"{servers['LLMIntegratedGradients']}/metrics", timeout=10).text.splitlines()
        if line.startswith("infertap_explainer_role_attribution_share{")
    ]
    assert any('role="user"' in line and line.endswith(" 1.0") for line in shares), shares


# --- limits, bad input, deadlines --------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, body, words",
    [
        ("TextIntegratedGradients", {"instances": [[1.0, 2.0]]}, "explains text"),
        ("TextIntegratedGradients", {"instances": ["   "]}, "holds no text"),
        ("TextIntegratedGradients", {"instances": ["good " * 200]}, "at most 128"),
        ("LLMFeatureAblation", {"messages": CHAT, "prompt": "x"}, "not both"),
        ("LLMFeatureAblation", {"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ("LLMFeatureAblation", {"prompt": "x", "parameters": {"segments": "letters"}}, "segments must be one of"),
        ("LLMFeatureAblation", {"prompt": "x", "parameters": {"roles": ["robot"]}}, "parameter roles must be"),
        ("LLMFeatureAblation", {"prompt": "x", "completion": "trains " * 20}, "max_target_tokens is 8"),
        ("LLMFeatureAblation", {"prompt": "x", "parameters": {"max_new_tokens": 20}}, "max_new_tokens must be"),
        ("LLMFeatureAblation", {"prompt": "trains " * 120, "completion": "x"}, "at most 96"),
        ("LLMFeatureAblation", {"prompt": "x", "parameters": {"target": 1}}, "give the completion instead"),
        ("LLMFeatureAblation", {"messages": CHAT, "parameters": {"roles": ["tool"]}}, "no text to attribute"),
        ("LLMFeatureAblation", {"instances": []}, "non-empty list"),
        ("LLMIntegratedGradients", {"prompt": "x", "parameters": {"nsamples": 5000}}, "at most 1000"),
        ("TextIntegratedGradients", {"instances": ["good"], "parameters": {"nsamples": 5000}}, "riemann_trapezoid"),
    ],
)
def test_bad_input_is_a_400_with_a_sentence(servers, kind, body, words):
    model = CLASSIFIER if kind.startswith("Text") else LLM
    r = explain(servers[kind], model, body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"] and "Traceback" not in r.text


def test_a_deadline_is_a_504_and_the_server_keeps_serving(servers):
    url = servers["LLMIntegratedGradients"]
    body = {"prompt": "Cats and trains. " * 5, "completion": "music for rivers"}
    before = explain(url, LLM, body | {"parameters": {"nsamples": 10}})
    assert before.status_code == 200, before.text
    r = explain(url, LLM, body | {"parameters": {"nsamples": 1000, "deadline_s": 0.3}}, timeout=60)
    assert r.status_code == 504, r.text
    assert "within the deadline" in r.json()["error"]
    after = explain(url, LLM, body | {"parameters": {"nsamples": 10}})
    assert after.status_code == 200, after.text
    # the work stopped mid-attribution left nothing behind (captum's hooks, the deadline): same answer
    assert after.json()["explanations"][0]["segments"] == before.json()["explanations"][0]["segments"]


def test_concurrent_requests_get_the_answers_they_get_alone(servers):
    from concurrent.futures import ThreadPoolExecutor

    url = servers["TextIntegratedGradients"]
    alone = [explain(url, CLASSIFIER, {"instances": [t]}).json()["explanations"][0] for t in POSITIVE + NEGATIVE]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda t: explain(url, CLASSIFIER, {"instances": [t]}), POSITIVE + NEGATIVE))
    for r, e in zip(together, alone, strict=True):
        assert r.status_code == 200, r.text
        got = r.json()["explanations"][0]
        assert got["attributions"] == pytest.approx(e["attributions"], abs=1e-6) and got["target"] == e["target"]


@pytest.mark.parametrize(
    "kind, folder, words",
    [
        ("TextIntegratedGradients", "tiny-llm", "is a text_generation model; use an LLM explainer"),
        ("LLMFeatureAblation", "tiny-classifier", "is a sequence_classification model; use TextShap"),
        ("TextShap", "sklearn-iris", "is not a Hugging Face model folder"),
        ("LLMIntegratedGradients", None, "give storage_uri"),
    ],
)
def test_a_folder_of_the_wrong_kind_is_refused_at_load_with_a_sentence(kind, folder, words, models_dir):
    from infertap.explainers.backends import create_explainer
    from infertap.explainers.errors import ExplainerLoadError
    from infertap.explainers.settings import ExplainerSettings

    uri = None if folder is None else str(models_dir / folder)
    explainer = create_explainer(ExplainerSettings(name="m", explainer_type=kind, storage_uri=uri))
    with pytest.raises(ExplainerLoadError, match=words):
        explainer.load()
