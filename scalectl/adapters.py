"""PEFT LoRA adapter files <-> factor tensors, and their validation.

An adapter directory holds ``adapter_config.json`` and ``adapter_model.safetensors``
(or, refused unless asked for, the pickle ``adapter_model.bin``). For each adapted
module ``m`` it stores ``A`` (r x d_in) and ``B`` (d_out x r); the update is
``dW = s * B @ A`` with ``s = lora_alpha / r`` (``lora_alpha / sqrt(r)`` with rslora).

Inspection (:func:`inspect_adapter`) reads only the config and the safetensors
header, so registering many adapters needs no torch. :func:`load_factors` loads
the tensors; :func:`save_adapter` writes a factor set back as a PEFT directory
that ``PeftModel.from_pretrained`` loads.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import AdapterError
from .fsutil import atomic_dir, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

CONFIG_NAME = "adapter_config.json"
SAFETENSORS_NAME = "adapter_model.safetensors"
PICKLE_NAME = "adapter_model.bin"

_KEY_RE = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+?)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(?:\.(?P<adapter>[^.]+))?(?:\.weight)?$"
)

# Block patterns, most specific first. T5/BART-style encoder and decoder blocks are different blocks.
_BLOCK_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?:^|\.)encoder\.block\.(\d+)\."), "encoder.{}"),
    (re.compile(r"(?:^|\.)decoder\.block\.(\d+)\."), "decoder.{}"),
    (re.compile(r"(?:^|\.)encoder\.layers?\.(\d+)\."), "encoder.{}"),
    (re.compile(r"(?:^|\.)decoder\.layers?\.(\d+)\."), "decoder.{}"),
    (re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\."), "layer.{}"),
]

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1}
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def block_of(module: str) -> str:
    """The transformer block holding ``module``.

    Decoder-only layers map to ``layer.i``; T5 encoder block i and decoder block i map
    to ``encoder.i`` and ``decoder.i`` (different blocks). A module outside any block
    (``lm_head``) is its own block.
    """
    for pat, fmt in _BLOCK_PATTERNS:
        m = pat.search(module)
        if m:
            return fmt.format(int(m.group(1)))
    return module


def _pattern_key(patterns: dict[str, Any], module: str) -> str | None:
    """PEFT's rule for rank_pattern / alpha_pattern keys: a regex matching the module name's tail."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


def lora_scaling(r: int, alpha: float, use_rslora: bool) -> float:
    return alpha / math.sqrt(r) if use_rslora else alpha / r


@dataclass
class ModuleInfo:
    name: str  # e.g. model.layers.3.self_attn.q_proj
    block: str
    r: int
    alpha: float
    scaling: float
    d_in: int
    d_out: int


