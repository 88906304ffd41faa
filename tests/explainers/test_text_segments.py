"""Prompt segmentation, LLM request parsing and the bounded token metric, without processes."""

from __future__ import annotations

import pytest

from infertap.explainers.backends.base import Param
from infertap.explainers.backends.llm_base import instance_of
from infertap.explainers.backends.llm_prompt import chat_prompt, plain_prompt, split
from infertap.explainers.errors import BadExplainRequest
from infertap.explainers.metrics import ExplainerMetrics

pytestmark = pytest.mark.fast


def template(messages):
    """A chat template in the tiny LLM's shape: role markers around verbatim contents."""
    return "<s>" + "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages) + "<|assistant|>\n"


@pytest.mark.parametrize(
    "content, how, parts",
    [
        ("  Why do rivers flow?  ", "words", ["  Why ", "do ", "rivers ", "flow?  "]),
        ("One. Two! Three? four", "sentences", ["One. ", "Two! ", "Three? ", "four"]),
        ('He said "stop." Then left.\nNext line', "sentences", ['He said "stop." ', "Then left.\n", "Next line"]),
        ("all of it. really", "messages", ["all of it. really"]),
        ("   ", "words", []),
    ],
)
def test_segments_cover_the_content_exactly(content, how, parts):
    spans = split(content, how)
    assert [content[a:b] for a, b in spans] == parts
    assert "".join(parts) == (content if parts else "")


def test_a_chat_is_cut_at_its_contents_and_renders_back():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there. Bye."}]
    prompt = chat_prompt(template, messages, "sentences", {"system", "user"})
    assert prompt.text == template(messages) and not prompt.add_special_tokens
    assert [(s.text, s.role, s.message, s.start) for s in prompt.segments] == [
        ("Be brief.", "system", 0, 0),
        ("Hi there. ", "user", 1, 0),
        ("Bye.", "user", 1, 10),
    ]
    assert [prompt.text[a:b] for a, b in prompt.spans] == [s.text for s in prompt.segments]
    # removing a segment is that text gone, nothing else
    assert prompt.render("Be brief.", "", "Bye.") == template([messages[0], {"role": "user", "content": "Bye."}])
    only_user = chat_prompt(template, messages, "messages", {"user"})
    assert [s.text for s in only_user.segments] == ["Hi there. Bye."] and only_user.text == template(messages)


def test_a_template_that_rewrites_contents_is_refused():
    def trimming(messages):
        return "".join(f"[{m['role']}] {m['content'].strip().lower()}\n" for m in messages)

    with pytest.raises(BadExplainRequest, match="changes message content"):
        chat_prompt(trimming, [{"role": "user", "content": "  Hello  "}], "words", {"user"})

    def dropping(messages):
        return "".join(m["content"] for m in messages[1:])

    with pytest.raises(BadExplainRequest, match="once, in order"):
        chat_prompt(dropping, [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}], "words", {"user"})


def test_a_plain_prompt_keeps_the_tokenizers_special_tokens():
    prompt = plain_prompt("Cats and trains.", "words")
    assert prompt.add_special_tokens and [s.role for s in prompt.segments] == ["prompt"] * 3
    assert prompt.render("", "and ", "trains.") == "and trains."


@pytest.mark.parametrize(
    "item, words",
    [
        (42, "got int"),
        ({"messages": [{"role": "user", "content": "x"}], "prompt": "y"}, "not both"),
        ({}, "not both"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_llm_instances_are_named(item, words):
    with pytest.raises(BadExplainRequest, match=words):
        instance_of(item, 0)


def test_strings_are_prompts_or_json_objects():
    assert instance_of("plain words", 0).prompt == "plain words"
    chat = instance_of(b'{"messages": [{"role": "user", "content": "hi"}], "completion": "yo"}', 0)
    assert chat.messages is not None and chat.messages[0].content == "hi" and chat.completion == "yo"


def test_choice_parameters_are_checked():
    segments, roles = Param(str, choices=("words", "sentences")), Param(list, choices=("user", "system"))
    assert segments.check("segments", "words") == "words"
    assert roles.check("roles", "user,system,user") == ["user", "system"]
    with pytest.raises(BadExplainRequest, match="one of words, sentences"):
        segments.check("segments", "letters")
    with pytest.raises(BadExplainRequest, match="list of user, system"):
        roles.check("roles", [])


def test_the_token_metric_keeps_only_the_top_k_series():
    metrics = ExplainerMetrics("isvc", "m", "TextIntegratedGradients", token_top_k=3)
    for i in range(50):  # 50 distinct tokens, each once, and "great" every time with the largest score
        metrics.observe_tokens([f"word{i}", "Great "], [0.01 * (i % 7), 2.0])
    text = metrics.render().decode()
    series = [line for line in text.splitlines() if line.startswith("infertap_explainer_token_mean_abs_attribution{")]
    assert len(series) == 3 and any('token="great"' in line and line.endswith(" 2.0") for line in series)
    assert set(metrics.token_means()) == {line.split('token="')[1].split('"')[0] for line in series}
    off = ExplainerMetrics("isvc", "m", "TextShap", token_top_k=0)
    off.observe_tokens(["great"], [1.0])
    assert "token=" not in off.render().decode()


def test_role_shares_are_a_running_mean():
    metrics = ExplainerMetrics("isvc", "m", "LLMFeatureAblation")
    metrics.observe_roles(["system", "user", "user"], [1.0, -2.0, 1.0])  # system 1/4, user 3/4
    metrics.observe_roles(["user"], [5.0])  # user 1
    text = metrics.render().decode()
    assert 'role="system"} 0.125' in text and 'role="user"} 0.875' in text


def test_logged_openai_requests_become_llm_instances():
    from infertap.explainers.stream import decode_llm_request
    from infertap.serving.codec import CodecError

    chat = b'{"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
    [item] = decode_llm_request(chat).tolist()
    assert instance_of(item, 0).messages is not None and item["stream"] is True
    assert [i["prompt"] for i in decode_llm_request(b'{"instances": [{"prompt": "a"}, {"prompt": "b"}]}')] == ["a", "b"]
    for body in (b"[1, 2]", b'{"inputs": []}', b"not json", b'{"instances": []}'):
        with pytest.raises(CodecError):
            decode_llm_request(body)
