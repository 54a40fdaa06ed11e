"""Hub ids (``hf:ORG/NAME[@REVISION]``) resolved to local snapshot directories.

The one code path for users with and without the hub: ``huggingface_hub.snapshot_download``
fetches into (or, with ``HF_HUB_OFFLINE=1`` or no network, reads from) the standard HF
cache, and scalectl registers the snapshot directory it returns.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import HubError

HUB_PREFIX = "hf:"
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "README.md"]


def is_hub_ref(s: str) -> bool:
    return s.startswith(HUB_PREFIX)


def parse_hub_ref(s: str) -> tuple[str, str | None]:
    """``hf:ORG/NAME[@REV]`` (or a bare ``ORG/NAME``) -> (repo_id, revision)."""
    ref = s[len(HUB_PREFIX):] if s.startswith(HUB_PREFIX) else s
    rev = None
    if "@" in ref:
        ref, rev = ref.split("@", 1)
    if not _REPO_RE.match(ref):
        raise HubError(f"{s!r} is not a hub id: expected hf:ORG/NAME")
    return ref, rev or None


def cache_dir() -> str | None:
    """The HF hub cache named by the environment now (HF_HUB_CACHE, else HF_HOME/hub); None = library default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def snapshot(repo_id: str, revision: str | None = None, allow_pickle: bool = False) -> Path:
    """Download (or find in the HF cache) an adapter repo's files; return the snapshot dir."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = list(ADAPTER_FILES) + (["adapter_model.bin"] if allow_pickle else [])
    try:
        p = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=patterns, cache_dir=cache_dir())
    except LocalEntryNotFoundError:
        raise HubError(
            f"hf:{repo_id}: not in the local HF cache and the hub is not reachable "
            "(check the network or HF_HUB_OFFLINE; set HF_HOME/HF_HUB_CACHE to a cache that has it)"
        ) from None
    except RepositoryNotFoundError:
        raise HubError(f"hf:{repo_id}: no such repository on the hub (or it is private: run 'hf auth login')") from None
    except (HfHubHTTPError, OSError) as e:
        raise HubError(f"hf:{repo_id}: download failed ({str(e).splitlines()[0]})") from None
    return Path(p)
