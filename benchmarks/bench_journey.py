"""The token's journey and speculative decoding on the reference models.

1. ``journey_all_stages_vs_run_with_cache``: :func:`interp.journey.run` (all nine stages, one capture,
   with an analogy) on a 16-token reference-world prompt, over one plain ``run_with_cache`` of it.
2. ``speculative_vs_plain_*``: time of :func:`interp.speculative_generate` (target ``ref-llama``,
   draft ``ref-gpt2``, 4 drafted tokens per round, 32 new tokens) over KV-cached :func:`interp.generate`
   with ``ref-llama`` alone, greedy and sampled (T=1). A ratio below 1 is a speed-up. On models this
   small the draft costs about as much as the target, so a speed-up is not expected; the detail column
   gives the acceptance rate and tokens per target pass, which do not depend on the machine.

Needs the shipped checkpoints (both reference models).
"""

from __future__ import annotations

import torch

from benchmarks.runner import Ratio, median_seconds

POSITIONS = 16
NEW_TOKENS = 32


def _prompt(model, n_tokens: int) -> str:
    """A reference-world sentence cut to exactly ``n_tokens`` tokens (BOS included) at a word boundary."""
    import interp
    from interp.reference.world import World

    for doc in World().documents(200):
        words = doc.split(" ")
        for end in range(1, len(words) + 1):
            text = " ".join(words[:end])
            if interp.tokenize(model, text).tokens.shape[1] == n_tokens:
                return text
    raise RuntimeError(f"no reference-world prefix of exactly {n_tokens} tokens")


def run() -> list[Ratio]:
    """Time the journey against ``run_with_cache``, and speculative against plain decoding."""
    import interp
    from interp import journey

    gpt2, llama = interp.load("ref-gpt2", device="cpu"), interp.load("ref-llama", device="cpu")
    prompt = _prompt(gpt2, POSITIONS)
    tokens = interp.tokenize(gpt2, prompt).tokens

    def all_stages():
        journey.run(gpt2, prompt, layer=1, head=0, analogy_words=("king", "man", "woman"))

    def plain_cache():
        with torch.no_grad():
            gpt2.run_with_cache(tokens)

    t = median_seconds({"journey": all_stages, "run_with_cache": plain_cache}, repeats=15)
    results = [Ratio("journey_all_stages_vs_run_with_cache", t["journey"] / t["run_with_cache"], 2.0,
                     f"journey {1000 * t['journey']:.1f} ms / run_with_cache {1000 * t['run_with_cache']:.1f} ms; "
                     f"ref-gpt2, {POSITIONS} tokens, {torch.get_num_threads()} threads")]

    spec_prompt = "The Eiffel Tower is located in the city of"
    for label, sampling in (("greedy", {"temperature": 0}), ("sampled_t1", {"temperature": 1.0, "seed": 0})):
        spec = interp.speculative_generate(llama, gpt2, spec_prompt, max_new_tokens=NEW_TOKENS, n_draft=4,
                                           stop_at_eos=False, **sampling)

        def speculative(sampling=sampling):
            interp.speculative_generate(llama, gpt2, spec_prompt, max_new_tokens=NEW_TOKENS, n_draft=4,
                                        stop_at_eos=False, **sampling)

        def plain(sampling=sampling):
            interp.generate(llama, spec_prompt, max_new_tokens=NEW_TOKENS, stop_at_eos=False, **sampling)

        s = median_seconds({"speculative": speculative, "plain": plain}, repeats=5, warmup=1)
        results.append(Ratio(
            f"speculative_vs_plain_{label}", s["speculative"] / s["plain"], 1.0,
            f"speculative {s['speculative']:.3f} s / plain {s['plain']:.3f} s (speed-up "
            f"{s['plain'] / s['speculative']:.2f}x); acceptance {spec.acceptance_rate:.1%}, "
            f"{spec.tokens_per_target_call:.2f} tokens per target pass; target ref-llama, draft ref-gpt2, "
            f"n_draft 4, {NEW_TOKENS} tokens"))
    return results


if __name__ == "__main__":
    for result in run():
        print(result.line())
