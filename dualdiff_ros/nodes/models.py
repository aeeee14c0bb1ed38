"""Model announcements: a ModelInfo message from a checkpoint's header."""
from __future__ import annotations

import json
from pathlib import Path


def model_info(msg_type, role: str, domain: str, task: str, path: Path, header: dict):
    """A ModelInfo announcement from a checkpoint's header."""
    meta = header.get("metadata", {})
    summary = {"architecture": header.get("architecture"), "schedule": header.get("schedule"), **meta}
    summary.pop("training", None)  # the full training log stays in the file; keep the message small
    return msg_type(role=role, domain=domain, task=task, version=str(meta.get("version", "")),
                    checkpoint_path=str(path), metadata_json=json.dumps(summary, default=str))
