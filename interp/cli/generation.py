"""CLI commands ``interp next-token``, ``interp generate``, ``interp speculative`` and ``interp analogy``."""

from __future__ import annotations

from typing import Annotated

import typer

from interp.cli.common import DeviceOption, JsonOption, ModelOption, PromptOption, emit, load_or_exit, user_errors

TemperatureOption = Annotated[float, typer.Option(help="Softmax temperature; 0 is greedy.")]
TopKOption = Annotated[int | None, typer.Option("--top-k", help="Keep the k most probable tokens.")]
TopPOption = Annotated[float | None, typer.Option("--top-p", help="Keep the smallest set reaching this mass.")]
SeedOption = Annotated[int | None, typer.Option(help="Sampling seed (default: random, printed).")]


def next_token_cmd(
    prompt: PromptOption,
    model: ModelOption = "ref-gpt2",
    temperature: TemperatureOption = 1.0,
    top_k: TopKOption = None,
    top_p: TopPOption = None,
    k: Annotated[int, typer.Option("-k", help="Tokens to list.")] = 10,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """The next-token distribution after each step: softmax, temperature, top-k, top-p."""
    from interp.generation import next_token

    bridge = load_or_exit(model, device)
    with user_errors():
        result = next_token(bridge, prompt, temperature=temperature, top_k=top_k, top_p=top_p)
    frame = result.to_frame(k)
    emit({"tokens": result.str_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
          "top": frame.to_dict(orient="records")}, frame.to_string(index=False), as_json)


def generate_cmd(
    prompt: PromptOption,
    model: ModelOption = "ref-gpt2",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", help="Most tokens to generate.")] = 20,
    temperature: TemperatureOption = 1.0,
    top_k: TopKOption = None,
    top_p: TopPOption = None,
    seed: SeedOption = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sample a continuation with a KV cache (seeded, reproducible)."""
    from interp.generation import generate

    bridge = load_or_exit(model, device)
    with user_errors():
        out = generate(bridge, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                       top_p=top_p, seed=seed, stop=stop)
    data = {"prompt": prompt, "text": out.text, "new_tokens": out.new_tokens.tolist(), "token_probs": out.token_probs,
            "stop_reason": out.stop_reason, "seed": out.seed, "seconds": out.seconds}
    emit(data, f"{prompt}{out.text}\n[stopped: {out.stop_reason}; seed {out.seed}]", as_json)


def speculative_cmd(
    prompt: PromptOption,
    target: Annotated[str, typer.Option(help="Target model (its distribution is kept).")] = "ref-llama",
    draft: Annotated[str, typer.Option(help="Draft model (same tokenizer).")] = "ref-gpt2",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", help="Most tokens to generate.")] = 32,
    n_draft: Annotated[int, typer.Option(help="Tokens drafted per round.")] = 4,
    temperature: TemperatureOption = 1.0,
    top_k: TopKOption = None,
    top_p: TopPOption = None,
    seed: SeedOption = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Speculative decoding: acceptance rate and speed-up over plain decoding with the target."""
    from interp.generation import speculative_generate

    target_model, draft_model = load_or_exit(target, device), load_or_exit(draft, device)
    with user_errors():
        out = speculative_generate(target_model, draft_model, prompt, max_new_tokens=max_new_tokens, n_draft=n_draft,
                                   temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, baseline=True)
    data = {"prompt": prompt, "text": out.text, "new_tokens": out.new_tokens.tolist(), "seed": out.seed,
            "acceptance_rate": out.acceptance_rate, "tokens_per_target_call": out.tokens_per_target_call,
            "target_calls": out.target_calls, "draft_calls": out.draft_calls, "seconds": out.seconds,
            "baseline_seconds": out.baseline_seconds, "speedup": out.speedup}
    text = (f"{prompt}{out.text}\nacceptance {out.acceptance_rate:.1%}, {out.tokens_per_target_call:.2f} tokens per "
            f"target pass, {out.seconds:.2f} s vs {out.baseline_seconds or float('nan'):.2f} s plain "
            f"(speed-up {out.speedup or float('nan'):.2f}x); seed {out.seed}")
    emit(data, text, as_json)


def analogy_cmd(
    a: Annotated[str, typer.Argument(help="Token to move from, e.g. king.")],
    b: Annotated[str, typer.Argument(help="Token to subtract, e.g. man.")],
    c: Annotated[str, typer.Argument(help="Token to add, e.g. woman.")],
    model: ModelOption = "ref-gpt2",
    k: Annotated[int, typer.Option("-k", help="Answers to list.")] = 10,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Embedding arithmetic a - b + c, ranked by cosine (a, b, c excluded)."""
    from interp.journey import analogy

    bridge = load_or_exit(model, device)
    with user_errors():
        result = analogy(bridge, a, b, c, k=k)
    frame = result.to_frame()
    emit({"query": result.query, "answers": frame.to_dict(orient="records")},
         f"{result.query}\n{frame.to_string(index=False)}", as_json)


def register(app: typer.Typer) -> None:
    """Add ``next-token``, ``generate``, ``speculative`` and ``analogy`` to ``app``."""
    app.command("next-token")(next_token_cmd)
    app.command("generate")(generate_cmd)
    app.command("speculative")(speculative_cmd)
    app.command("analogy")(analogy_cmd)
