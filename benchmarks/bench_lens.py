"""Logit lens over every layer and position of a 16 x 64 batch versus one plain forward of that batch.

Model: the embedded ``ref-gpt2`` when present, else a random GPT-2 of the same size. The lens is timed
end to end and materialises the full ``[layer batch pos vocab]`` log-probabilities ((n_layers + 1) x 16 x 64 x vocab
floats), so every later query is a lookup. The detail column splits its time into the capture and the
decoding, which is ``n_layers + 1`` unembeddings where the forward does one.
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

    def forward():
        with torch.no_grad():
            model(tokens)

    def capture_only():
        interp.capture(model, tokens, names=names)

    t = median_seconds({"lens": lens, "forward": forward, "capture": capture_only}, repeats=9)
    ms = {k: f"{1000 * v:.1f} ms" for k, v in t.items()}
    return [
        Ratio("logit_lens_vs_forward", t["lens"] / t["forward"], 1.2,
              f"lens {ms['lens']} (capture {ms['capture']} + decode {1000 * (t['lens'] - t['capture']):.1f} ms of "
              f"{info.n_layers + 1} x [{BATCH * tokens.shape[1]} x {info.d_vocab}] log-softmaxes) / forward {ms['forward']}; "
              f"{folder.name}, {torch.get_num_threads()} threads"),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.line())
