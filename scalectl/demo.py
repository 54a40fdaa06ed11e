"""The main job on the embedded default (``scalectl demo``).

At this stage of the project: prepare the embedded backbone (convert once, then load from
the cache), decode one prompt greedily, register the pool manifests that ship in
``registry/`` (the LoRAHub 196-module pool and the iLoRAComp 97-module subset, as
remote rows fetched on first use), and return what a user should see.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .errors import ScalectlError

DEMO_PROMPT = "Sort the following words alphabetically: List: pear apple mango"


def shipped_registry_dir() -> Path:
    """The ``registry/`` directory that ships with scalectl (manifests and the demo pool)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_registry", here.parent / "registry"):
        if cand.is_dir():
            return cand
    raise ScalectlError("cannot find the shipped registry/ directory; reinstall scalectl from its source tree")


def shipped_manifests() -> list[Path]:
    return sorted(p for p in shipped_registry_dir().glob("*.toml"))


def run_demo(base: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from .backbone import generate_greedy, load_backbone
    from .registry import Registry

    say = progress or (lambda s: None)
    say("loading the base model (the first run converts the embedded GGUF once)")
    bb = load_backbone(base, progress=say)
    t0 = time.perf_counter()
    out = generate_greedy(bb, [DEMO_PROMPT], max_new_tokens=24)[0]
    gen_s = time.perf_counter() - t0
    reg = Registry()
    added = []
    for m in shipped_manifests():
        say(f"registering {m.name}")
        res = reg.add_sources(manifest=m, replace=True)
        added.append({"manifest": m.name, "pool": res.pool, "adapters": len(res.added), "warnings": res.warnings})
    return {
        "base": {"spec": bb.base.spec, "canonical": bb.base.canonical, "device": bb.device,
                 "load_seconds": round(bb.load_seconds, 2)},
        "generation": {"prompt": DEMO_PROMPT, "output": out, "seconds": round(gen_s, 2)},
        "registered": added,
        "pools": reg.pools(),
        "registry": str(reg.path),
    }
