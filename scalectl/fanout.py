"""Fan-out on Ray: ``scalectl eval ... --ray [ADDRESS]`` and ``scalectl report --markdown ... --ray``.

Each run is prepared by the driver exactly as :func:`scalectl.evaluate.run_eval` prepares it (validation,
the run row, its config), then split into units: one per task, and for SCALE one per (task, view). Across
runs (methods, SDP seeds) that makes the (task x method x view x seed) jobs. Every unit is computed by
:func:`scalectl.evaluate.compute_unit` on a Ray worker, the same function the serial path calls, and its
outputs come back to the driver, which alone writes records to the registry (in task order) and finishes
the runs. Workers only read: the registry, the adapters, the BBH files and the model cache, all under the
driver's ``SCALECTL_HOME``, so on a multi-machine cluster that directory must be on shared storage.

Workers use the driver's torch thread count, so the floating-point reductions (and with them the weight
searches and greedy outputs) are the serial run's. ``address``: ``None``/``"local"`` starts a local Ray
instance (``num_cpus`` workers, default every core); anything else (``"auto"``, ``"ray://host:10001"``,
``"host:6379"``) connects to an existing cluster.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import TYPE_CHECKING, Any

from .errors import EvalError, ScalectlError
from .progress import Progress, ensure

if TYPE_CHECKING:
    from .evaluate import RunRequest

LOCAL = ("", "local")
_ENV_PREFIXES = ("SCALECTL_", "HF_", "TRANSFORMERS_")


def _is_client(address: str | None) -> bool:
    return bool(address) and address.strip().lower().startswith("ray://")


def _ray(address: str | None = None):
    """The ray module; for a Ray Client address (``ray://``) also its client dependency (grpcio), checked up front
    so a missing one is one clear line before any run is recorded, not Ray's "reinstall ray" after the runs began."""
    try:
        import ray
    except ImportError:
        raise ScalectlError("--ray needs the ray package: pip install 'scalectl[ray]' "
                            "(or pip install 'ray[client]>=2.9')") from None
    if _is_client(address):
        try:
            import grpc  # noqa: F401 - what Ray Client needs and a plain `pip install ray` lacks
        except ImportError:
            raise ScalectlError(f"--ray {address.strip()} is a Ray Client address and needs grpcio, which this ray install "
                                "lacks: pip install 'scalectl[ray]' (or pip install 'ray[client]')") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Start (local) or join (address) Ray; returns what the driver is connected to."""
    from .paths import home

    ray = _ray(address)
    env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    env["SCALECTL_HOME"] = str(home())
    if not ray.is_initialized():
        kw: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "configure_logging": False}
        if address is None or address.strip().lower() in LOCAL:
            if num_cpus is not None and num_cpus < 1:
                raise EvalError(f"--ray-workers must be at least 1, got {num_cpus}")
            # Ray runs its workers at niceness 15 by default: these workers are the computation, not background work
            kw.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                      _system_config={"worker_niceness": 0})
        else:
            kw["address"] = address
        try:
            with warnings.catch_warnings():  # Ray Client warns before it raises; the error line says it all
                warnings.simplefilter("ignore", UserWarning)
                ray.init(**kw)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise EvalError(f"cannot connect to Ray at {address!r}: {str(e).splitlines()[0] if str(e) else e}") from None
    res = ray.cluster_resources()
    return {"address": address or "local", "cpus": int(res.get("CPU", 0)), "gpus": int(res.get("GPU", 0))}


_WORKER_BB: dict[tuple, Any] = {}


def _unit_on_worker(spec: Any, unit: Any, threads: int) -> Any:
    """Runs on a Ray worker: one unit with this worker's (cached) backbone; nothing is written."""
    import torch

    from .backbone import load_backbone
    from .evaluate import compute_unit

    torch.set_num_threads(threads)
    key = (spec.base, spec.device)
    if key not in _WORKER_BB:
        _WORKER_BB.clear()
        _WORKER_BB[key] = load_backbone(spec.base, device=spec.device)
    return compute_unit(spec, unit, bb=_WORKER_BB[key])


def run_specs(specs: list[RunRequest], address: str | None = None, num_cpus: int | None = None, reg=None,
              progress: Progress | None = None) -> list:
    """Every unit of every run in ``specs`` as one Ray job; records written here, in order; one EvalResult per spec."""
    import torch

    from .backbone import load_backbone
    from .evaluate import PreparedRun, run_base
    from .registry import Registry

    if not specs:
        return []
    prog = ensure(progress)
    ray = _ray(address)  # before any run is recorded: a missing ray (or Ray Client's grpcio) is one line, no failed runs
    info = connect(address, num_cpus)  # an unreachable cluster is one line too: nothing loaded, no failed runs
    reg = reg or Registry()
    bbs: dict[tuple, Any] = {}
    runs: list[PreparedRun] = []
    try:
        for s in specs:
            base = run_base(reg, s.base, s.pool, s.adapters, required=s.method is not None).spec
            key = (base, s.device)
            if key not in bbs:
                prog.log("loading the base model (the driver computes each run's config)")
                bbs[key] = load_backbone(base, device=s.device)
            runs.append(PreparedRun(s, reg=reg, bb=bbs[key], progress=prog))
    except BaseException as e:
        for r in runs:
            r.fail(e)
        raise
    try:
        threads = torch.get_num_threads()
        gpu = 1 if any(r.bb.device.startswith("cuda") for r in runs) else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpu, max_retries=0)(_unit_on_worker)
        jobs = [(r, u, remote.remote(r.spec(), u, threads)) for r in runs for u in r.units()]
        total = sum(r.total * (len(r.units()) // max(1, len(r.plan))) for r in runs)
        prog.log(f"{len(jobs)} Ray jobs ({len(runs)} run(s)) on {info['cpus']} CPU(s)"
                 + (f", {info['gpus']} GPU(s)" if info["gpus"] else "") + f" at {info['address']}")
        prog.start("decode", f"ray: {len(jobs)} jobs", total)
        t0 = time.perf_counter()
        for r, u, ref in jobs:  # records are written in submission order (task order within each run)
            try:
                res = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, ScalectlError):
                    raise type(cause)(f"{u.task}{' (' + u.view + ')' if u.view else ''}: {cause}") from None
                raise EvalError(f"Ray job {r.method} on {u.task} failed: {cause or e}") from None
            r.accept(u, res)
            prog.advance("decode", len(res.outputs), description=f"ray: {r.method} {u.task}")
        prog.finish("decode")
        wall = time.perf_counter() - t0
    except BaseException as e:
        for r in runs:
            if len(r.scores) != len(r.plan):
                r.fail(e)
        raise
    return [r.finish(extra={"fanout": {"engine": "ray", "address": info["address"], "cpus": info["cpus"],
                                       "jobs": len(r.units()), "wall_seconds": round(wall, 3)}}) for r in runs]
