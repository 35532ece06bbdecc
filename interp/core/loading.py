"""Load a model by name or directory and wrap it in a TransformerLens ``TransformerBridge``.

Hook configuration (why we do *not* call ``enable_compatibility_mode()``): in TransformerLens
4.3 the default bridge already exposes the standard hook names (``blocks.{L}.hook_resid_pre``,
``blocks.{L}.attn.hook_pattern``, ``blocks.{L}.mlp.hook_post``, ``hook_embed``,
``ln_final.hook_normalized``...) with the same shapes as in compatibility mode. Compatibility
mode's default folds LayerNorm and centres weights, which would change the real Hugging Face
weights that editing methods (ROME on GPT-2 ``c_proj`` / Llama ``down_proj``) must touch; with
``no_processing=True`` it only switches the attention-score mask sentinel from ``finfo.min`` to
``-inf`` and duplicates legacy alias keys in caches, neither of which we want. So the bridge runs
on the untouched HF weights, and its logits equal the HF model's.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from interp.core import embedded
from interp.core.kv_cache import enable_kv_cache

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
_SAFE_LOAD = {
    "attn_implementation": "eager",  # hooks need the explicit attention pattern
    "use_safetensors": True,  # pickled weights (pytorch_model.bin) can run code when loaded
    "trust_remote_code": False,  # never run a checkpoint's own Python
}
_HUB_TIMEOUT_S = 2.0
"""How long :func:`load` waits for the hub to answer before treating it as unreachable."""


def load(
    name_or_path: str | os.PathLike[str] = "ref-gpt2",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    offload_folder: str | os.PathLike[str] | None = None,
) -> Any:
    """Load a causal language model as a TransformerLens ``TransformerBridge``.

    ``name_or_path`` is resolved in this order:

    1. an embedded reference model (one of :func:`interp.reference.names`), read from its
       checkpoint directory, never from the network;
    2. a local directory in Hugging Face layout (``config.json``, ``*.safetensors``, tokenizer
       files), read with ``local_files_only`` so nothing is fetched;
    3. anything else is a Hugging Face Hub name. When the hub is offline (``HF_HUB_OFFLINE=1``)
       or does not answer within 2 s, only the local hub cache is used, so an unknown name fails
       at once instead of after transformers' retries.

    Weights are read from ``*.safetensors`` only (never pickled ``pytorch_model.bin``), and a
    checkpoint's own code is never run (``trust_remote_code=False``).

    The bridge runs on the unmodified HF weights (no LayerNorm folding or centring), is in eval
    mode, and records in ``model.cfg.default_prepend_bos`` whether text prompts get a BOS token
    (from the checkpoint's ``world.json`` ``"prepend_bos"`` when present, else the TransformerLens
    default when the tokenizer has a BOS token).

    Args:
        name_or_path: Embedded model name, local checkpoint directory, or hub name.
        device: Device to put the whole model on (default: TransformerLens' choice, CUDA when
            available). Mutually exclusive with ``device_map``.
        dtype: Parameter dtype, a ``torch.dtype`` or one of ``"float32"``, ``"float16"``,
            ``"bfloat16"`` (default ``float32``, the precision analyses want).
        device_map: Hugging Face/accelerate placement, passed through to the loader.
            ``device_map="auto"`` shards a model too big for one GPU across all GPUs of this
            machine (layers are split; activations move between devices on the way);
            ``"cpu"`` or ``{"": "cpu"}`` keeps everything on the CPU; a dict may send modules to
            ``"disk"``. Accelerate's hooks move weights and activations, so every analysis runs and
            gives the single-device numbers; weight edits refuse offloaded weights (docs/scale.md).
            TransformerLens refuses maps that mix a GPU with CPU/disk offload.
        offload_folder: Where accelerate writes disk-offloaded weights it cannot read in place
            from the checkpoint's safetensors (converted or re-cast weights); only with ``device_map``.

    Returns:
        The loaded ``TransformerBridge``.

    Raises:
        ValueError: bad ``dtype``, both ``device`` and ``device_map`` given (or
            ``offload_folder`` without ``device_map``), a local
            checkpoint whose files cannot be read (the message names the file), or a folder
            holding only pickled weights.
        FileNotFoundError: an embedded model without checkpoint, a missing directory or file,
            or a name that is neither local nor found on the hub (embedded names are listed).

    Examples:
        >>> import tempfile
        >>> from interp.core.toy_models import save_toy_checkpoint
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model = load(save_toy_checkpoint(folder), device="cpu")
        >>> type(model).__name__, model.training
        ('TransformerBridge', False)

        Shipped reference models load by name; a model larger than one GPU is sharded:

        >>> model = load("ref-gpt2")  # doctest: +SKIP
        >>> big = load("meta-llama/Llama-3.1-8B", dtype="bfloat16", device_map="auto")  # doctest: +SKIP
    """
    if device is not None and device_map is not None:
        raise ValueError(
            f"pass either device={device!r} or device_map={device_map!r}, not both: "
            "device puts the whole model on one device, device_map places it piece by piece"
        )
    if offload_folder is not None and device_map is None:
        raise ValueError(f"offload_folder={os.fspath(offload_folder)!r} needs a device_map that offloads to disk")
    torch_dtype = _parse_dtype(dtype)
    placement = {} if device_map is None else {"device_map": device_map, "offload_folder": offload_folder}
    name = os.fspath(name_or_path)
    if name in embedded.names():
        folder = embedded.path(name)
    elif _looks_local(name):
        folder = Path(name).expanduser()
    else:
        return _load_from_hub(name, device, torch_dtype, placement)
    return _load_local(folder.resolve(), device, torch_dtype, placement)


def _parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(f"dtype={dtype!r} is not supported; use a torch.dtype or one of {', '.join(_DTYPES)}")


def _looks_local(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything path-like that is not on disk is still treated
    # as local so the error names the missing directory instead of asking the hub.
    return (
        Path(name).expanduser().exists()
        or name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or os.sep != "/" and os.sep in name
    )


def check_checkpoint_dir(folder: Path) -> None:
    """Check that ``folder`` holds a loadable Hugging Face checkpoint, naming what is wrong.

    Args:
        folder: Directory expected to hold ``config.json``, ``*.safetensors`` and tokenizer files.

    Raises:
        FileNotFoundError: the directory, its ``config.json``, weights or tokenizer are missing.
        ValueError: ``config.json`` is not JSON, a safetensors file is unreadable, or the folder
            holds only pickled weights (``*.bin``, ``*.pt``...), which interp refuses to unpickle.
    """
    from safetensors import safe_open

    if not folder.is_dir():
        raise FileNotFoundError(f"model directory {folder} does not exist; {_embedded_hint()}")
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{folder} has no config.json; a model directory needs config.json, "
            "*.safetensors weights and tokenizer files (Hugging Face save_pretrained layout)"
        )
    try:
        json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config} is not valid JSON ({err})") from None
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickled = sorted(p.name for pattern in _PICKLED_WEIGHTS for p in folder.glob(pattern))
        if pickled:
            raise ValueError(
                f"{folder} holds only pickled weights ({', '.join(pickled)}); interp loads *.safetensors only, "
                "because unpickling can run code: convert them with "
                "AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder) in a trusted environment"
            )
        raise FileNotFoundError(f"{folder} has no *.safetensors weights (found: {_listing(folder)})")
    for file in weights:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as err:  # safetensors raises its own SafetensorError for every defect
            raise ValueError(f"{file} is not a readable safetensors file ({err})") from None
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{folder} has no tokenizer (expected one of {', '.join(_TOKENIZER_FILES)}; "
            f"found: {_listing(folder)})"
        )


def _load_local(folder: Path, device: Any, dtype: torch.dtype, placement: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM

    check_checkpoint_dir(folder)
    with _quiet_progress():
        try:
            hf_model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=dtype, local_files_only=True, **placement, **_SAFE_LOAD
            )
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            raise ValueError(f"could not load the model in {folder}: {_first_line(err)}") from err
    if not placement:
        hf_model.to(device or _default_device())
    # The bridge gets the loaded model: given hf_model, boot reads config and tokenizer from
    # what we pass and never resolves the path on the hub.
    return _boot(str(folder), hf_model, _load_tokenizer(folder), device, dtype, _world_prepend_bos(folder))


def _load_from_hub(name: str, device: Any, dtype: torch.dtype, placement: dict[str, Any]) -> Any:
    offline = _find_on_hub(name)  # before importing transformers (2 s), so a refusal is quick
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_progress(), _quiet_hub():
        try:
            hf_model = AutoModelForCausalLM.from_pretrained(
                name, dtype=dtype, local_files_only=offline, **placement, **_SAFE_LOAD
            )
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline, trust_remote_code=False)
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            raise ValueError(f"could not load hub model {name!r}: {_first_line(err)}") from None
    if not placement:
        hf_model.to(device or _default_device())
    return _boot(name, hf_model, tokenizer, device, dtype, None)


def _find_on_hub(name: str) -> bool:
    """Check quickly that ``name`` exists on the hub or in its cache; return True to load it offline.

    transformers retries an unreachable hub five times with backoff (about 25 s of printed retries)
    before it gives up, so when the hub is offline (``HF_HUB_OFFLINE``) or does not answer within
    :data:`_HUB_TIMEOUT_S`, only the local hub cache is consulted and nothing is retried.
    """
    import huggingface_hub.constants
    from huggingface_hub.file_download import try_to_load_from_cache

    constants = huggingface_hub.constants
    if constants.HF_HUB_OFFLINE:
        offline = "the hub is switched off (HF_HUB_OFFLINE)"
    elif not _hub_reachable(constants.ENDPOINT):
        offline = f"the hub ({constants.ENDPOINT}) could not be reached within {_HUB_TIMEOUT_S:g} s"
    else:
        offline = ""
    if offline:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return True
        raise FileNotFoundError(
            f"could not find model {name!r}: it is not an embedded model, not a local directory, "
            f"not in the local hub cache, and {offline}; {_embedded_hint()}"
        ) from None
    from transformers import AutoConfig

    with _quiet_hub():
        try:
            AutoConfig.from_pretrained(name, trust_remote_code=False)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(
                f"could not find model {name!r}: it is not an embedded model, not a local directory, "
                f"and the Hugging Face Hub lookup failed ({_first_line(err)}); {_embedded_hint()}"
            ) from None
    return False


def _hub_reachable(endpoint: str) -> bool:
    """Whether the hub answers one HEAD request within :data:`_HUB_TIMEOUT_S` (any HTTP status counts)."""
    from huggingface_hub.utils import get_session

    answered: list[bool] = []
    done = threading.Event()

    def probe() -> None:
        try:
            get_session().head(endpoint, timeout=_HUB_TIMEOUT_S)
            answered.append(True)
        except Exception:  # any failure to connect (DNS, refused, timeout, proxy) means "unreachable"
            pass
        finally:
            done.set()

    # A thread, because name resolution (getaddrinfo) ignores the HTTP timeout and can hang.
    threading.Thread(target=probe, daemon=True, name="interp-hub-probe").start()
    done.wait(_HUB_TIMEOUT_S + 0.5)
    return bool(answered)


def _boot(name: str, hf_model: Any, tokenizer: Any, device: Any, dtype: torch.dtype, prepend_bos: bool | None) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    with _quiet_progress():
        bridge = TransformerBridge.boot_transformers(
            name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype, trust_remote_code=False
        )
    return _finish(bridge, prepend_bos)


def _finish(bridge: Any, prepend_bos: bool | None) -> Any:
    has_bos = bridge.tokenizer is not None and bridge.tokenizer.bos_token_id is not None
    if prepend_bos and not has_bos:
        raise ValueError(f"{bridge.cfg.model_name}: world.json asks for prepend_bos but the tokenizer has no BOS token")
    bridge.cfg.default_prepend_bos = bool(
        prepend_bos if prepend_bos is not None else bridge.cfg.default_prepend_bos and has_bos
    )
    bridge.eval()
    # TransformerLens 4.3 + transformers 5 drop the KV cache silently; see interp.core.kv_cache.
    enable_kv_cache()
    return bridge


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError):
        # A bare tokenizer.json (no tokenizer_config.json) is enough for the fast tokenizer.
        if (folder / "tokenizer.json").is_file():
            return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
        raise


def _world_prepend_bos(folder: Path) -> bool | None:
    world = folder / "world.json"
    if not world.is_file():
        return None
    try:
        value = json.loads(world.read_text()).get("prepend_bos")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{world} is not a JSON object ({err})") from None
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{world}: prepend_bos={value!r}, expected true or false")
    return value


def _default_device() -> torch.device:
    from transformer_lens.utilities import get_device

    return torch.device(get_device())


def _embedded_hint() -> str:
    return f"embedded models are: {', '.join(embedded.names())}"


def _listing(folder: Path) -> str:
    return ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """Silence huggingface_hub's per-retry warnings ("Retrying in 1s..."); the raised error says it all."""
    import logging

    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence transformers' per-load "Loading weights" progress bars, restoring the setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
