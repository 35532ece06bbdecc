"""Cost of capturing every alias versus a plain forward of the same batch, and versus TransformerLens' cache.

Model: the embedded ``ref-gpt2`` when its checkpoint is present, else a random GPT-2 of the
same size (6 layers, d_model 192, 6 heads, vocab 3072, n_ctx 64). Batch: 16 x 64 random tokens.

Most of the capture overhead on CPU is page faults, not hooks: capture keeps ~36 MB of
activations alive, so the forward cannot recycle those buffers and glibc hands fresh pages
(zeroed by the kernel) to every run. Running with ``MALLOC_TRIM_THRESHOLD_`` and
``MALLOC_MMAP_THRESHOLD_`` set high (the detail column says whether they are) lets freed
captures be reused and shows the hook overhead alone.
"""

from __future__ import annotations

import os
import resource

import torch

from benchmarks.runner import Ratio, median_seconds, reference_gpt2

BATCH, POS = 16, 64




def run() -> list[Ratio]:
    """Time plain HF forward, bridge forward and ``capture(names="all")`` on one batch."""
    from transformers import AutoModelForCausalLM

    import interp

    folder, model = reference_gpt2()
    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    info = interp.model_info(model)
    tokens = torch.randint(0, info.d_vocab, (BATCH, min(POS, info.n_ctx)), generator=torch.Generator().manual_seed(0))
    names = interp.resolve_names(model, "all")
    n_hooks = len(names)

    def hf_forward():
        with torch.no_grad():
            hf(tokens)

    def bridge_forward():
        with torch.no_grad():
            model(tokens)

    def capture_all():
        interp.capture(model, tokens, names="all")

    def transformer_lens():  # what bench_scale compares against: TransformerLens' own cache of the same hooks
        with torch.no_grad():
            model.run_with_cache(tokens, names_filter=names)

    # Capture and TL each run right after a plain forward: whichever of the two follows the other reuses the pages
    # it freed and takes about half the page faults, enough to flip their ratio.
    t = median_seconds({"hf": hf_forward, "capture": capture_all, "bridge": bridge_forward, "tl": transformer_lens},
                       repeats=15)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    capture_all()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    tuned = "tuned" if os.environ.get("MALLOC_TRIM_THRESHOLD_") else "default"
    setup = (f"{folder.name}, batch {tuple(tokens.shape)}, {torch.get_num_threads()} threads, "
             f"{faults} page faults per capture, {tuned} malloc")
    ms = {k: f"{1000 * v:.1f} ms" for k, v in t.items()}
    return [
        Ratio("capture_all_vs_bridge_forward", t["capture"] / t["bridge"], 1.5,
              f"capture {ms['capture']} ({n_hooks} hooks) / bridge {ms['bridge']}; {setup}"),
        Ratio("bridge_forward_vs_hf_forward", t["bridge"] / t["hf"], 1.25,
              f"bridge {ms['bridge']} / HF eager {ms['hf']}"),
        Ratio("capture_all_vs_hf_forward", t["capture"] / t["hf"], 1.5,
              f"capture {ms['capture']} / HF eager {ms['hf']}"),
        Ratio("capture_all_vs_transformer_lens", t["capture"] / t["tl"], 1.0,
              f"capture {ms['capture']} / TL run_with_cache of the same {n_hooks} hooks {ms['tl']}"),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.line())
