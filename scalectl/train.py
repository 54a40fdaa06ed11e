"""``scalectl pool train``: train one LoRA adapter on a synthetic skill and register it.

The data comes from :mod:`scalectl.tasks.skills` (seeded generators; never BBH). Training
is plain PEFT LoRA with AdamW on the target tokens only (the prompt goes through the
backbone's chat template exactly as at evaluation time). Every ``eval_every`` steps the
mean cross-entropy on held-out generated examples is measured; the best checkpoint is
kept, written as a PEFT directory (bf16 safetensors), and registered with the skill's
description, example records and the full training provenance (command, seed, steps, loss
curve, held-out exact match of the base model and of the adapter).
"""

from __future__ import annotations

import json
import math
import random
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .errors import EvalError
from .progress import Progress, ensure

DEFAULT_POOL = "skills"


@dataclass
class TrainConfig:
    skill: str
    base: str | None = None
    rank: int = 8
    alpha: float | None = None  # default 2 * rank
    targets: list[str] | None = None  # default q and v projections
    steps: int = 60
    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 8
    max_len: int = 128
    heldout: int = 32
    eval_every: int = 10
    train_examples: int | None = None  # default min(steps * batch_size, 1024)
    dtype: str = "bfloat16"  # of the saved factors

    def check(self) -> None:
        for k in ("rank", "steps", "batch_size", "max_len", "heldout", "eval_every"):
            if getattr(self, k) < 1:
                raise EvalError(f"--{k.replace('_', '-')} must be at least 1, got {getattr(self, k)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise EvalError(f"--lr must be a positive number, got {self.lr}")
        if self.dtype not in ("bfloat16", "float16", "float32"):
            raise EvalError(f"--dtype must be bfloat16, float16 or float32, got {self.dtype!r}")


@dataclass
class TrainResult:
    name: str
    pool: str | None
    path: str
    skill: str
    steps: int
    best_step: int
    heldout_loss_base: float
    heldout_loss_best: float
    heldout_em_base: float
    heldout_em_best: float
    seconds: float
    seconds_per_step: float
    device: str
    curve: list[dict[str, float]] = field(default_factory=list)
    registered: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _default_targets(model) -> list[str]:
    leaves = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    for pair in (["q_proj", "v_proj"], ["q", "v"], ["query", "value"]):
        if set(pair) <= leaves:
            return pair
    raise EvalError("cannot tell this backbone's query/value projections; pass --targets NAME,NAME")


def encode_examples(bb, examples: list[dict[str, str]], max_len: int) -> list[dict[str, list[int]]]:
    """Token ids per example: prompt (chat template) and target (+ EOS); the loss covers the target only."""
    from .backbone import format_prompts

    tok = bb.tokenizer
    prompts = format_prompts(bb, [e["input"] for e in examples])
    eos = tok.eos_token or ""
    out = []
    for p, e in zip(prompts, examples):
        tgt = tok(e["target"] + (eos if not bb.is_seq2seq else ""), add_special_tokens=bb.is_seq2seq)["input_ids"]
        src = tok(p, add_special_tokens=bb.is_seq2seq)["input_ids"]
        if bb.is_seq2seq:
            out.append({"src": src[-max_len:], "tgt": tgt[:max_len]})
        else:
            tgt = tgt[: max_len - 1]
            src = src[-(max_len - len(tgt)):]
            out.append({"src": src, "tgt": tgt})
    return out


def _batch(bb, items: list[dict[str, list[int]]]):
    import torch

    pad = bb.tokenizer.pad_token_id
    if bb.is_seq2seq:
        ls = max(len(i["src"]) for i in items)
        lt = max(len(i["tgt"]) for i in items)
        ids = torch.tensor([i["src"] + [pad] * (ls - len(i["src"])) for i in items])
        att = torch.tensor([[1] * len(i["src"]) + [0] * (ls - len(i["src"])) for i in items])
        lab = torch.tensor([i["tgt"] + [-100] * (lt - len(i["tgt"])) for i in items])
        return {"input_ids": ids, "attention_mask": att, "labels": lab}
    rows = [i["src"] + i["tgt"] for i in items]
    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (n - len(r)) for r in rows])
    att = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])
    lab = torch.tensor([[-100] * len(i["src"]) + i["tgt"] + [-100] * (n - len(i["src"]) - len(i["tgt"])) for i in items])
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def _token_loss(bb, model, batch) -> tuple[Any, int]:
    """Summed cross-entropy over the target tokens of a batch, and their count."""
    batch = {k: v.to(bb.device) for k, v in batch.items()}
    labels = batch.pop("labels")
    return _logits_loss(bb, _logits(bb, model, batch, labels), labels)


