"""Cost of probing every layer (collect activations + fit probes with control task) versus the forward passes alone.

Model: the embedded ``ref-gpt2`` when its checkpoint is present, else a random GPT-2 of the same
size. Prompts: 1,000 reference-world ``relation`` prompts (one probed position each, read at
``resid_post`` of all layers). The baseline runs the same length-sorted batches of 64 through
the bridge under ``no_grad``, already tokenized; the subject is :func:`probes.fit` end to end
(tokenizing, one capture per batch, gathering positions, splitting, fitting main and control
probes on every layer).
"""

from __future__ import annotations

import torch

from benchmarks.runner import Ratio, median_seconds, reference_gpt2

N_PROMPTS, BATCH = 1000, 64




def _task(model):
    import interp
    import probes

    full = probes.world_task("relation", model, per_subject=4, seed=0)
    n_ctx = interp.model_info(model).n_ctx
    lengths = {}
    examples = []
    for ex in full.examples:
        if ex.text not in lengths:
            lengths[ex.text] = len(model.tokenizer.encode(ex.text, add_special_tokens=False)) + 1
        if lengths[ex.text] <= n_ctx and len(examples) < N_PROMPTS:
            examples.append(ex)
    return probes.ProbeTask("relation", examples)


def run() -> list[Ratio]:
    """Time ``probes.fit`` on all layers against the bare forward passes over the same prompts."""
    import interp
    import probes

    folder, model = reference_gpt2()
    task = _task(model)
    texts = list(dict.fromkeys(ex.text for ex in task.examples))
    batch = interp.tokenize(model, texts)
    lengths = batch.attention_mask.sum(-1)
    order = lengths.argsort().tolist()
    batches = []
    for start in range(0, len(order), BATCH):
        idx = torch.tensor(order[start : start + BATCH])
        width = int(lengths[idx].max())
        batches.append((batch.tokens[idx, :width], batch.attention_mask[idx, :width]))

    def forward():
        with torch.no_grad():
            for tokens, mask in batches:
                model(tokens, attention_mask=mask)

    def probe_all_layers():
        probes.fit(model, task)

    def collect_only():
        probes.collect(model, task, layers=list(range(interp.model_info(model).n_layers)))

    t = median_seconds({"forward": forward, "probe": probe_all_layers, "collect": collect_only}, repeats=5, warmup=1)
    setup = (f"{folder.name}, {len(texts)} prompts, {len(task)} examples, "
             f"{interp.model_info(model).n_layers} layers, {torch.get_num_threads()} threads")
    return [
        Ratio("probe_all_layers_vs_forward", t["probe"] / t["forward"], 3.0,
              f"fit {t['probe']:.2f} s (collect {t['collect']:.2f} s) / forward {t['forward']:.2f} s; {setup}"),
    ]


if __name__ == "__main__":
    for result in run():
        print(result.line())
