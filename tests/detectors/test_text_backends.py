"""The text detectors in-process, on corpora the tests build and the packaged MiniLM: fitted from every
corpus format, saved to folders without pickles and loaded back to the same verdicts, one embedding
pass per window for a whole TextSuite, the MMD test against a direct computation, the response signals
on hand-made answers, and bad parameters refused in one sentence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from infertap.detectors.backends.registry import create_backend, load_backend, pickles_in
from infertap.detectors.reference import ReferenceError
from infertap.detectors.settings import FeatureSettings
from infertap.detectors.text import descriptors as desc
from infertap.detectors.text.corpus import read_answers, read_texts
from infertap.detectors.text.frame import TextColumn
from tests.detectors.text_corpus import PLANTED, REFUSAL, answer, reference_prompts, shifted_prompts

pytestmark = pytest.mark.fast

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "all-minilm-l6-v2")
PARAMS = {"model": MODEL, "device": "cpu"}
REFERENCE = reference_prompts(240, seed=0)


def frame(texts: list[str]) -> np.ndarray:
    x = np.empty((len(texts), 1), dtype=object)
    x[:, 0] = texts
    return x


@pytest.fixture(scope="module")
def suite():
    backend = create_backend("TextSuite", ["prompt"], PARAMS)
    backend.fit(REFERENCE)
    return backend


def test_every_corpus_format_gives_the_same_texts(tmp_path: Path):
    import pandas as pd

    texts = ["first prompt", "second, with a comma", "third: ünïcode"]
    (tmp_path / "c.txt").write_text("\n".join(texts) + "\n\n")
    with (tmp_path / "c.jsonl").open("w") as fh:
        fh.write(json.dumps(texts[0]) + "\n")
        fh.write(json.dumps({"prompt": texts[1]}) + "\n")
        fh.write(
            json.dumps(
                {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": texts[2]}]}
            )
            + "\n"
        )
    pd.DataFrame({"id": [1, 2, 3], "prompt": texts}).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"prompt": texts}).to_parquet(tmp_path / "c.parquet")
    column = TextColumn("prompt")
    for name in ("c.txt", "c.jsonl", "c.csv", "c.parquet"):
        assert read_texts(tmp_path / name, column) == texts, name
    with pytest.raises(ReferenceError, match="no column 'text'"):
        read_texts(tmp_path / "c.csv", TextColumn("text"))
    (tmp_path / "bad.jsonl").write_text('"ok"\n{"other": 1}\n')
    with pytest.raises(ReferenceError, match=r"bad.jsonl:2: neither a string"):
        read_texts(tmp_path / "bad.jsonl", column)


def test_answers_corpus_keeps_finish_reasons_and_tokens(tmp_path: Path):
    with (tmp_path / "a.jsonl").open("w") as fh:
        fh.write(json.dumps(answer("one two three")) + "\n")
        fh.write(json.dumps(answer("cut", finish_reason="length")) + "\n")
    rows = read_answers(tmp_path / "a.jsonl")
    assert rows[0] == ["one two three", "stop", None, 0, 3.0, 200]
    assert rows[1][:2] == ["cut", "length"]


def test_suite_embeds_each_window_once_and_keeps_its_verdicts_after_save_and_load(suite, tmp_path: Path):
    embedder = suite.members[0].embedder
    assert all(m.embedder is embedder for m in suite.members[1:])  # one model, one cache
    held, shifted = frame(reference_prompts(80, seed=5)), frame(shifted_prompts(80, seed=2))
    before = embedder.passes
    verdicts = [suite.predict(held), suite.predict(shifted)]
    assert embedder.passes - before == 160  # four members, two windows, each embedded once
    assert verdicts[0].is_drift is False and verdicts[1].is_drift is True
    assert [c.detector for c in verdicts[1].companions] == ["TextOOD"]

    suite.save(tmp_path / "suite")
    assert not pickles_in(tmp_path / "suite")
    assert sorted(p.name for p in (tmp_path / "suite").iterdir()) == [
        "infertap-detector.json",
        "member-0-TextMMDDrift",
        "member-1-TextClassifierDrift",
        "member-2-TextDescriptorDrift",
        "member-3-TextOOD",
    ]
    loaded = load_backend(tmp_path / "suite")  # no allow_pickle: data only
    again = [loaded.predict(held), loaded.predict(shifted)]
    for a, b in zip(verdicts, again, strict=True):
        assert a.model_dump(exclude={"companions"}) == b.model_dump(exclude={"companions"})
        assert a.companions[0].instance_scores == pytest.approx(b.companions[0].instance_scores)


def test_a_folder_fitted_with_another_model_is_refused(suite, tmp_path: Path):
    mmd = suite.members[0]
    mmd.save(tmp_path / "mmd")
    manifest = json.loads((tmp_path / "mmd" / "infertap-detector.json").read_text())
    manifest["embedding"]["dimensions"] = 768
    (tmp_path / "mmd" / "infertap-detector.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="768-dimensional embedding model"):
        load_backend(tmp_path / "mmd")


def test_mmd_equals_the_direct_unbiased_estimate_and_its_p_value_is_uniform_under_no_change():
    import torch

    from infertap.detectors.text.mmd import mmd_test

    rng = np.random.default_rng(0)
    x, y, sigma = rng.normal(size=(40, 6)), rng.normal(size=(30, 6)) + 0.2, 2.5
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * sigma**2))  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    direct = (kxx.sum() - 40) / (40 * 39) + (kyy.sum() - 30) / (30 * 29) - 2 * k(x, y).mean()
    assert mmd_test(x, y, sigma, 50, device=torch.device("cpu")).mmd2 == pytest.approx(direct, abs=1e-6)  # float32
    p = [mmd_test(rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), 2.0, 100, seed=s).p_val for s in range(60)]
    assert 0.3 < np.mean(p) < 0.7 and np.mean(np.array(p) < 0.05) < 0.15


def test_ood_methods_flag_planted_prompts_above_a_held_out_threshold(suite):
    held = reference_prompts(60, seed=9)
    x = frame(held + list(PLANTED))
    knn = suite.members[3]
    result = knn.predict(x)
    assert all(result.is_outlier[60:]) and sum(result.is_outlier[:60]) <= 2
    assert result.raw["flagged"][0]["score"] == pytest.approx(max(result.instance_scores), abs=1e-6)
    maha = create_backend("TextOOD", ["prompt"], {**PARAMS, "method": "mahalanobis", "components": 16})
    maha.fit(REFERENCE)
    flagged = maha.predict(x).is_outlier
    assert sum(flagged[60:]) >= len(PLANTED) - 1 and sum(flagged[:60]) <= 3


def test_descriptors_of_one_text():
    found = desc.describe(
        ["Hello [REDACTED:email] wörld!", "Привет мир", "x = f(1, 2) + 3"],
        vocab={"hello", "world"},
        which=desc.DESCRIPTORS,
    )
    assert found["redactions"].tolist() == [1, 0, 0]
    assert found["words"].tolist() == [3, 2, 5]  # x f 1 2 3
    assert found["oov_share"].tolist() == pytest.approx([2 / 3, 1, 1])  # the placeholder and wörld are new words
    assert [desc.SCRIPTS[int(c)] for c in found["script"]] == ["latin", "cyrillic", "latin"]
    assert found["non_letter_share"][2] > 0.5 and found["non_ascii_share"][0] == pytest.approx(1 / 29)
    assert "tokens" not in found  # no token counts given


def test_response_signals_against_their_reference():
    backend = create_backend("LLMResponseSignals", [], {"max_error_share": 0.1})
    reference = [[p, "stop", None, 0, float(len(p.split())), 200] for p in reference_prompts(200, seed=3)]
    backend.fit(reference)
    same = backend.predict([[p, "stop", None, 0, float(len(p.split())), 200] for p in reference_prompts(100, seed=4)])
    assert same.is_drift is False
    bad = (
        [["t0 t1 t2", "length", None, 0, 3.0, 200]] * 20
        + [[REFUSAL, "stop", None, 0, 10.0, 200]] * 10
        + [["", "stop", "I will not do that", 0, 0.0, 200]] * 5  # a refusal field, not an empty answer
        + [["", "tool_calls", None, 1, 5.0, 200]] * 5  # a tool call is not empty
        + [["", None, None, 0, math.nan, 500]] * 8
        + [[p, "stop", None, 0, 8.0, 200] for p in reference_prompts(52, seed=5)]
    )
    result = backend.predict(bad)
    shares = {f.name: f for f in result.features}
    assert shares["error_share"].value == pytest.approx(0.08) and shares["error_share"].is_drift
    assert shares["finish_length_share"].value == pytest.approx(20 / 92) and shares["finish_length_share"].is_drift
    assert shares["refusal_share"].value == pytest.approx(15 / 92) and shares["refusal_share"].is_drift
    assert shares["empty_share"].value == 0 and not shares["empty_share"].is_drift
    assert REFUSAL in result.raw["examples"]["refusal_share"]


def test_fit_reports_embedding_progress_and_writes_a_folder_without_pickles(tmp_path: Path):
    from infertap.detectors.fit import fit_detector
    from infertap.stack.specs.detector import Detector

    (tmp_path / "prompts.txt").write_text("\n".join(REFERENCE))
    doc = Detector.model_validate(
        {
            "apiVersion": "infertap.dev/v1alpha1",
            "kind": "Detector",
            "metadata": {"name": "p"},
            "spec": {
                "source": {"inferenceService": "llm"},
                "features": [{"name": "prompt", "type": "text"}],
                "detector": {
                    "name": "TextMMDDrift",
                    "params": {**PARAMS, "batch_size": 32},
                    "reference": "prompts.txt",
                },
            },
        }
    )
    stages: list[str] = []
    outcome = fit_detector(doc, tmp_path, progress=lambda stage, done, total: stages.append(stage))
    assert any(s.endswith("embedding the reference 32/240") for s in stages)
    assert any(s.endswith("embedding the reference 240/240") for s in stages)
    assert outcome.rows == 240 and outcome.summary["drift_on_held_out"] is False
    assert not pickles_in(outcome.path) and (outcome.path / "state.npz").is_file()


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("TextMMDDrift", {"p_vals": 0.1}, "unknown parameter 'p_vals'"),
        ("TextMMDDrift", {"permutations": 1}, "parameter 'permutations'"),
        ("TextOOD", {"method": "lof"}, "parameter 'method'"),
        ("TextClassifierDrift", {"field": "system"}, "field 'system' is not a text feature"),
        ("TextSuite", {"detectors": [{"name": "ScipyKS"}]}, "a member is one of"),
        ("LLMResponseSignals", {"refusal_patterns": ["(unclosed"]}, "refusal_patterns.0"),
        ("TextMMDDrift", {"model": "/nowhere"}, None),
    ],
)
def test_bad_parameters_are_one_sentence(name, params, message):
    backend_params = {**PARAMS, **params} if name != "LLMResponseSignals" else params
    if message is None:  # a model folder that is not there: said when the model is first needed
        backend = create_backend(name, ["prompt"], backend_params)
        with pytest.raises(ValueError, match="not a Hugging Face model folder"):
            backend.fit(REFERENCE)
        return
    with pytest.raises(ValueError, match=message):
        create_backend(name, ["prompt"], backend_params)


def test_reference_from_uses_the_feature_message_selection(tmp_path: Path):
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}
    (tmp_path / "r.jsonl").write_text(json.dumps(chat) + "\n")
    backend = create_backend("TextDescriptorDrift", ["system"], {**PARAMS, "field": "system"})
    features = [FeatureSettings(name="system", type="text", messages="system")]
    assert backend.reference_from(tmp_path / "r.jsonl", features) == ["Be brief."]


def test_a_worker_given_a_corpus_fits_at_start(tmp_path: Path):
    from infertap.detectors.evaluator import build_backend
    from infertap.detectors.settings import WorkerSettings

    (tmp_path / "answers.jsonl").write_text("\n".join(json.dumps(answer(p)) for p in reference_prompts(50, seed=2)))
    settings = WorkerSettings(
        name="a",
        inference_service="llm",
        events="response",
        detector="LLMResponseSignals",
        reference=tmp_path / "answers.jsonl",
    )
    backend = build_backend(settings)
    assert backend.ref["output_tokens"].tolist()[:2] == [len(p.split()) for p in reference_prompts(2, seed=2)]
