"""The decoding batch size chosen on the device: ``scalectl eval --batch-size auto``.

Before the run, the run's own longest prompts are decoded once at each candidate size (one batch of that many
prompts, the run's new-token budget), and the size with the most queries per second wins. Longest first is how
decoding orders a task (:func:`~scalectl.backbone.length_order`), so the probe's batch is the run's most
memory-hungry one too. Larger sizes stop being tried once one runs out of device memory, is clearly slower than
the best so far, or would exceed the run's queries. The sizes tried, their queries/s and the one chosen are
stored with the run (``batch_size_probe`` in its config), and the run then decodes at that fixed size, so its
records say what produced them. Greedy outputs can depend on the batch size (left padding), which is why the
default stays method.md's 10 rather than whatever is fastest on the machine at hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

AUTO = "auto"

# Candidate sizes per device type: a CPU gains little past a few queries (two cores are busy with one), a GPU
# keeps gaining up to its memory.
CANDIDATES: dict[str, tuple[int, ...]] = {
    "cpu": (1, 2, 4, 8, 10, 16, 32),
    "cuda": (8, 16, 32, 64, 128, 256, 512),
    "mps": (4, 8, 16, 32, 64),
}
SLOWER = 0.9  # a size below this fraction of the best queries/s so far ends the probe
PROBE_TOKENS_MAX = 16  # the probe decodes the run's new-token budget, at most this many


@dataclass
class BatchProbe:
    """What the probe tried (size, queries/s; None where the device ran out of memory) and what it chose."""

    chosen: int
    device: str
    new_tokens: int
    tried: list[tuple[int, float | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "device": self.device, "new_tokens": self.new_tokens,
                "tried": [[b, None if q is None else round(q, 3)] for b, q in self.tried]}

    def note(self) -> str:
        tried = ", ".join(f"{b}: {'out of memory' if q is None else f'{q:.2f}/s'}" for b, q in self.tried)
        return f"batch size {self.chosen}, the fastest probed on {self.device} (queries/s {tried})"


def parse_batch_size(value: Any) -> int | str:
    """``--batch-size``: a positive integer, or ``auto``. Raises ValueError with the message to show."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a positive integer or {AUTO}, got {value!r}") from None
    if n < 1 or (isinstance(value, float) and value != n):
        raise ValueError(f"must be a positive integer or {AUTO}, got {value!r}")
    return n


def candidates_for(device: str, n_prompts: int) -> list[int]:
    """The sizes to try on ``device`` (its type: ``cuda:1`` is ``cuda``), none above the run's prompts (the
    run's whole count is itself tried when it falls between two sizes)."""
    sizes = CANDIDATES.get(str(device).split(":", 1)[0], CANDIDATES["cpu"])
    out = [b for b in sizes if b <= n_prompts]
    if n_prompts >= 1 and (not out or (out[-1] < n_prompts and any(b > n_prompts for b in sizes))):
        out.append(n_prompts)
    return out


def choose(measure: Callable[[int], float | None], sizes: list[int], device: str = "cpu",
           new_tokens: int = 0) -> BatchProbe:
    """Try ``sizes`` in order; ``measure(b)`` gives one batch's seconds, or None when the device ran out of
    memory. The size of most queries/s wins (the smaller one on a tie)."""
    probe = BatchProbe(chosen=sizes[0], device=device, new_tokens=new_tokens)
    best = 0.0
    for b in sizes:
        sec = measure(b)
        if sec is None:
            probe.tried.append((b, None))
            break
        qps = b / max(sec, 1e-9)
        probe.tried.append((b, qps))
        if qps > best:
            best, probe.chosen = qps, b
        elif qps < SLOWER * best:
            break
    return probe


def fastest_batch_size(bb, prompts: list[str], new_tokens: int) -> BatchProbe:
    """Probe ``bb`` on its device with the longest of ``prompts`` (:func:`choose`); a warm-up batch of one
    first, so no size pays the first call's one-time costs."""
    import torch

    from .backbone import format_prompts, generate_greedy, length_order

    order = length_order(bb.tokenizer, format_prompts(bb, prompts), bb.is_seq2seq)
    longest = [prompts[i] for i in order]
    tokens = max(1, min(new_tokens, PROBE_TOKENS_MAX))

    def measure(b: int) -> float | None:
        try:
            t = time.perf_counter()
            generate_greedy(bb, longest[:b], max_new_tokens=tokens, batch_size=b, by_length=False)
            if str(bb.device).startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - t
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return None

    measure(1)
    return choose(measure, candidates_for(str(bb.device), len(prompts)), str(bb.device), tokens)
