"""Head census versus a plain forward, and versus TransformerLens' ``detect_head`` on the same heads and prompts.

Model: the embedded ``ref-gpt2`` when its checkpoint is present, else a random GPT-2 of the same size.
Prompts: 16 rows of reference-world text, each a chunk repeated once (``[BOS] + t + t``), about 60 tokens
long because ``detect_head`` only accepts sequences shorter than the context. The census is timed with
``importance=False``: pattern scores from one capture. (Importance adds ``n_layers`` ablation passes of
``n_heads x batch`` rows by design; it is not part of this ratio.) ``detect_head`` is called the way its
docs show, once per head type (previous-token, duplicate-token, induction) with the list of prompts; it
then runs one forward per prompt and scores one head at a time.
"""

from __future__ import annotations

import torch

from benchmarks.runner import Ratio, median_seconds, reference_gpt2

BATCH = 16




def run() -> list[Ratio]:
    """Time ``head_census(importance=False)``, a bridge forward and three ``detect_head`` calls."""
    from transformer_lens.head_detector import detect_head

    import interp
    from interp.heads.census import head_census

    folder, model = reference_gpt2()
    info = interp.model_info(model)
    from interp.reference.world_text import world_tokens

    # Text (which both tools tokenize the same way): a world-text chunk repeated once, shorter than the
    # context because detect_head refuses sequences of n_ctx tokens.
    chunk = world_tokens(model, BATCH, (info.n_ctx - 4) // 2, seed=0)[:, 1:]
    texts = [model.tokenizer.decode(row) * 2 for row in chunk.tolist()]
    tokens = interp.tokenize(model, texts).tokens
    same_length = bool(interp.tokenize(model, texts).attention_mask.all())

    def census():
        head_census(model, texts, importance=False)

    def forward():
        with torch.no_grad():
            model(tokens)

    def tl_detect():
        with torch.no_grad():
            for kind in ("previous_token_head", "duplicate_token_head", "induction_head"):
                detect_head(model, texts, kind)

    t = median_seconds({"census": census, "forward": forward}, repeats=9)
    t_tl = median_seconds({"census": census, "tl": tl_detect}, repeats=3, warmup=1)
    ms = {k: f"{1000 * v:.1f} ms" for k, v in (t | {"tl": t_tl["tl"]}).items()}
    padded = "" if same_length else " (padded)"
    setup = f"{folder.name}, batch {tuple(tokens.shape)}{padded}, {torch.get_num_threads()} threads"
    return [
        Ratio("head_census_vs_forward", t["census"] / t["forward"], 1.3,
              f"census {ms['census']} / forward {ms['forward']}; {setup}"),
        Ratio("head_census_vs_tl_detect_head", t_tl["census"] / t_tl["tl"], 0.1,
              f"census {1000 * t_tl['census']:.1f} ms / detect_head x3 {ms['tl']} (target: >= 10x faster)"),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.line())