def _logits(bb, model, batch, labels):
    return model(**batch, labels=labels).logits if bb.is_seq2seq else model(**batch).logits


def _logits_loss(bb, logits, labels) -> tuple[Any, int]:
    """Summed cross-entropy of ``logits`` against ``labels`` (-100: not a target), and the target count."""
    import torch.nn.functional as F

    if bb.is_seq2seq:
        tgt = labels
    else:
        logits, tgt = logits[:, :-1], labels[:, 1:]
    mask = tgt != -100
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.clamp(min=0).reshape(-1), reduction="none")
    return (loss * mask.reshape(-1)).sum(), int(mask.sum())


def replicated_token_losses(bb, model, items: list[dict[str, list[int]]], copies: int) -> list[tuple[float, int]]:
    """One forward pass over ``copies`` copies of the batch ``items`` (copy i: rows ``[i * len(items), ...)``):
    each copy's summed target cross-entropy and count, computed exactly as :func:`batch_token_losses` computes
    the batch alone (the copies pad to the same length; the base layers are row-wise)."""
    import torch

    batch = {k: v.to(bb.device) for k, v in _batch(bb, items * copies).items()}
    labels = batch.pop("labels")
    n = len(items)
    with torch.inference_mode():
        logits = _logits(bb, model, batch, labels)
        out = []
        for i in range(copies):
            s, c = _logits_loss(bb, logits[i * n:(i + 1) * n], labels[i * n:(i + 1) * n])
            out.append((float(s), c))
    return out


def batch_token_losses(bb, model, encoded, batch_size: int = 16) -> list[tuple[float, int]]:
    """Per batch of ``encoded`` (in order): the summed cross-entropy over its target tokens, and their count."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(encoded), batch_size):
            s, c = _token_loss(bb, model, _batch(bb, encoded[i:i + batch_size]))
            out.append((float(s), c))
    return out


def heldout_loss(bb, model, encoded, batch_size: int = 16) -> float:
    """Mean cross-entropy over every target token of ``encoded``."""
    per = batch_token_losses(bb, model, encoded, batch_size)
    return sum(s for s, _ in per) / max(sum(c for _, c in per), 1)


def heldout_em(bb, examples: list[dict[str, str]]) -> float:
    from .backbone import generate_greedy
    from .tasks.bbh import exact_match

    mx = max(len(bb.tokenizer(e["target"], add_special_tokens=False)["input_ids"]) for e in examples) + 2
    outs = generate_greedy(bb, [e["input"] for e in examples], max_new_tokens=mx, batch_size=16, stop_at_newline=True)
    return sum(exact_match(o, e["target"]) for o, e in zip(outs, examples)) / len(examples)


def peft_model(model, lcfg):
    """``peft.get_peft_model`` without the FutureWarning that is not the user's: PEFT (0.21, the newest release) asks
    the backbone for ``is_gradient_checkpointing``, an alias transformers 5 deprecated in favour of
    ``is_activation_checkpointing``. Nothing here uses gradient checkpointing, so only that one warning is dropped;
    it goes away by itself once PEFT reads the new name."""
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, lcfg)


def _register(reg, res: TrainResult, out: Path, pool: str) -> None:
    r = reg.add_sources([str(out)], pool=pool, replace=True)
    res.registered = f"{r.pool}:{res.name}"


def command_line(cfg: TrainConfig, name: str | None, pool: str | None, out: str | None = None) -> str:
    parts = ["scalectl", "pool", "train", "--skill", cfg.skill]
    if cfg.base:
        parts += ["--base", cfg.base]
    parts += ["--rank", str(cfg.rank), "--alpha", f"{cfg.alpha:g}", "--steps", str(cfg.steps), "--seed", str(cfg.seed),
              "--lr", f"{cfg.lr:g}", "--batch-size", str(cfg.batch_size), "--max-len", str(cfg.max_len),
              "--heldout", str(cfg.heldout), "--eval-every", str(cfg.eval_every)]
    if cfg.targets:
        parts += ["--targets", ",".join(cfg.targets)]
    if name:
        parts += ["--name", name]
    if pool:
        parts += ["--pool", pool]
    if out:
        parts += ["--out", out]
    return shlex.join(parts)


@dataclass
class _Target:
    """What one training run writes and where: the skill, the adapter's name and directory, and the backbone."""
    skill: Any  # a tasks.skills.Skill
    name: str
    out: Path
    base_spec: Any  # a backbone.BaseSpec
    base_id: str  # what PEFT records as base_model_name_or_path
    reg: Any  # the registry when registering, else None


