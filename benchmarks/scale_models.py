"""The model shapes ``bench_scale`` measures, saved as seeded random-init checkpoints (never downloaded).

``gpt2-toy`` is a seconds-long smoke test of the benchmark itself; ``gpt2-small``, ``pythia-410m`` and ``llama-1b``
have the shapes of GPT-2 small, Pythia-410M and Llama-3.2-1B; ``llama-8b`` (Llama-3.1-8B's shape) is for GPU machines.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

_COMMON = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": None}
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    # A seconds-long smoke test of the benchmark itself, not a measurement.
    "gpt2-toy": ("GPT2Config", {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 1024, "vocab_size": 1000}),
    "gpt2-small": ("GPT2Config", {
        "n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024, "vocab_size": 50257}),
    "pythia-410m": ("GPTNeoXConfig", {
        "num_hidden_layers": 24, "num_attention_heads": 16, "hidden_size": 1024, "intermediate_size": 4096,
        "max_position_embeddings": 2048, "rotary_pct": 0.25, "use_parallel_residual": True, "vocab_size": 50304,
        "tie_word_embeddings": False}),
    "llama-1b": ("LlamaConfig", {
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 2048,
        "intermediate_size": 8192, "head_dim": 64, "max_position_embeddings": 8192, "rope_theta": 500000.0,
        "vocab_size": 128256, "tie_word_embeddings": True}),
    "llama-8b": ("LlamaConfig", {
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096,
        "intermediate_size": 14336, "head_dim": 128, "max_position_embeddings": 8192, "rope_theta": 500000.0,
        "vocab_size": 128256, "tie_word_embeddings": False}),
}
DEFAULT_MODELS = ("gpt2-small", "pythia-410m", "llama-1b")


def save_checkpoint(name: str, folder: Path, dtype: str, device: str) -> Path:
    """Save a seeded random-init model of the named shape (and the toy tokenizer) unless ``folder`` has one."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers

    from interp.core.toy_models import toy_tokenizer

    class_name, sizes = MODELS[name]
    config = getattr(transformers, class_name)(**sizes, **_COMMON)
    torch.manual_seed(0)
    with torch.device(device):  # initialising 8B parameters is minutes on a CPU, seconds on a GPU
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    toy_tokenizer().save_pretrained(partial)
    partial.rename(folder)
    return folder
