"""Logit lens over every layer and position of a 16 x 64 batch versus its floor, and versus one plain forward.

Model: the embedded ``ref-gpt2`` when present, else a random GPT-2 of the same size. The lens keeps per-layer
summaries (top-k tokens, KL to the final layer) and never holds the ``[layer batch pos vocab]`` log-probabilities
(issue #21), so it must decode every layer: its floor is the forward (capturing the residual stream) plus, per
layer, one final norm + unembedding and one log-softmax of the whole batch, which is what KL and ranks need.
Target (issue #21): lens <= 1.3 x that floor, without a target and with one (whose rank and log-probability are
kept on top of top-k and KL). The ratio to a plain forward is reported beside the first (the decoding alone is
``n_layers + 1`` unembeddings where the forward does one). All four are timed round-robin in one process.
"""

from __future__ import annotations

import torch

from benchmarks.runner import Ratio, median_seconds, reference_gpt2

BATCH, POS = 16, 64


def run() -> list[Ratio]:
    """Time ``logit_lens`` on a 16 x 64 token batch and a bridge forward of the same batch."""
    import interp
    from interp.core.hooks import hook_name, layer_names
    from interp.lens.logit import logit_lens

    folder, model = reference_gpt2()
    info = interp.model_info(model)
    tokens = torch.randint(1, info.d_vocab, (BATCH, min(POS, info.n_ctx)), generator=torch.Generator().manual_seed(0))
    names = [hook_name("resid_pre", 0), *layer_names("resid_post", range(info.n_layers))]

    def lens():
        logit_lens(model, tokens)

    def lens_target():
        logit_lens(model, tokens, target=int(tokens[0, -1]))

    def forward():
        with torch.no_grad():
            model(tokens)

    def floor():
        cap = interp.capture(model, tokens, names=names)
        with torch.no_grad():
            for name in names:
                model.unembed(model.ln_final(cap[name])).log_softmax(-1)

    t = median_seconds({"lens": lens, "lens_target": lens_target, "forward": forward, "floor": floor}, repeats=9)
    ms = {k: f"{1000 * v:.1f} ms" for k, v in t.items()}
    return [
        Ratio("logit_lens_vs_floor", t["lens"] / t["floor"], 1.3,
              f"lens {ms['lens']} / floor {ms['floor']} (capture + {info.n_layers + 1} x [{BATCH * tokens.shape[1]} x "
              f"{info.d_vocab}] unembedding + log-softmax); lens / plain forward ({ms['forward']}) "
              f"{t['lens'] / t['forward']:.2f}; {folder.name}, {torch.get_num_threads()} threads"),
        Ratio("logit_lens_target_vs_floor", t["lens_target"] / t["floor"], 1.3,
              f"lens with a target (rank + log-prob kept) {ms['lens_target']} / floor {ms['floor']}"),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.line())
