"""Build a tiny but real Llama model + byte-level BPE tokenizer locally (no hub downloads).

Random weights with a large ``initializer_range`` make greedy output depend strongly on the prompt,
so batching or padding bugs change the text instead of hiding behind a constant answer.
"""

from __future__ import annotations

import json
from pathlib import Path

from evalsite.studies.datasets import koala_test_set

KOALA = koala_test_set()
REPO = Path(__file__).resolve().parents[2]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def training_text() -> list[str]:
    """Koala prompts when present, else the repository's own Python and Markdown."""
    if KOALA is not None:
        return [json.loads(line)["prompt"] for line in KOALA.read_text().splitlines() if line.strip()]
    files = [p for p in REPO.rglob("*") if p.suffix in {".py", ".md"} and ".venv" not in p.parts]
    return [p.read_text(errors="ignore") for p in files[:200]]


def build_tiny_model(out_dir: Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Train the tokenizer, build a 2-layer Llama (head_dim 64) and save both to ``out_dir``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(training_text(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=256,
        initializer_range=0.2, tie_word_embeddings=False, pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id, bos_token_id=fast.bos_token_id,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    fast.save_pretrained(out_dir)
    return out_dir
