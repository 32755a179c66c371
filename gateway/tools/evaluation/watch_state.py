"""What ``gateway finetune watch`` remembers per job, so a restarted watch repeats nothing.

One small JSON file per job, ``<state dir>/finetune/<job id>.json``::

    {"job_id": "ftjob-...", "last_event_id": "ftevent-...", "registered_model": "ft:..." | null}

``last_event_id`` is the newest event already printed (a restarted watch prints only newer
ones); ``registered_model`` is set once the model was registered as the route's candidate (a
restarted watch does not register it again, which would reset a ramp already under way).

The state directory is ``--state-dir``, else ``$GATEWAY_STATE_DIR``, else
``$XDG_STATE_HOME/gateway``, else ``~/.local/state/gateway``. A state file that cannot be read
is treated as absent; one that cannot be written costs only the restart guarantee (the caller
warns), never the watch.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["WatchState", "default_state_dir", "load_watch_state", "save_watch_state"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(slots=True)
class WatchState:
    """The remembered progress of one job's watch."""

    job_id: str
    last_event_id: str | None = None
    registered_model: str | None = None


def default_state_dir() -> Path:
    """``$GATEWAY_STATE_DIR``, else ``$XDG_STATE_HOME/gateway``, else ``~/.local/state/gateway``."""
    explicit = os.environ.get("GATEWAY_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "gateway"


def _path(state_dir: Path, job_id: str) -> Path:
    return state_dir / "finetune" / f"{_SAFE.sub('_', job_id)}.json"


def load_watch_state(state_dir: Path, job_id: str) -> WatchState:
    """The saved state of ``job_id``, or a fresh one when none can be read."""
    try:
        data = json.loads(_path(state_dir, job_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return WatchState(job_id)
    if not isinstance(data, dict) or data.get("job_id") != job_id:
        return WatchState(job_id)
    last, model = data.get("last_event_id"), data.get("registered_model")
    return WatchState(
        job_id,
        last if isinstance(last, str) else None,
        model if isinstance(model, str) else None,
    )


def save_watch_state(state_dir: Path, state: WatchState) -> None:
    """Write the state atomically (temporary file, then rename).

    Raises:
        OSError: the directory or file cannot be written.
    """
    path = _path(state_dir, state.job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state)), encoding="utf-8")
    temporary.replace(path)
