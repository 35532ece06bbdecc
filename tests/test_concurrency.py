"""Many threads, one model: every analysis gives exactly its single-threaded result (issue #20).

TransformerLens hooks live on the shared modules and ROME edits change weights in place, so without the
per-model lock of :mod:`interp.core.locking` one thread's ablation, noise or edit fires inside another
thread's forward pass. Here 16 threads share one model and mix knockouts, the head census, causal
tracing, captures, the logit lens, generation and ROME edits (applied and undone); every result must be
bit-identical to the same call run alone, and afterwards the model has no hooks and its original weights.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch

import interp
from interp import rome
from interp.core.locking import FairRLock, holding, model_lock

PROMPTS = ["The Eiffel Tower is located in the city of", "the cat sat on the mat and", "Mary gave a book to",
           "one two three four five six", "The Colosseum is in"]
SUBJECTS = ["The Eiffel Tower", "the cat", "Mary", "one two", "The Colosseum"]
CONFIG = rome.RomeConfig(n_prefixes=3, prefix_tokens=4, steps=8, stats_samples=64)
N_THREADS = 16


@pytest.fixture(scope="module", autouse=True)
def stats_cache(tmp_path_factory):
    """ROME's key statistics go to a temporary cache, never to the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERP_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def model(tiny_gpt2_dir):
    """A private copy of the tiny GPT-2: the ROME jobs edit its weights."""
    return interp.load(tiny_gpt2_dir, device="cpu")


def canonical(result: Any) -> Any:
    """A comparable form of any result: tensors as (dtype, shape, bytes), dataclasses field by field."""
    if isinstance(result, torch.Tensor):
        t = result.detach().cpu().contiguous()
        return ("tensor", str(t.dtype), tuple(t.shape), t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(
            torch.int16).numpy().tobytes())
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        # Wall-clock fields and stored callables (a lens's decode function) are not results.
        return (type(result).__name__, tuple((f.name, canonical(getattr(result, f.name)))
                                             for f in dataclasses.fields(result)
                                             if f.name != "seconds" and not callable(getattr(result, f.name))))
    if isinstance(result, dict):
        return tuple(sorted((str(k), canonical(v)) for k, v in result.items()))
    if isinstance(result, list | tuple):
        return tuple(canonical(v) for v in result)
    if isinstance(result, float | int | str | bool) or result is None:
        return result
    return repr(result)


def jobs(model: Any) -> list[tuple[str, Callable[[], Any]]]:
    """One call of each analysis per prompt, each with its own arguments."""
    out: list[tuple[str, Callable[[], Any]]] = []
    for i, (prompt, subject) in enumerate(zip(PROMPTS, SUBJECTS, strict=True)):
        out += [
            (f"knockout {i}", lambda p=prompt, i=i: interp.knock_out_head(model, p, i % 2, i % 4, "zero")),
            (f"capture {i}", lambda p=prompt: interp.capture(model, p, names=["resid"]).last_logits),
            (f"lens {i}", lambda p=prompt: interp.logit_lens(model, p)),
            (f"trace {i}", lambda p=prompt, s=subject: interp.causal_trace(model, p, s, kind="mlp", samples=2)),
            (f"generate {i}", lambda p=prompt, i=i: interp.generate(model, p, max_new_tokens=4, seed=i,
                                                                     temperature=0.8)),
        ]
        if i < 2:  # ROME, the slowest job, on two prompts
            out += [(f"rome {i}", lambda p=prompt, s=subject: _edited_next_token(model, p, s))]
    out.append(("census", lambda: interp.head_census(model, PROMPTS[:3], importance=True)))
    return out


def _edited_next_token(model: Any, prompt: str, subject: str) -> Any:
    """Edit the fact, read the next-token distribution of the edited model, undo (ROME apply/undo)."""
    base = interp.capture(model, prompt, names=[]).last_logits[0]
    target = model.tokenizer.decode([int(base.topk(3).indices[2])])
    template = prompt.replace(subject, "{}", 1)
    with rome.edited(model, prompt=template, subject=subject, target=target, layer=0, config=CONFIG):
        return interp.capture(model, prompt, names=[]).last_logits


def snapshot(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_sixteen_threads_get_their_single_threaded_results(model):
    before = snapshot(model)
    work = jobs(model)
    reference = {name: canonical(fn()) for name, fn in work}  # each job alone, one after another
    # Every job twice, interleaved across 16 threads, so that edits, noise and ablations overlap.
    schedule = [work[(k * 7) % len(work)] for k in range(2 * len(work))]
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        results = list(pool.map(lambda job: (job[0], canonical(job[1]())), schedule))
    wrong = sorted({name for name, value in results if value != reference[name]})
    assert wrong == [], f"{len(wrong)} of {len(reference)} analyses differ from their single-threaded result"
    assert not any(hp.hooks for hp in model.hook_dict.values() if hasattr(hp, "hooks")) and all(
        not getattr(hp, "_forward_hooks", {}) for hp in model.hook_dict.values())
    after = model.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == []


def test_edited_block_is_invisible_to_other_threads(model):
    """While one thread is inside ``rome.edited``, another thread's capture waits and sees the original model."""
    prompt, subject = PROMPTS[0], SUBJECTS[0]
    original = interp.capture(model, prompt, names=[]).last_logits
    inside, seen = threading.Event(), []

    def reader() -> None:
        inside.wait()
        seen.append(interp.capture(model, prompt, names=[]).last_logits)

    thread = threading.Thread(target=reader)
    thread.start()
    base = original[0]
    target = model.tokenizer.decode([int(base.topk(3).indices[2])])
    with rome.edited(model, prompt="{} is located in the city of", subject=subject, target=target, layer=0,
                     config=CONFIG):
        edited_logits = interp.capture(model, prompt, names=[]).last_logits
        inside.set()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the reader ran while the edit was applied"
    thread.join(timeout=60)
    assert not torch.equal(edited_logits, original)
    assert torch.equal(seen[0], original)


def test_the_lock_is_fair_and_reentrant():
    """Waiting threads get the lock in the order they asked for it; the owner may re-enter."""
    lock, order, started = FairRLock(), [], []
    lock.acquire()
    threads = []
    for k in range(6):
        def wait(k: int = k) -> None:
            started.append(k)
            with lock:
                order.append(k)
        thread = threading.Thread(target=wait)
        thread.start()
        while len(lock._queue) < k + 1:  # wait until this thread is queued before starting the next one
            threading.Event().wait(0.001)
        threads.append(thread)
    with lock:  # re-entrant: the owner takes it again without deadlock
        pass
    lock.release()
    for thread in threads:
        thread.join(timeout=10)
    assert order == list(range(6))
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()


def test_two_models_lock_in_one_order(tiny_gpt2, tiny_llama):
    """``holding(a, b)`` and ``holding(b, a)`` take the locks in the same order, so they cannot deadlock."""
    done = []

    def both(first: Any, second: Any) -> None:
        for _ in range(200):
            with holding(first, second):
                pass
        done.append(True)

    threads = [threading.Thread(target=both, args=pair) for pair in [(tiny_gpt2, tiny_llama), (tiny_llama, tiny_gpt2)]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert done == [True, True]
    assert not model_lock(tiny_gpt2).held_by_me()
