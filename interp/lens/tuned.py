"""Tuned lens: one learned affine translator per layer before the model's final norm and unembedding.

Following Belrose et al. (2023), lens layer ``l`` decodes ``h + A_l h + b_l`` instead of ``h``: a
residual parametrisation initialised at ``A_l = 0, b_l = 0``, so an untrained tuned lens *is* the
logit lens, and training only learns the correction. The last lens layer (the model's final residual
stream) has no translator: its decoding is already the model's output. Translators are trained to
minimise KL(final distribution || lens distribution) on reference-world text by default.

Files are safetensors with metadata naming the model (name, architecture, shapes) and a fingerprint
(a few embedding rows), so a lens is never applied to a model it was not trained for.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from interp.core.capturing import capture
from interp.core.files import atomic_path, check_can_write
from interp.core.hooks import hook_name, layer_names
from interp.core.locking import holds_models
from interp.core.model_info import model_info
from interp.core.tokens import Prompts
from interp.lens.logit import MAX_ELEMENTS, LensResult, Target, run_lens
from interp.lens.scan import TOP_K
from interp.reference.world_text import world_tokens

FILENAME = "tuned_lens.safetensors"
"""Name of the lens file shipped beside a checkpoint."""
FORMAT = "interp.tuned_lens/1"
_FINGERPRINT_ROWS = 16


class TunedLens:
    """Affine translators ``h -> h + h @ A_l.T + b_l`` for lens layers ``0..n_layers-1``.

    Examples:
        >>> lens = TunedLens.train(model, steps=200)  # doctest: +SKIP
        >>> lens.save("my_lens.safetensors")  # doctest: +SKIP
        >>> loaded = TunedLens.load("my_lens.safetensors", model)  # doctest: +SKIP
        >>> loaded.apply(model, "The capital of France is").kl_to_final()  # doctest: +SKIP
    """

    def __init__(self, n_layers: int, d_model: int, meta: dict[str, Any] | None = None):
        """Make an identity lens (``A = 0``, ``b = 0``) for a model with ``n_layers`` blocks."""
        self.weight: Float[torch.Tensor, "layer d_model d_model"] = torch.zeros(n_layers, d_model, d_model)
        """``A_l``: the learned linear correction of each translated lens layer."""
        self.bias: Float[torch.Tensor, "layer d_model"] = torch.zeros(n_layers, d_model)
        """``b_l``: the learned offset of each translated lens layer."""
        self.meta: dict[str, Any] = dict(meta or {})
        """Identity of the model (name, shapes, embedding fingerprint) and how the lens was trained."""

    def __call__(self, resid: Float[torch.Tensor, "layer ... d_model"]) -> Float[torch.Tensor, "layer ... d_model"]:
        """Translate residuals of all ``n_layers + 1`` lens layers (the last is left as it is)."""
        n = self.weight.shape[0]
        if resid.shape[0] != n + 1:
            raise ValueError(f"got {resid.shape[0]} lens layers, this lens translates {n} (+ the final one)")
        head = resid[:n]
        flat = head.reshape(n, -1, head.shape[-1])
        moved = flat + torch.bmm(flat, self.weight.to(flat).transpose(1, 2)) + self.bias.to(flat)[:, None]
        return torch.cat([moved.reshape(head.shape), resid[n:]])

    @classmethod
    def train(
        cls,
        model: Any,
        texts: Prompts | None = None,
        *,
        steps: int = 500,
        lr: float = 1e-3,
        n_seqs: int = 256,
        tokens_per_step: int = 1024,
        seed: int = 1,
        progress: bool = True,
    ) -> TunedLens:
        """Learn the translators of ``model`` by minimising KL to its final distribution.

        The model runs once over the text (one capture of the residual streams and logits); training
        then only touches the translators, the final norm and the unembedding.

        Args:
            model: A ``TransformerBridge``.
            texts: Training text (strings or tokens). Default: ``n_seqs`` context-length sequences of
                reference-world text from :class:`interp.reference.world.World` with seed ``seed``.
            steps: Optimisation steps (Adam).
            lr: Adam learning rate.
            n_seqs: Number of default sequences.
            tokens_per_step: Positions sampled per step.
            seed: Seed of the default text and of the position sampling.
            progress: Show a tqdm progress bar.

        Returns:
            The trained :class:`TunedLens` (metadata identifies ``model``).

        Raises:
            ValueError: ``steps < 1``, ``lr <= 0`` or bad texts.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r}; need at least 1 step")
        if not lr > 0:
            raise ValueError(f"lr={lr!r}; the learning rate must be positive")
        info = model_info(model)
        data = world_tokens(model, n_seqs, seed=seed) if texts is None else texts
        names = [hook_name("resid_pre", 0), *layer_names("resid_post", range(info.n_layers - 1))]
        cap = capture(model, data, names=names)
        keep = cap.attention_mask.flatten().bool()
        resid = torch.stack([cap[name].flatten(0, 1)[keep] for name in names]).float()  # [layer token d_model]
        final = cap.logits.flatten(0, 1)[keep].float().log_softmax(-1)
        lens = cls(info.n_layers, info.d_model, _identity(model, info))
        weight = torch.nn.Parameter(torch.zeros_like(lens.weight, device=resid.device))
        bias = torch.nn.Parameter(torch.zeros_like(lens.bias, device=resid.device))
        lens.meta["training"] = {"steps": steps, "lr": lr, "tokens": int(keep.sum()),
                                 "texts": f"reference world, seed {seed}" if texts is None else "given"}
        opt = torch.optim.Adam([weight, bias], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        generator = torch.Generator().manual_seed(seed)
        bar = tqdm(range(steps), desc="tuned lens", disable=not progress, mininterval=1.0)
        with _frozen(model):
            for _ in bar:
                idx = torch.randint(resid.shape[1], (min(tokens_per_step, resid.shape[1]),), generator=generator)
                h = resid[:, idx]
                moved = h + torch.bmm(h, weight.transpose(1, 2)) + bias[:, None]
                logprobs = model.unembed(model.ln_final(moved)).float().log_softmax(-1)
                target = final[idx]
                loss = (target.exp() * (target - logprobs)).sum(-1).mean(-1).sum()  # summed over layers
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.set_postfix(kl=f"{loss.item() / info.n_layers:.3f}", refresh=False)
        lens.meta["training"]["final_mean_kl"] = round(loss.item() / info.n_layers, 5)
        lens.weight, lens.bias = weight.detach(), bias.detach()
        return lens

    @holds_models("model")
    def apply(
        self,
        model: Any,
        prompt: Prompts,
        *,
        target: Target = None,
        positions: Sequence[int] | int | None = None,
        max_elements: int = MAX_ELEMENTS,
        top_k: int = TOP_K,
        full: bool = False,
        chunk_size: int | None = None,
        progress: bool = True,
    ) -> LensResult:
        """Decode every layer of ``model`` on ``prompt`` through this lens; same arguments and result as
        :func:`interp.logit_lens` (summaries kept, computed a slice of positions at a time).

        Raises:
            ValueError: the lens was trained for another model, or bad prompt/target/positions.
        """
        self.check_model(model)
        return run_lens(model, prompt, self, target=target, positions=positions, max_elements=max_elements,
                        top_k=top_k, full=full, chunk_size=chunk_size, progress=progress)

    def check_model(self, model: Any) -> None:
        """Raise ``ValueError`` unless this lens was trained for ``model`` (shapes and fingerprint)."""
        info = model_info(model)
        ours = self.meta
        theirs = _identity(model, info)
        for key in ("n_layers", "d_model", "d_vocab"):
            if ours.get(key) != theirs[key]:
                raise ValueError(f"this tuned lens was trained for {ours.get('model')!r} ({key}={ours.get(key)}), "
                                 f"not for {info.name!r} ({key}={theirs[key]}); train one with TunedLens.train(model)")
        mine, yours = torch.tensor(ours["fingerprint"]), torch.tensor(theirs["fingerprint"])
        if not torch.allclose(mine, yours, rtol=2e-2, atol=2e-3 * float(mine.abs().max())):
            raise ValueError(f"this tuned lens was trained for {ours.get('model')!r}, whose embedding differs from "
                             f"{info.name!r}'s (same shapes, other weights); train one with TunedLens.train(model)")

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the translators and the model identity to a safetensors file; returns the path.

        The file is written through a temporary and a rename, so it is never left half-written.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        from safetensors.torch import save_file

        path = Path(path)
        check_can_write(path, overwrite)
        tensors = {"weight": self.weight.detach().float().cpu().contiguous(),
                   "bias": self.bias.detach().float().cpu().contiguous()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "meta": json.dumps(self.meta)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any = None) -> TunedLens:
        """Read a lens saved by :meth:`save`; with ``model``, refuse one trained for another model.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a tuned-lens file, or trained for a different model.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tuned lens at {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  # safe_open is not a dict
        except Exception as err:  # safetensors raises its own error type for every defect
            raise ValueError(f"{path} is not a readable safetensors file ({err})") from None
        if header.get("format") != FORMAT or set(tensors) != {"weight", "bias"}:
            raise ValueError(f"{path} is not a tuned lens file (format {header.get('format')!r}, expected {FORMAT!r})")
        try:
            meta = json.loads(header["meta"])
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path} is a damaged tuned lens file: its metadata does not parse ({err})") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{path} is a damaged tuned lens file: its metadata is not a mapping")
        lens = cls(tensors["weight"].shape[0], tensors["weight"].shape[1], meta)
        lens.weight, lens.bias = tensors["weight"], tensors["bias"]
        if model is not None:
            lens.check_model(model)
        return lens

    @classmethod
    def load_for(cls, model: Any) -> TunedLens:
        """Load the lens shipped beside ``model``'s checkpoint (``tuned_lens.safetensors``).

        Raises:
            FileNotFoundError: the checkpoint directory has no lens (the message says how to make one).
            ValueError: the file there belongs to another model.
        """
        folder = Path(str(model.cfg.model_name))
        path = folder / FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"no tuned lens shipped for {model.cfg.model_name!r} (looked for {path}); "
                                    f"make one with TunedLens.train(model).save({str(path)!r})")
        return cls.load(path, model)


def _identity(model: Any, info: Any) -> dict[str, Any]:
    w_e = model.W_E.detach()
    rows = torch.linspace(0, info.d_vocab - 1, _FINGERPRINT_ROWS).long()
    return {"model": info.name, "arch": info.arch, "n_layers": info.n_layers, "d_model": info.d_model,
            "d_vocab": info.d_vocab, "fingerprint": w_e[rows.to(w_e.device)].float().cpu().tolist()}


@contextlib.contextmanager
def _frozen(model: Any) -> Iterator[None]:
    """Stop gradients from reaching the model's weights while the lens trains, restoring the flags."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
