"""Forward passes with candidate adapters attached, for weight search and evaluation.

- :class:`StackedLora`: the K candidate adapters attached as ONE rank-sum(r) branch per module,
  ``y = base(x) + ((x @ A^T) * c[seg]) @ B^T``, driven by a coefficient vector per block (so a
  weight search changes weights without rebuilding any state dict) or by per-example
  coefficients (instance-level routing). Scalings are folded into B once, at attach time.
- :func:`merged_weights`: the composed update added into the base weights in place for the
  duration of a ``with`` block (decoding at base speed), then restored exactly.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

from .errors import ScalectlError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .adapters import LoraFactors


def _get_parent(model, name: str):
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def _make_layer_class():
    import torch

    class StackedLoraLinear(torch.nn.Module):
        """A frozen base layer plus K LoRA branches stacked into one (R = sum r) branch."""

        def __init__(self, base: torch.nn.Module, A: torch.Tensor, B: torch.Tensor, seg: torch.Tensor,
                     owner: "StackedLora", block: str):
            super().__init__()
            self.base = base
            self.register_buffer("A", A, persistent=False)  # (R, d_in)
            self.register_buffer("B", B, persistent=False)  # (d_out, R), scaling folded in
            self.register_buffer("seg", seg, persistent=False)  # (R,) adapter index of each rank column
            self._owner = [owner]  # a list, so the owner is not registered as a submodule
            self.block = block

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.base(x)
            c = self._owner[0].coefficients(self.block, x)  # (K,) or (batch, K)
            if c is None:
                return y
            h = x.to(self.A.dtype) @ self.A.T  # (..., R)
            if c.dim() == 1:
                h = h * c[self.seg]
            else:
                shape = (c.shape[0],) + (1,) * (h.dim() - 2) + (h.shape[-1],)
                h = h * c[:, self.seg].reshape(shape)
            return y + (h @ self.B.T).to(y.dtype)

    return StackedLoraLinear


class StackedLora:
    """Attach K adapters to ``model`` as stacked branches; set weights per block or per example.

    Usage::

        with StackedLora(model, factors) as st:
            st.set_weights(torch.tensor([0.5, 0.3, 0.2]))      # all blocks
            st.set_block_coefficients({"layer.0": g0, ...})   # LASRC's gamma per block
            st.set_example_weights(W)                          # (batch, K): instance-level routing
            logits = model(**batch).logits
    """

    def __init__(self, model, factors: list["LoraFactors"], modules: list[str] | None = None,
                 dtype: "torch.dtype | None" = None):
        import torch

        if not factors:
            raise ScalectlError("no adapters to attach")
        self.model = model
        self.k = len(factors)
        mods = modules if modules is not None else [m for m in factors[0].modules if all(m in f.A for f in factors)]
        if not mods:
            raise ScalectlError("the adapters share no module to attach to")
        p = next(model.parameters())
        dtype = dtype or p.dtype
        Layer = _make_layer_class()
        self.blocks: list[str] = []
        self._orig: dict[str, torch.nn.Module] = {}
        self._block_coef: dict[str, torch.Tensor] = {}
        self._global: torch.Tensor | None = None
        self._example: torch.Tensor | None = None
        self._example_block: dict[str, torch.Tensor] | None = None
        for m in mods:
            try:
                parent, child = _get_parent(model, m)
                base = getattr(parent, child)
            except AttributeError:
                raise ScalectlError(f"the model has no module {m}: are these adapters for this base?") from None
            A = torch.cat([f.A[m] for f in factors], dim=0).to(device=p.device, dtype=dtype)  # (R, d_in)
            B = torch.cat([f.scaling[m] * f.B[m] for f in factors], dim=1).to(device=p.device, dtype=dtype)  # (d_out, R)
            seg = torch.cat([torch.full((f.A[m].shape[0],), i, dtype=torch.long) for i, f in enumerate(factors)]).to(p.device)
            block = factors[0].blocks[m]
            if block not in self.blocks:
                self.blocks.append(block)
            self._orig[m] = base
            setattr(parent, child, Layer(base, A, B, seg, self, block))
        self.modules = mods
        self.set_weights(torch.zeros(self.k))

    # -- coefficients

    def _vec(self, w) -> "torch.Tensor":
        import torch

        p = next(self.model.parameters())
        w = torch.as_tensor(w, dtype=torch.float32).to(p.device)
        if w.shape[-1] != self.k:
            raise ScalectlError(f"expected {self.k} coefficients, got shape {tuple(w.shape)}")
        return w

    def set_weights(self, w) -> None:
        """One coefficient per adapter, the same in every block (e.g. ``linear`` with weights w)."""
        self._global, self._block_coef, self._example, self._example_block = self._vec(w), {}, None, None

    def set_block_coefficients(self, coefs: dict[str, "torch.Tensor"]) -> None:
        """A coefficient vector per block (e.g. LASRC's gamma_b); blocks not given use zeros."""
        unknown = set(coefs) - set(self.blocks)
        if unknown:
            raise ScalectlError(f"unknown blocks {sorted(unknown)}")
        self._block_coef = {b: self._vec(c) for b, c in coefs.items()}
        self._global, self._example, self._example_block = self._vec([0.0] * self.k), None, None

    def set_example_weights(self, W, per_block: dict[str, "torch.Tensor"] | None = None) -> None:
        """Per-example coefficients (batch, K) for the next forward passes (instance-level routing);
        ``per_block`` optionally gives a (batch, K) matrix per block instead."""
        self._example = self._vec(W) if W is not None else None
        self._example_block = {b: self._vec(c) for b, c in per_block.items()} if per_block else None

    def coefficients(self, block: str, x) -> "torch.Tensor | None":
        if self._example_block is not None:
            return self._example_block.get(block)
        if self._example is not None:
            if self._example.shape[0] != x.shape[0]:
                raise ScalectlError(f"per-example weights for {self._example.shape[0]} examples, batch has {x.shape[0]}")
            return self._example
        if block in self._block_coef:
            return self._block_coef[block]
        return self._global

    # -- lifecycle

    def remove(self) -> None:
        for m, base in self._orig.items():
            parent, child = _get_parent(self.model, m)
            setattr(parent, child, base)
        self._orig = {}

    def __enter__(self) -> "StackedLora":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


@contextlib.contextmanager
def merged_weights(model, deltas: dict[str, "torch.Tensor"], fan_in_fan_out: bool = False) -> Iterator[None]:
    """Add ``deltas[module]`` (d_out x d_in) into the model's weights for the block's duration; restore after."""
    import torch

    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for m, d in deltas.items():
                try:
                    mod = model.get_submodule(m)
                except AttributeError:
                    raise ScalectlError(f"the model has no module {m}") from None
                d = d.T if fan_in_fan_out else d
                if tuple(mod.weight.shape) != tuple(d.shape):
                    raise ScalectlError(f"module {m}: weight {tuple(mod.weight.shape)} vs update {tuple(d.shape)}")
                saved[m] = mod.weight.detach().clone()
                mod.weight += d.to(device=mod.weight.device, dtype=mod.weight.dtype)
        yield
    finally:
        with torch.no_grad():
            for m, w in saved.items():
                model.get_submodule(m).weight.copy_(w)


# --- several weight searches in one forward pass ---------------------------------------------------------------


def _make_jobs_layer_class():
    import torch

    class JobsLoraLinear(torch.nn.Module):
        """A frozen base layer and one LoRA branch per search: batch rows ``[i * rows, (i + 1) * rows)`` go through
        the branch of the i-th active search. Each slice is computed with exactly the operations and shapes a
        lone :class:`StackedLora` branch applies to it, so each search's losses are bit-identical to its own."""

        def __init__(self, base: torch.nn.Module, owner: "JobStack", module: str):
            super().__init__()
            self.base = base
            self._owner = [owner]
            self.module = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.base(x)
            owner = self._owner[0]
            if not owner.active:
                return y
            rows, out = owner.rows, []
            for i, j in enumerate(owner.active):
                s = slice(i * rows, (i + 1) * rows)
                br = owner.branches[j].get(self.module)
                if br is None:
                    out.append(y[s])
                    continue
                A, B, seg, c = br
                h = x[s].to(A.dtype) @ A.T  # (rows, T, R)
                out.append(y[s] + ((h * c[seg]) @ B.T).to(y.dtype))
            return torch.cat(out, dim=0)

    return JobsLoraLinear


class JobStack:
    """J weight searches attached to one model at once, for lockstep searches (:func:`scalectl.search.search_many`).

    Search j's candidates are attached by its rule: ``"linear"`` (every candidate a slice of one rank-sum(r)
    branch, coefficients = the point, as :class:`StackedLora` ``set_weights``) or ``"lorahub"`` (LoRAHub's factor
    rule ``A = sum w A_n``, ``B = sum w s_n B_n`` recomputed at each point, as a one-adapter :class:`StackedLora`).
    :meth:`activate` says which searches the next batch holds, ``rows`` batch rows each, in order.
    """

    def __init__(self, model, jobs: list[tuple[list["LoraFactors"], str]]):
        import torch

        p = next(model.parameters())
        self.model, self.device, self.dtype = model, p.device, p.dtype
        self.active: list[int] = []
        self.rows = 0
        self.branches: list[dict[str, list]] = []
        self._mix: list[tuple[dict, dict] | None] = []
        for factors, rule in jobs:
            if rule not in self.RULES:
                raise ScalectlError(f"unknown search rule {rule!r}; use one of {', '.join(self.RULES)}")
            mods = [m for m in factors[0].modules if all(m in f.A for f in factors)]
            if not mods:
                raise ScalectlError("the adapters share no module to attach to")
            mix, branch = self.RULES[rule](self, factors, mods, torch)
            self._mix.append(mix)
            self.branches.append(branch)
        modules = list(dict.fromkeys(m for b in self.branches for m in b))
        Layer = _make_jobs_layer_class()
        self._orig: dict[str, torch.nn.Module] = {}
        for m in modules:
            try:
                parent, child = _get_parent(model, m)
                base = getattr(parent, child)
            except AttributeError:
                raise ScalectlError(f"the model has no module {m}: are these adapters for this base?") from None
            self._orig[m] = base
            setattr(parent, child, Layer(base, self, m))

    def _factor_rule(self, factors, mods, torch):
        """LoRAHub's rule: the stacked A_n and s_n B_n, mixed at each point into one rank-r branch."""
        from .errors import ParameterError

        ranks = {f.A[m].shape[0] for f in factors for m in f.modules}
        if len(ranks) != 1:
            raise ParameterError("the factor rule ({0} lorahub, LoRAHub's and iLoRAComp's) needs equal ranks; the "
                                 f"candidates have ranks {sorted(ranks)}: search with {{0}} linear", "search_rule")
        dev = self.device
        As = {m: torch.stack([f.A[m] for f in factors]).to(dev, torch.float32) for m in mods}  # (K, r, d_in)
        Bs = {m: torch.stack([f.scaling[m] * f.B[m] for f in factors]).to(dev, torch.float32) for m in mods}
        one = torch.as_tensor([1.0], dtype=torch.float32).to(dev)
        zeros = {m: torch.zeros(As[m].shape[1], dtype=torch.long, device=dev) for m in mods}
        return (As, Bs), {m: [None, None, zeros[m], one] for m in mods}

    def _linear_rule(self, factors, mods, torch):
        """The linear rule: every candidate a slice of one rank-sum(r) branch, the point its coefficients."""
        dev, dt = self.device, self.dtype
        branch = {}
        for m in mods:
            A = torch.cat([f.A[m] for f in factors], dim=0).to(device=dev, dtype=dt)  # (R, d_in)
            B = torch.cat([f.scaling[m] * f.B[m] for f in factors], dim=1).to(device=dev, dtype=dt)  # (d_out, R)
            seg = torch.cat([torch.full((f.A[m].shape[0],), i, dtype=torch.long) for i, f in enumerate(factors)]).to(dev)
            branch[m] = [A, B, seg, None]
        return None, branch

    RULES = {"lorahub": _factor_rule, "linear": _linear_rule}

    def set(self, j: int, w) -> None:
        """Search j's point ``w`` (one weight per candidate)."""
        import torch

        wt = torch.as_tensor(w, dtype=torch.float32).to(self.device)
        mix = self._mix[j]
        for m, br in self.branches[j].items():
            if mix is None:
                br[3] = wt
            else:
                As, Bs = mix
                br[0] = torch.einsum("k,krd->rd", wt, As[m]).to(self.dtype)
                br[1] = torch.einsum("k,kor->or", wt, Bs[m]).to(self.dtype)

    def activate(self, jobs: list[int], rows: int) -> None:
        """The next batch holds ``rows`` rows of each of ``jobs``, in that order."""
        self.active, self.rows = list(jobs), rows

    def remove(self) -> None:
        for m, base in self._orig.items():
            parent, child = _get_parent(self.model, m)
            setattr(parent, child, base)
        self._orig = {}

    def __enter__(self) -> "JobStack":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