def _target(cfg: TrainConfig, name: str | None, pool: str | None, out: str | Path | None, overwrite: bool,
            register: bool, reg, bb, examples, description: str | None) -> _Target:
    """Check everything that can be refused before the backbone is loaded."""
    from .backbone import choose_base, resolve_base, same_base
    from .registry import Registry, valid_name
    from .tasks import skills

    if examples is None:
        skill = skills.get_skill(cfg.skill)
    else:
        if not examples[0] or not examples[1]:
            raise EvalError("training needs at least one training and one held-out example")
        skill = skills.Skill(name=cfg.skill, description=description or cfg.skill, answer_format="records",
                             make=lambda rng: ("", ""))
    name = name or skill.name
    if not valid_name(name):
        raise EvalError(f"invalid adapter name {name!r}: use letters, digits, '.', '_', '-', '+'")
    out = Path(out).expanduser() if out else paths.home() / "adapters" / (pool or DEFAULT_POOL) / name
    if out.exists() and not overwrite:
        raise EvalError(f"{out} already exists; pass --overwrite to replace it")
    pool_base = None
    if register:
        reg = reg or Registry()
        prow = reg.pool(pool)
        pool_base = prow["base_model"] if prow else None
    # --base (or SCALECTL_BASE), else the pool's base, else the embedded default; resolved without loading
    base_spec = bb.base if bb is not None else resolve_base(choose_base(cfg.base, pool_base))
    base_id = base_spec.spec if base_spec.kind == "local" else base_spec.canonical
    if register:
        if pool_base and not same_base(pool_base, base_id):
            raise EvalError(f"pool {pool!r} is on {pool_base!r} but the backbone is {base_spec.spec!r}; "
                            "train into another --pool")
        if any(r["name"] == name for r in reg.list(pool=pool)) and not overwrite:
            raise EvalError(f"{pool}:{name} is already registered; pass --overwrite to retrain it")
    return _Target(skill=skill, name=name, out=out, base_spec=base_spec, base_id=base_id, reg=reg if register else None)


@dataclass
class _Fit:
    loss0: float  # held-out loss before training
    curve: list[dict[str, float]]
    best: tuple[float, int, dict[str, Any]]  # (held-out loss, step, LoRA state dict)
    train_s: float


