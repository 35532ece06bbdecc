"""Cost of one ROME edit (covariance cached, prefixes sampled, layer given) versus one forward+backward pass.

Model: the embedded ``ref-gpt2`` when its checkpoint is present, else a random GPT-2 of the same size (6 layers,
d_model 192, 6 heads, n_ctx 64). The forward+backward pass runs on the batch the edit optimises over (the prompt
with its prefixes plus the KL prompt, target appended), so the ratio counts the edit's passes. The edit is undone
after each timing; the key statistics live in a temporary cache filled before timing.
"""

from __future__ import annotations

import os
import tempfile

import torch

from benchmarks.runner import Ratio, median_seconds, reference_gpt2

PROMPT, SUBJECT, TARGET = "{} is located in the city of", "the Eiffel Tower", " Rome"


def run() -> list[Ratio]:
    """Time ``rome.edit`` + ``undo`` and one forward+backward pass of the edit's batch."""
    from interp import rome
    from interp.core.hooks import hook_name, hooked
    from interp.core.tokens import pad_id, pad_right, tokenize

    os.environ["INTERP_CACHE"] = tempfile.mkdtemp(prefix="bench-rome-cache-")
    folder, model = reference_gpt2()
    config = rome.RomeConfig().sized(model)
    layer = 0  # the layer chosen on the dev split (see RomeConfig)
    rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=TARGET, layer=layer, config=config).undo()

    texts = [PROMPT.format(SUBJECT)]
    texts += [p + config.prefix_sep + PROMPT.format(SUBJECT) for p in rome.prefixes(model, config)]
    target_ids = model.tokenizer.encode(TARGET, add_special_tokens=False)
    rows = [tokenize(model, t).tokens[0].tolist() + target_ids[:-1] for t in texts]
    rows.append(tokenize(model, rome.KL_PROMPT.format(SUBJECT)).tokens[0].tolist())
    tokens = pad_right(rows, pad_id(model.tokenizer)).tokens
    delta = torch.zeros(model.cfg.d_model, requires_grad=True)

    def edit_once():
        rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=TARGET, layer=layer, config=config).undo()

    def forward_backward():
        with hooked(model, [(hook_name("mlp_out", layer), lambda x, hook: x + delta)]):
            loss = model(tokens).float().log_softmax(-1)[:, -1, 0].mean()
        torch.autograd.grad(loss, [delta])

    t = median_seconds({"edit": edit_once, "fwd_bwd": forward_backward}, repeats=5, warmup=1)
    detail = (f"edit {t['edit']:.3f} s / forward+backward {1000 * t['fwd_bwd']:.1f} ms; {folder.name}, layer {layer}, "
              f"batch {tuple(tokens.shape)}, {config.steps} steps max, {torch.get_num_threads()} threads")
    return [
        # At most config.steps (100) Adam steps, each one forward+backward of this batch, plus a few forwards.
        Ratio("rome_edit_vs_forward_backward", t["edit"] / t["fwd_bwd"], 120.0, detail),
        Ratio("rome_edit_seconds_vs_2s", t["edit"] / 2.0, 1.0, f"edit {t['edit']:.3f} s against the 2 s target"),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.line())
