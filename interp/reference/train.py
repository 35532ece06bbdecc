"""The training recipe of the reference models: architecture presets, data stream, loop, save.

One recipe makes both models, so they share the tokenizer of :mod:`interp.reference.tokenizer` (speculative
decoding pairs them). Training runs on
a GPU when one is present or on CPU, and is seeded end to end (for a given number of data-loader workers). A run
can continue a saved checkpoint (``init_from``) with a new schedule and batch stream: shipped ref-llama is a
GPU run continued on CPU; each checkpoint's ``CARD.md`` gives the command of every stage.

Choices that matter for what the models learn, and why:

* Sequences of repeated random tokens make up ``repeat_share`` of every batch: induction heads only form when
  copying from context pays off often, and on a small CPU budget they must pay off a lot.
* Embeddings are tied (``W_U = W_E^T``), so copying a token needs no per-token learning in the OV circuit.
* GPT-2's learned position table starts from a scaled sinusoid instead of noise: a previous-token head needs
  relative position, which a sinusoid offers through a linear map; the table is still learned.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.core.files import atomic_dir, check_can_write
from interp.reference.tokenizer import BOS, hf_tokenizer, train_tokenizer
from interp.reference.world import DEFAULT_WORLD_VERSION, World, WorldConfig


@dataclass
class Preset:
    """Architecture and optimisation settings of one training run."""

    n_layers: int = 6
    """Transformer blocks."""
    d_model: int = 192
    """Residual stream width."""
    n_heads: int = 6
    """Query heads per layer."""
    n_kv_heads: int = 2
    """Key/value heads per layer (Llama only; GPT-2 has one per query head)."""
    d_mlp: int = 768
    """GPT-2 MLP width; Llama uses ``llama_d_mlp`` (three matrices instead of two)."""
    llama_d_mlp: int = 512
    """Llama SwiGLU width, about 2/3 of ``d_mlp`` so both models have similar parameter counts."""
    n_ctx: int = 64
    """Training sequence length and GPT-2's position table size."""
    vocab_size: int = 3072
    """BPE vocabulary size, special token included."""
    batch: int = 128
    """Sequences per optimisation step."""
    steps: int = 20000
    """Optimisation steps (an upper bound when training runs under a time budget)."""
    lr: float = 1.5e-3
    """Peak learning rate (AdamW), reached after ``warmup`` steps, then cosine decay to 10%."""
    warmup: int = 500
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    repeat_share: float = 0.25
    """Share of sequences made of repeated random-token spans."""
    tokenizer_docs: int = 60000
    """Documents used to train the BPE tokenizer."""


PRESETS: dict[str, Preset] = {
    "full": Preset(),
    "deep": Preset(n_layers=8, d_model=160, n_heads=4, n_kv_heads=2, d_mlp=640, llama_d_mlp=432),
    "v1": Preset(n_layers=4, d_model=128, n_heads=4, n_kv_heads=2, d_mlp=512, llama_d_mlp=384, batch=32,
                 steps=12000, lr=2.5e-3, warmup=300, repeat_share=0.35),
    "quick": Preset(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_mlp=256, llama_d_mlp=192,
                    vocab_size=1024, batch=16, steps=300, warmup=30, tokenizer_docs=8000),
}
"""Named presets: ``full`` makes the shipped checkpoints (on a GPU: a few minutes), ``deep`` a narrower
eight-layer alternative, ``v1`` the first, smaller
checkpoints (12,000 steps at about 0.2 s each on 2 CPU cores), ``quick`` a small model in about a minute."""


def build_model(arch: str, preset: Preset, vocab_size: int, seed: int):
    """A freshly initialised GPT-2 or Llama model for ``preset``."""
    torch.manual_seed(seed)
    if arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=vocab_size, n_positions=preset.n_ctx, n_embd=preset.d_model,
                         n_layer=preset.n_layers, n_head=preset.n_heads, n_inner=preset.d_mlp,
                         activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
        model = GPT2LMHeadModel(cfg)
        pos = torch.arange(preset.n_ctx).float()[:, None]
        freq = torch.exp(-math.log(10000.0) * torch.arange(0, preset.d_model, 2).float() / preset.d_model)
        table = torch.zeros(preset.n_ctx, preset.d_model)
        table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        with torch.no_grad():
            model.transformer.wpe.weight.copy_(0.03 * table)
        return model
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=preset.d_model, intermediate_size=preset.llama_d_mlp,
                          num_hidden_layers=preset.n_layers, num_attention_heads=preset.n_heads,
                          num_key_value_heads=preset.n_kv_heads, max_position_embeddings=preset.n_ctx,
                          rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                          bos_token_id=0, eos_token_id=0, pad_token_id=0, attention_dropout=0.0)
        return LlamaForCausalLM(cfg)
    raise ValueError(f"arch={arch!r}; valid architectures are 'gpt2' and 'llama'")