def _fit(bb, pm, cfg: TrainConfig, enc_train, enc_held, rng: random.Random, prog: Progress, name: str) -> _Fit:
    """AdamW with linear warm-up and cosine decay to 10%; the best held-out checkpoint kept."""
    import torch
    from peft import get_peft_model_state_dict

    trainable = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    warm = max(1, cfg.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))))
    pm.eval()
    loss0 = heldout_loss(bb, pm, enc_held)
    curve = [{"step": 0, "heldout_loss": round(loss0, 5)}]
    best = (loss0, 0, {k: v.detach().clone() for k, v in get_peft_model_state_dict(pm).items()})
    order: list[int] = []
    prog.start("train", f"training {name}", cfg.steps)
    t_train = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        if len(order) < cfg.batch_size:
            idx = list(range(len(enc_train)))
            rng.shuffle(idx)
            order += idx
        take, order = order[:cfg.batch_size], order[cfg.batch_size:]
        pm.train()
        s, c = _token_loss(bb, pm, _batch(bb, [enc_train[i] for i in take]))
        loss = s / max(c, 1)
        if not torch.isfinite(loss):
            raise EvalError(f"training loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        desc = f"training {name} loss {loss.item():.3f}"
        if step % cfg.eval_every == 0 or step == cfg.steps:
            pm.eval()
            hl = heldout_loss(bb, pm, enc_held)
            curve.append({"step": step, "train_loss": round(loss.item(), 5), "heldout_loss": round(hl, 5)})
            if hl < best[0]:
                best = (hl, step, {k: v.detach().clone() for k, v in get_peft_model_state_dict(pm).items()})
            desc += f" held-out {hl:.3f} (best {best[0]:.3f} @ {best[1]})"
        prog.advance("train", 1, description=desc)
    prog.finish("train")
    return _Fit(loss0=loss0, curve=curve, best=best, train_s=time.perf_counter() - t_train)


def _sidecar(cfg: TrainConfig, tgt: _Target, fit: _Fit, targets: list[str], train_ex, held_ex, em: tuple[float, float],
             seconds: float, device: str, command: str, generated: bool) -> dict[str, Any]:
    """scalectl.json: the description, example records and the full training provenance."""
    skill = tgt.skill
    provenance = {
        "trained_by": "scalectl pool train", "command": command,
        "skill": skill.name, "seed": cfg.seed, "steps": cfg.steps, "config": {**asdict(cfg), "targets": targets},
        "train_examples": len(train_ex), "heldout_examples": len(held_ex), "best_step": fit.best[1],
        "heldout_loss_base": round(fit.loss0, 5), "heldout_loss_best": round(fit.best[0], 5),
        "heldout_em_base": em[0], "heldout_em_best": em[1], "curve": fit.curve,
        "seconds": round(seconds, 2), "train_seconds": round(fit.train_s, 2), "device": device,
        "base_model": tgt.base_id,
    }
    return {
        "name": tgt.name, "description": skill.description, "source_task": f"skill/{skill.name}",
        "tags": ["skill", "scalectl-trained", skill.answer_format, *(skill.family_tags(cfg.seed) if generated else [])],
        "examples": [{"input": e["input"], "output": e["target"]} for e in train_ex[:10]],
        "provenance": provenance,
    }


def train_skill(cfg: TrainConfig, *, name: str | None = None, pool: str | None = DEFAULT_POOL, out: str | Path | None = None,
                overwrite: bool = False, register: bool = True, reg=None, bb=None, device: str | None = None,
                progress: Progress | None = None, out_label: str | None = None,
                examples: tuple[list[dict[str, str]], list[dict[str, str]]] | None = None, description: str | None = None,
                command: str | None = None) -> TrainResult:
    """Train, keep the best held-out checkpoint, save a PEFT directory atomically, and register it.

    ``examples=(train, held_out)`` trains on given records instead of a registered skill's generator
    (``cfg.skill`` is then only a label, ``description`` its one-line description and ``command``
    the command that reproduces the run); the two-hop probe uses this for its fact sets."""
    import torch
    from peft import LoraConfig, TaskType, set_peft_model_state_dict
    from safetensors.torch import save_file

    from .backbone import load_backbone
    from .fsutil import atomic_dir
    from .tasks import skills

    prog = ensure(progress)
    cfg.check()
    tgt = _target(cfg, name, pool, out, overwrite, register, reg, bb, examples, description)
    cfg.alpha = float(cfg.alpha if cfg.alpha is not None else 2 * cfg.rank)
    name, out, reg = tgt.name, tgt.out, tgt.reg
    n_train = cfg.train_examples or min(cfg.steps * cfg.batch_size, 1024)
    if examples is None:
        train_ex, held_ex = skills.split(tgt.skill.name, n_train, cfg.heldout, seed=cfg.seed)
    else:
        train_ex, held_ex = list(examples[0]), list(examples[1])

    if bb is None:
        prog.log("loading the base model")
        bb = load_backbone(tgt.base_spec.spec, device=device)
    model = bb.model
    targets = cfg.targets or _default_targets(model)
    for p in model.parameters():
        p.requires_grad_(False)
    t_start = time.perf_counter()
    prog.log(f"{name}: held-out exact match of the base model")
    em_base = heldout_em(bb, held_ex)

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    task_type = TaskType.SEQ_2_SEQ_LM if bb.is_seq2seq else TaskType.CAUSAL_LM
    lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=targets, lora_dropout=0.0, bias="none",
                      task_type=task_type)
    pm = peft_model(model, lcfg)
    try:
        fit = _fit(bb, pm, cfg, encode_examples(bb, train_ex, cfg.max_len), encode_examples(bb, held_ex, cfg.max_len),
                   rng, prog, name)
        set_peft_model_state_dict(pm, fit.best[2])  # restore the best checkpoint and measure it
        pm.eval()
        prog.log(f"{name}: held-out exact match of the best checkpoint (step {fit.best[1]})")
        em_best = heldout_em(bb, held_ex)
        seconds = time.perf_counter() - t_start
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[cfg.dtype]
        tensors = {k: v.to(dtype).contiguous().cpu() for k, v in fit.best[2].items()}
        sidecar = _sidecar(cfg, tgt, fit, targets, train_ex, held_ex, (em_base, em_best), seconds, bb.device,
                           command or command_line(cfg, name if name != tgt.skill.name else None, pool, out_label),
                           generated=examples is None)
        res = TrainResult(name=name, pool=pool if register else None, path=str(out), skill=tgt.skill.name,
                          steps=cfg.steps, best_step=fit.best[1], heldout_loss_base=fit.loss0, heldout_loss_best=fit.best[0],
                          heldout_em_base=em_base, heldout_em_best=em_best, seconds=round(seconds, 2),
                          seconds_per_step=round(fit.train_s / cfg.steps, 3), device=bb.device, curve=fit.curve)
        lcfg_out = pm.peft_config["default"]
        lcfg_out.base_model_name_or_path = tgt.base_id
        lcfg_out.inference_mode = True  # as PeftModel.save_pretrained writes it
        if isinstance(lcfg_out.target_modules, (set, frozenset)):  # PEFT keeps a set: its order varies by process
            lcfg_out.target_modules = sorted(lcfg_out.target_modules)  # so a retrain writes the same config bytes
        # registered under the output's lock: the old row goes before its files change, the new one right after
        # they are in place (a failure there removes them again), so no row ever describes other files
        hooks = {"before_replace": lambda: reg.forget_output(pool, name, out),
                 "after_replace": lambda: _register(reg, res, out, pool)} if register else {}
        with atomic_dir(out, overwrite=overwrite, **hooks) as tmp:
            lcfg_out.save_pretrained(str(tmp))
            save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
            (tmp / "scalectl.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    finally:
        pm.unload()  # the backbone is left as it was (LoRA layers removed)
        model.eval()
    return res