@dataclass
class AdapterInfo:
    """What a PEFT LoRA directory declares and holds, read without loading tensors."""

    path: Path
    weight_file: Path
    config: dict[str, Any]
    base_model: str | None
    task_type: str | None
    r: int
    lora_alpha: float
    use_rslora: bool
    use_dora: bool
    fan_in_fan_out: bool
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    target_modules: list[str]
    modules: dict[str, ModuleInfo]
    dtype: str
    size_bytes: int
    pickle: bool
    extra_tensors: list[str] = field(default_factory=list)
    sha256: str | None = None
    config_sha256: str | None = None  # adapter_config.json decides the scaling: it is hashed like the weights

    @property
    def scaling(self) -> float:
        """Adapter-level scaling (``lora_alpha / r``, rslora aware); modules may differ via patterns."""
        return lora_scaling(self.r, self.lora_alpha, self.use_rslora)

    @property
    def blocks(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.modules.values():
            seen.setdefault(m.block, None)
        return list(seen)


def read_config(path: Path) -> dict[str, Any]:
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise AdapterError(f"{path}: missing {CONFIG_NAME} (not a PEFT adapter directory)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"{cfg_path}: not valid JSON ({e.__class__.__name__}: {e})") from None
    if not isinstance(cfg, dict):
        raise AdapterError(f"{cfg_path}: expected a JSON object, got {type(cfg).__name__}")
    ptype = str(cfg.get("peft_type", "LORA")).upper()
    if ptype != "LORA":
        raise AdapterError(f"{cfg_path}: peft_type is {ptype}; only LORA adapters are supported")
    for key in ("r", "lora_alpha"):
        v = cfg.get(key)
        if not _positive_number(v, integer=key == "r"):
            what = "a positive integer (below 2**63)" if key == "r" else "a positive finite number"
            raise AdapterError(f"{cfg_path}: '{key}' must be {what}, got {v!r}")
    for key, integer in (("rank_pattern", True), ("alpha_pattern", False)):
        pat = cfg.get(key)
        if pat in (None, {}):
            continue
        if not isinstance(pat, dict) or not all(isinstance(k, str) and _positive_number(v, integer)
                                                for k, v in pat.items()):
            raise AdapterError(f"{cfg_path}: '{key}' must map module names to positive "
                               f"{'integers' if integer else 'finite numbers'}, got {pat!r}"[:300])
        for k in pat:  # PEFT matches the keys as regular expressions against module names
            try:
                re.compile(rf"(.*\.)?({k})$")
            except (re.error, RecursionError, OverflowError) as e:
                raise AdapterError(f"{cfg_path}: '{key}' key {k!r} is not a valid regular expression ({e})"[:300]
                                   ) from None
    return cfg


def not_unicode(obj: Any) -> bool:
    """Whether ``obj`` (parsed JSON, a registry row) holds text that is not valid Unicode: a lone surrogate, which a
    JSON ``"\\ud800"`` escape or a non-UTF-8 byte in a path or an argument becomes in Python. SQLite cannot store it
    and a UTF-8 terminal cannot print it."""
    try:
        json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _positive_number(v: Any, integer: bool = False) -> bool:
    """A JSON number that is finite and > 0 (an integer where ``integer``); bools are not numbers here."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        f = float(v)  # an integer beyond a float's range (JSON allows 1e400 written out) is no usable number either
    except OverflowError:
        return False
    if integer and not ((isinstance(v, int) or f.is_integer()) and v < 2 ** 63):  # a rank SQLite can store
        return False
    return math.isfinite(f) and f > 0


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """Parse and check a safetensors header: every tensor's dtype, shape and byte range.

    Detects truncated and garbled files without loading any tensor.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise AdapterError(f"{path}: truncated safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", raw)
            if n <= 0 or n > min(size - 8, 100 << 20):
                raise AdapterError(f"{path}: corrupt safetensors header (declared length {n}, file {size} bytes)")
            header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AdapterError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise AdapterError(f"{path}: corrupt safetensors header")
    if not_unicode(header):
        raise AdapterError(f"{path}: corrupt safetensors header (text that is not valid Unicode)")
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    end_max = 0
    ranges = []
    for key, t in header.items():
        try:
            dtype, shape, (start, end) = t["dtype"], t["shape"], t["data_offsets"]
            if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                      for d in shape):
                raise ValueError("shape")
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
                raise ValueError("offsets")
            nbytes = math.prod(shape) * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            raise AdapterError(f"{path}: corrupt safetensors entry for {key!r}") from None
        if end - start != nbytes or start < 0:
            raise AdapterError(f"{path}: corrupt safetensors entry for {key!r} (byte range does not match shape)")
        ranges.append((start, end, key))
        end_max = max(end_max, end)
    ranges.sort()
    for (_, prev_end, prev), (start, _, key) in zip(ranges, ranges[1:]):
        if start < prev_end:
            raise AdapterError(f"{path}: corrupt safetensors file (the bytes of {key!r} overlap those of {prev!r})")
    if end_max > data_len:
        raise AdapterError(f"{path}: truncated safetensors file (needs {end_max} data bytes, has {data_len})")
    if end_max != data_len:
        raise AdapterError(f"{path}: corrupt safetensors file ({data_len - end_max} trailing bytes)")
    return header


def _parse_keys(keys_shapes: dict[str, tuple[list[int], str]], where: Path) -> tuple[dict, list[str]]:
    """Group tensor keys into {module: {"A": shape, "B": shape}}; return (groups, extra keys)."""
    groups: dict[str, dict[str, Any]] = {}
    extra: list[str] = []
    for key, (shape, dtype) in keys_shapes.items():
        m = _KEY_RE.match(key)
        if not m:
            extra.append(key)
            continue
        kind = m.group("kind")
        if kind == "lora_magnitude_vector":
            groups.setdefault(m.group("module"), {})["M"] = shape
            continue
        if kind.startswith("lora_embedding"):
            raise AdapterError(
                f"{where}: module {m.group('module')} is an embedding LoRA; only linear-layer LoRA is supported"
            )
        g = groups.setdefault(m.group("module"), {})
        slot = "A" if kind == "lora_A" else "B"
        if slot in g:
            raise AdapterError(f"{where}: module {m.group('module')} has two {kind} tensors (several adapters in one file?)")
        g[slot] = shape
        g.setdefault("dtype", dtype)
    return groups, extra


def _weight_shapes(path: Path, allow_pickle: bool) -> tuple[Path, bool, dict[str, tuple[list[int], str]]]:
    """(weight file, is pickle, tensor name -> (shape, dtype code)): the safetensors header, or a pickle's tensors
    only with ``allow_pickle``."""
    st = path / SAFETENSORS_NAME
    pk = path / PICKLE_NAME
    if st.is_file():
        return st, False, {k: (v["shape"], v["dtype"]) for k, v in read_safetensors_header(st).items()}
    if pk.is_file():
        if not allow_pickle:
            raise AdapterError(
                f"{path}: only a pickle weight file ({PICKLE_NAME}); pickle can run code when loaded. "
                "Convert it to safetensors, or pass --allow-pickle if you trust its source"
            )
        return pk, True, {k: (list(v.shape), _torch_dtype_code(v.dtype)) for k, v in _load_pickle(pk).items()}
    raise AdapterError(f"{path}: missing {SAFETENSORS_NAME}")


def _module_info(name: str, g: dict[str, Any], weight_file: Path, r: int, alpha: float, rslora: bool,
                 rank_pattern: dict[str, Any], alpha_pattern: dict[str, Any]) -> ModuleInfo:
    """One module's rank, alpha, scaling and shape, checked against its factors' shapes."""
    if "A" not in g or "B" not in g:
        missing = "lora_B" if "A" in g else "lora_A"
        raise AdapterError(f"{weight_file}: module {name} has no {missing} tensor")
    a, b = g["A"], g["B"]
    if len(a) != 2 or len(b) != 2:
        raise AdapterError(f"{weight_file}: module {name}: factors must be 2-D, got A{a} B{b}")
    if 0 in (*a, *b):  # no bytes at all, whatever the other dimension claims (rank 2**40 would not load)
        raise AdapterError(f"{weight_file}: module {name}: empty factors A{tuple(a)} B{tuple(b)}")
    rk = _pattern_key(rank_pattern, name)
    mr = int(rank_pattern[rk]) if rk else r
    ak = _pattern_key(alpha_pattern, name)
    malpha = float(alpha_pattern[ak]) if ak else alpha
    if a[0] != mr or b[1] != mr:
        raise AdapterError(
            f"{weight_file}: module {name}: factor shapes A{tuple(a)} B{tuple(b)} contradict the declared rank {mr}"
        )
    return ModuleInfo(name=name, block=block_of(name), r=mr, alpha=malpha, scaling=lora_scaling(mr, malpha, rslora),
                      d_in=a[1], d_out=b[0])


def inspect_adapter(path: str | os.PathLike, allow_pickle: bool = False, hash_file: bool = True) -> AdapterInfo:
    """Read and validate a PEFT LoRA directory without loading tensors (pickle files excepted).

    Raises :class:`AdapterError` naming the file and the problem: missing or garbled
    config, missing, truncated or corrupt weights, factor shapes that contradict the
    declared rank, a pickle-only adapter without ``allow_pickle``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise AdapterError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise AdapterError(f"{path}: not a directory (expected a PEFT adapter directory)")
    cfg = read_config(path)
    weight_file, is_pickle, keys_shapes = _weight_shapes(path, allow_pickle)
    groups, extra = _parse_keys(keys_shapes, weight_file)
    if not groups:
        raise AdapterError(f"{weight_file}: holds no LoRA factors (no lora_A/lora_B tensors)")
    r = int(cfg["r"])
    alpha = float(cfg["lora_alpha"])
    rslora = bool(cfg.get("use_rslora", False))
    rank_pattern = dict(cfg.get("rank_pattern") or {})
    alpha_pattern = dict(cfg.get("alpha_pattern") or {})
    modules: dict[str, ModuleInfo] = {}
    dtypes: set[str] = set()
    for name, g in sorted(groups.items(), key=lambda kv: _natural_key(kv[0])):
        modules[name] = _module_info(name, g, weight_file, r, alpha, rslora, rank_pattern, alpha_pattern)
        dtypes.add(g.get("dtype", "F32"))
    leafs = sorted({n.rsplit(".", 1)[-1] for n in modules})
    return AdapterInfo(
        path=path, weight_file=weight_file, config=cfg, base_model=cfg.get("base_model_name_or_path"),
        task_type=cfg.get("task_type"), r=r, lora_alpha=alpha, use_rslora=rslora,
        use_dora=bool(cfg.get("use_dora", False)), fan_in_fan_out=bool(cfg.get("fan_in_fan_out", False)),
        rank_pattern=rank_pattern, alpha_pattern=alpha_pattern, target_modules=leafs, modules=modules,
        dtype=",".join(sorted(_DTYPE_NAMES.get(d, d.lower()) for d in dtypes)),
        size_bytes=weight_file.stat().st_size, pickle=is_pickle, extra_tensors=extra,
        sha256=sha256_file(weight_file) if hash_file else None,
        config_sha256=sha256_file(path / CONFIG_NAME) if hash_file else None,
    )


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _torch_dtype_code(dt) -> str:
    import torch

    return {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}.get(dt, "F32")


def _load_pickle(path: Path) -> dict:
    """Load a pickle weight file; only reached when the user allowed pickle explicitly."""
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise AdapterError(f"{path}: cannot load pickle weights ({e.__class__.__name__})") from None
    if not isinstance(sd, dict):
        raise AdapterError(f"{path}: pickle file does not hold a state dict")
    return sd


@dataclass
class LoraFactors:
    """One adapter as tensors: per module ``A`` (r x d_in), ``B`` (d_out x r) and scaling.

    ``delta(m) = scaling[m] * B[m] @ A[m]`` (transposed for fan_in_fan_out modules is
    the caller's business when merging into Conv1D weights).
    """

    name: str
    A: dict[str, "torch.Tensor"]
    B: dict[str, "torch.Tensor"]
    scaling: dict[str, float]
    blocks: dict[str, str]
    base_model: str | None = None
    fan_in_fan_out: bool = False

    @property
    def modules(self) -> list[str]:
        return list(self.A)

    def delta(self, module: str) -> "torch.Tensor":
        return self.scaling[module] * (self.B[module] @ self.A[module])


def load_factors(
    info: AdapterInfo, name: str | None = None, dtype: "torch.dtype | None" = None, verify_sha256: str | None = None
) -> LoraFactors:
    """Load the factor tensors of an inspected adapter.

    ``verify_sha256``: refuse (IntegrityError) when the weight file's hash differs.
    ``dtype``: cast factors (default float32, the dtype merges run in).
    """
    import torch

    from .errors import IntegrityError

    if verify_sha256 is not None:
        got = sha256_file(info.weight_file)
        if got != verify_sha256:
            raise IntegrityError(
                f"{info.weight_file}: sha256 {got[:12]}... differs from the registered {verify_sha256[:12]}...; "
                "the file changed after registration (run 'scalectl pool verify'; re-add with --replace if intended)"
            )
    dtype = dtype or torch.float32
    if info.pickle:
        sd = _load_pickle(info.weight_file)
    else:
        from safetensors.torch import load_file

        try:
            sd = load_file(str(info.weight_file), device="cpu")
        except Exception as e:  # noqa: BLE001
            raise AdapterError(f"{info.weight_file}: cannot read safetensors ({e})") from None
    A: dict[str, torch.Tensor] = {}
    B: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        m = _KEY_RE.match(key)
        if not m or m.group("kind") not in ("lora_A", "lora_B"):
            continue
        (A if m.group("kind") == "lora_A" else B)[m.group("module")] = t.to(dtype)
    order = list(info.modules)
    return LoraFactors(
        name=name or info.path.name,
        A={k: A[k] for k in order},
        B={k: B[k] for k in order},
        scaling={k: info.modules[k].scaling for k in order},
        blocks={k: info.modules[k].block for k in order},
        base_model=info.base_model,
        fan_in_fan_out=info.fan_in_fan_out,
    )


def save_adapter(
    out_dir: str | os.PathLike,
    A: dict[str, "torch.Tensor"],
    B: dict[str, "torch.Tensor"],
    scaling: dict[str, float] | None = None,
    base_model: str | None = None,
    task_type: str | None = "CAUSAL_LM",
    dtype: "torch.dtype | None" = None,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
    before_replace: Callable[[], None] | None = None,
    after_replace: Callable[[], None] | None = None,
) -> Path:
    """Write a factor set as a PEFT LoRA directory, atomically.

    Scaling is folded into ``B`` and each module gets ``lora_alpha = r`` (scaling 1),
    with per-module ranks in ``rank_pattern``/``alpha_pattern``, so any mix of ranks
    (e.g. a rank-sum(r) composition) loads with ``PeftModel.from_pretrained``.
    ``target_modules`` is an exact full-match regex over the written modules, so PEFT
    attaches LoRA to exactly these modules and no others. ``before_replace`` / ``after_replace``: as
    :func:`~scalectl.fsutil.atomic_dir` (compose registers the output in them, under the output's lock).
    """
    if not A:
        raise AdapterError("nothing to write: the factor set has no modules")
    ranks = {m: int(A[m].shape[0]) for m in A}
    counts: dict[int, int] = {}
    for rk in ranks.values():
        counts[rk] = counts.get(rk, 0) + 1
    r0 = max(counts, key=lambda k: (counts[k], k))
    rank_pattern = {re.escape(m): rk for m, rk in ranks.items() if rk != r0}
    tensors: dict[str, torch.Tensor] = {}
    for m in A:
        a, b = A[m], B[m]
        if a.shape[0] != b.shape[1]:
            raise AdapterError(f"module {m}: A{tuple(a.shape)} and B{tuple(b.shape)} ranks differ")
        s = 1.0 if scaling is None else float(scaling[m])
        b = b * s
        if dtype is not None:
            a, b = a.to(dtype), b.to(dtype)
        tensors[f"base_model.model.{m}.lora_A.weight"] = a.detach().contiguous().cpu()
        tensors[f"base_model.model.{m}.lora_B.weight"] = b.detach().contiguous().cpu()
    cfg = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model,
        "r": r0,
        "lora_alpha": r0,
        "rank_pattern": rank_pattern,
        "alpha_pattern": dict(rank_pattern),
        "target_modules": "^(" + "|".join(re.escape(m) for m in A) + ")$",
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
    }
    st_meta = {"format": "pt"}
    if metadata:
        st_meta["scalectl"] = json.dumps(metadata, sort_keys=True)
    with atomic_dir(out_dir, overwrite=overwrite, before_replace=before_replace, after_replace=after_replace) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")
        write_safetensors(tmp / SAFETENSORS_NAME, tensors, st_meta)
        for fname, text in (extra_files or {}).items():
            (tmp / fname).write_text(text)
    return Path(out_dir)


_ST_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


def write_safetensors(path: Path, tensors: dict[str, "torch.Tensor"], metadata: dict[str, str]) -> None:
    """A safetensors file whose bytes depend only on the tensors and metadata: the header is JSON with sorted keys
    (the safetensors library writes its metadata map in hash order, so the same adapter got a new sha256 on every
    run), tensors in name order, the header padded with spaces to 8 bytes as the library does."""
    import struct

    import torch

    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        dtype = _ST_DTYPES.get(str(t.dtype).replace("torch.", ""))
        if dtype is None:
            raise AdapterError(f"cannot write {name}: dtype {t.dtype} is not one of {', '.join(_ST_DTYPES)}")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for data in chunks:
            f.write(data)


def delta_sq_norm(A: "torch.Tensor", B: "torch.Tensor", s: float) -> float:
    """``||s B A||_F^2`` from the factors: ``s^2 * sum((B^T B) * (A A^T))`` (no d_out x d_in matrix)."""
    return float(s * s * ((B.T @ B) * (A @ A.T)).sum())


def block_norms(f: LoraFactors) -> list[dict[str, Any]]:
    """Per block: module count, total rank and ``||v_b||`` (the concatenated update's norm)."""
    acc: dict[str, dict[str, Any]] = {}
    for m in f.modules:
        b = acc.setdefault(f.blocks[m], {"block": f.blocks[m], "modules": 0, "rank": 0, "sq": 0.0})
        b["modules"] += 1
        b["rank"] += int(f.A[m].shape[0])
        b["sq"] += delta_sq_norm(f.A[m], f.B[m], f.scaling[m])
    return [{"block": b["block"], "modules": b["modules"], "rank": b["rank"], "delta_norm": math.sqrt(max(b["sq"], 0.0))}
            for b in acc.values()]