class Stream:
    """Seeded stream of training batches: packed world documents and repeated random-token spans."""

    def __init__(self, world: World, tok, preset: Preset, seed: int):
        """Draw batches from ``world`` (tokenized by ``tok``) in ``preset``'s shape, seeded by ``seed``."""
        self.world, self.tok, self.preset = world, tok, preset
        self.rng = random.Random(seed)
        self.vocab = tok.get_vocab_size()
        self.bos = tok.token_to_id(BOS)
        self.newline = tok.encode("\n").ids
        self._pending: list[list[int]] = []

    def _document_ids(self) -> list[int]:
        if not self._pending:  # encode documents in batches: the Rust tokenizer is much faster that way
            self._pending = [e.ids for e in self.tok.encode_batch(self.world.documents(256))][::-1]
        return self._pending.pop()

    def _text_sequence(self) -> list[int]:
        ids = [self.bos]
        while len(ids) < self.preset.n_ctx + 1:
            ids += self._document_ids() + self.newline
        return ids[: self.preset.n_ctx + 1]

    def _repeat_sequence(self) -> list[int]:
        span = self.rng.randint(6, 31)
        r = [self.rng.randrange(1, self.vocab) for _ in range(span)]  # id 0 is the special BOS token
        body = r * (self.preset.n_ctx // span + 1)
        return [self.bos] + body[: self.preset.n_ctx]

    def batch(self) -> torch.Tensor:
        """One ``[batch, n_ctx + 1]`` tensor of token ids (inputs and shifted targets)."""
        rows = [self._repeat_sequence() if self.rng.random() < self.preset.repeat_share else self._text_sequence()
                for _ in range(self.preset.batch)]
        return torch.tensor(rows, dtype=torch.long)


class _Batches(torch.utils.data.IterableDataset):
    """Endless batches; DataLoader worker ``i`` of ``n`` draws from its own stream seeded ``(seed, i)``."""

    def __init__(self, seed: int, tok_json: str, preset: Preset, world_version: int):
        self.seed, self.tok_json, self.preset, self.world_version = seed, tok_json, preset, world_version

    def __iter__(self):
        from tokenizers import Tokenizer

        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        seed = self.seed if info is None else self.seed * 1000 + worker
        world = World(WorldConfig(seed=seed, version=self.world_version))
        stream = Stream(world, Tokenizer.from_str(self.tok_json), self.preset, seed)
        while True:
            yield stream.batch()


@dataclass
class TrainResult:
    """What a training run produced."""

    out: Path
    """Checkpoint directory."""
    losses: list[float] = field(default_factory=list)
    """Training loss per logged step."""
    seconds: float = 0.0
    """Wall time of the optimisation loop."""


def train(arch: str, out: str | Path, *, preset: str | Preset = "full", steps: int | None = None,
          seed: int = 0, device: str | None = None, tokenizer_dir: str | Path | None = None,
          log_every: int = 50, save_every: int = 2000, workers: int = 0,
          budget_s: float | None = None, init_from: str | Path | None = None, lr: float | None = None,
          warmup: int | None = None, data_seed: int | None = None,
          world_version: int = DEFAULT_WORLD_VERSION, overwrite: bool = False) -> TrainResult:
    """Train a reference model and save it in Hugging Face layout with ``world.json`` beside it.

    Every save builds the checkpoint in a temporary folder beside ``out`` and swaps it in whole
    (:func:`interp.core.files.atomic_dir`): a run killed at any moment leaves ``out`` holding the previous complete
    checkpoint or the new one.

    Args:
        arch: ``"gpt2"`` or ``"llama"``.
        out: Output directory (created). Must be new or empty unless ``overwrite``, and not ``init_from``.
        preset: ``"full"`` (the shipped checkpoints), ``"v1"``, ``"quick"`` (about a minute on CPU) or a
            :class:`Preset`.
        steps: Override the preset's step count.
        seed: Seeds the world, the tokenizer corpus, the initialisation and the batch stream.
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when available.
        tokenizer_dir: Reuse the tokenizer saved in this directory (so that several models share it).
        log_every: Steps between logged losses.
        save_every: Steps between intermediate saves to ``out`` (a long run can be stopped and still leave a
            usable checkpoint).
        workers: Data-loader processes drawing batches (0: in this process). Each draws from its own seeded
            stream, so a run is reproducible for a given number of workers.
        budget_s: Time budget of the optimisation loop. The speed of the first steps of the warm-up fixes the
            number of steps (at most the preset's) so that the learning-rate schedule ends on time; the number
            used is saved in ``training.json`` and ``steps=`` reproduces the run without a budget.
        init_from: Continue training the checkpoint in this directory (its weights and tokenizer; a fresh
            optimiser and a new warm-up and cosine schedule) instead of initialising a new model. Its
            architecture must match ``preset``; its ``training.json`` is kept inside the new one, so the card
            lists every stage of the recipe.
        lr: Override the preset's peak learning rate.
        warmup: Override the preset's warm-up steps.
        data_seed: Seed of the batch stream (default: ``seed``). A continuation should use another one than the
            run it continues, so that it sees new documents. ``world.json`` always comes from ``seed``.
        world_version: Version of the world generator that makes the training text and ``world.json`` (see
            `docs/world_versions.md`); a continuation may train on a newer world than the run it continues.
        overwrite: Replace what ``out`` holds (at the first save, not before).

    Returns:
        A :class:`TrainResult` with the output directory and the loss curve.

    Raises:
        ValueError: a bad setting, or ``out`` is the ``init_from`` folder.
        FileExistsError: ``out`` is a non-empty folder (or a file) and ``overwrite`` is False.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r}; valid presets are {sorted(PRESETS)}")
        preset = PRESETS[preset]
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps={steps}; must be >= 1")
        preset = Preset(**{**asdict(preset), "steps": steps})
    if lr is not None:
        if not lr > 0:
            raise ValueError(f"lr={lr}; must be > 0")
        preset = Preset(**{**asdict(preset), "lr": lr})
    if warmup is not None:
        if not 0 <= warmup < preset.steps:
            raise ValueError(f"warmup={warmup}; must be in [0, {preset.steps - 1}] (below the number of steps)")
        preset = Preset(**{**asdict(preset), "warmup": warmup})
    if workers < 0:
        raise ValueError(f"workers={workers}; must be >= 0")
    if save_every < 1 or log_every < 1:
        raise ValueError(f"save_every={save_every}, log_every={log_every}; both must be >= 1 step")
    if budget_s is not None and budget_s <= 0:
        raise ValueError(f"budget_s={budget_s}; must be > 0 seconds")
    world = World(WorldConfig(seed=seed, version=world_version))  # refuses a bad version before anything is made
    out = Path(out)
    if init_from is not None and out.resolve() == Path(init_from).resolve():
        raise ValueError(f"out={str(out)!r} is the init_from checkpoint {str(init_from)!r} (both resolve to "
                         f"{out.resolve()}); write the continued model to another folder so the one it continues "
                         f"stays whole")
    check_can_write(out, overwrite)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True

    from tokenizers import Tokenizer

    if init_from is not None:
        init_from = Path(init_from)
        tokenizer_dir = tokenizer_dir or init_from
        model, previous = _load_for_training(init_from, arch, preset)
        torch.manual_seed(seed)
    if tokenizer_dir is not None:
        tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    else:
        tok = train_tokenizer(World(WorldConfig(seed=seed + 100)), preset.vocab_size, preset.tokenizer_docs)
    if init_from is None:
        model = build_model(arch, preset, tok.get_vocab_size(), seed)
    elif model.config.vocab_size != tok.get_vocab_size():
        raise ValueError(f"tokenizer_dir={str(tokenizer_dir)!r} has {tok.get_vocab_size()} tokens but the model in "
                         f"init_from={str(init_from)!r} has a vocabulary of {model.config.vocab_size}")
    model = model.to(device)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false" if workers else "true")
    stream_seed = seed if data_seed is None else data_seed
    data = _Batches(stream_seed, tok.to_str(), preset, world_version)
    batches = iter(torch.utils.data.DataLoader(data, batch_size=None, num_workers=workers,
                                               pin_memory=device.startswith("cuda"),
                                               prefetch_factor=8 if workers else None,
                                               persistent_workers=workers > 0))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": preset.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=preset.lr, betas=(0.9, 0.98))
    first = min(30, preset.warmup // 4)
    calibrate = (first, max(first + 20, min(preset.warmup, 230))) if budget_s is not None else None

    def lr_at(step: int) -> float:
        if step < preset.warmup:
            return preset.lr * (step + 1) / preset.warmup
        progress = (step - preset.warmup) / max(1, preset.steps - preset.warmup)
        return preset.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    result = TrainResult(out=out)
    model.train()
    start = time.perf_counter()
    running = None
    bar = tqdm(total=preset.steps, desc=f"train {arch}", mininterval=2.0)
    step = 0
    while step < preset.steps:
        if calibrate is not None and step in calibrate:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if step == calibrate[0]:
                mark = time.perf_counter()
            else:  # the warm-up's length does not depend on the total, so the schedule stays whole
                per_step = (time.perf_counter() - mark) / (calibrate[1] - calibrate[0])
                fit = int((budget_s - (time.perf_counter() - start)) / per_step) + step
                preset = Preset(**{**asdict(preset), "steps": max(step + 1, min(preset.steps, fit))})
                bar.total = preset.steps
                if preset.steps < 2 * preset.warmup:
                    warnings.warn(f"budget_s={budget_s} fits only {preset.steps} steps at {per_step:.2f} s each, "
                                  f"less than twice the {preset.warmup} warm-up steps: the learning rate will "
                                  f"barely decay; give a larger budget or a smaller preset", stacklevel=2)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        batch = next(batches).to(device, non_blocking=True)
        logits = model(batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % log_every == 0 or step == preset.steps - 1:
            value = loss.item()
            running = value if running is None else 0.9 * running + 0.1 * value
            result.losses.append(round(running, 4))
            bar.set_postfix(loss=f"{running:.3f}")
        if (step + 1) % save_every == 0 or step == preset.steps - 1:
            result.seconds = time.perf_counter() - start
            log = {"arch": arch, "preset": asdict(preset), "seed": seed, "device": device, "workers": workers,
                   "steps_done": step + 1, "seconds": round(result.seconds, 1), "log_every": log_every,
                   "losses": result.losses}
            if stream_seed != seed:
                log["data_seed"] = stream_seed
            if world_version != DEFAULT_WORLD_VERSION:
                log["world_version"] = world_version
            if init_from is not None:
                log["init_from"] = {"path": str(init_from), "training": previous}
            _save(model, tok, world, out, log)
            model.train()
        step += 1
        bar.update(1)
    bar.close()
    return result


def _load_for_training(folder: Path, arch: str, preset: Preset):
    """The model saved in ``folder`` (checked against ``arch`` and ``preset``) and its training log, if any."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (folder / "config.json").is_file():
        raise ValueError(f"init_from={str(folder)!r} is not a checkpoint directory (no config.json)")
    config = AutoConfig.from_pretrained(folder)
    if config.model_type != arch:
        raise ValueError(f"init_from={str(folder)!r} holds a {config.model_type!r} model; arch={arch!r}")
    fresh = build_model(arch, preset, config.vocab_size, 0).config
    keys = ["n_layer", "n_embd", "n_head", "n_inner", "n_positions"] if arch == "gpt2" else [
        "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size"]
    wrong = {k: (getattr(config, k), getattr(fresh, k)) for k in keys if getattr(config, k) != getattr(fresh, k)}
    if wrong:
        raise ValueError(f"init_from={str(folder)!r} does not match the preset: " + ", ".join(
            f"{k}={a} in the checkpoint, {b} in the preset" for k, (a, b) in wrong.items()))
    log = folder / "training.json"
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    return model, (json.loads(log.read_text()) if log.is_file() else None)


def preset_name(settings: dict) -> str:
    """The name of the preset that ``settings`` (a logged preset) was made from, or ``"custom"``.

    Steps, learning rate and warm-up can be overridden on the command line, so they are not compared.
    """
    free = {"steps", "lr", "warmup"}
    for name, preset in PRESETS.items():
        if {k: v for k, v in asdict(preset).items() if k not in free} == {
                k: v for k, v in settings.items() if k not in free}:
            return name
    return "custom"


def stages(training: dict) -> list[dict]:
    """The stages of a training log, first first: a run continued with ``init_from`` nests the log it continued."""
    chain = [training]
    while chain[-1].get("init_from", {}).get("training") is not None:
        chain.append(chain[-1]["init_from"]["training"])
    return chain[::-1]


def _save(model, tok, world: World, out: Path, log: dict) -> None:
    """Write the checkpoint into a temporary folder and swap it with ``out`` once complete."""
    model.eval()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        hf_tokenizer(tok).save_pretrained(tmp)
        (tmp / "world.json").write_text(json.dumps(world.to_json(prepend_bos=True), indent=1))
        (tmp / "training.json").write_text(json.dumps(log, indent=1))
