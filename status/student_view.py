"""What one student's page shows: their own facts from the exporter, judged and explained.

Pure: the exporter's answer for one user in, the page's JSON out. Only the fields named here
pass, so nothing the exporter adds later reaches a student unreviewed, and an answer for
anyone but the logged-in user is refused (the exporter would have to be wrong twice).
"""

from __future__ import annotations

from typing import Any

from dlcourse_installer.hub.gpu_idle import IdleSettings, judge
from dlcourse_status.deaths import explain

MAX_ITEMS = 64  # kernels, processes or deaths on one page: more is an exporter bug


class WrongStudent(Exception):
    """The exporter answered for another user."""


def _number(value: Any, default: float = 0.0) -> float:
    return (
        float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
    )


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


def _text(value: Any, limit: int = 200) -> str:
    return " ".join(str(value).split())[:limit] if value is not None else ""


def _list(value: Any) -> list[Any]:
    return value[:MAX_ITEMS] if isinstance(value, list) else []


def student_view(
    user: str,
    facts: dict[str, Any] | None,
    settings: IdleSettings,
    now: float,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The page's JSON for `user`. facts None: the exporter has not seen them (no GPU use)."""
    facts = facts or {"user": user}
    if facts.get("user") != user:
        raise WrongStudent(f"the exporter answered for {facts.get('user')!r}, not {user!r}")
    kernels = []
    for k in _list(facts.get("kernels")):
        if not isinstance(k, dict):
            continue
        memory = int(_number(k.get("gpu_memory_bytes")))
        idle_since = _optional_number(k.get("gpu_idle_since"))
        verdict = judge(memory, idle_since, now, settings)
        kernels.append(
            {
                "kernel_id": _text(k.get("kernel_id"), 64),
                "notebook": _text(k.get("notebook"), 200),
                "started": _optional_number(k.get("started")),
                "gpu_memory_bytes": memory,
                "gpu_utilization_ratio": _number(k.get("gpu_utilization_ratio")),
                "gpu_idle_since": idle_since,
                "gpus": [_text(g, 64) for g in _list(k.get("gpus"))],
                "idle": {
                    "phase": verdict.phase,
                    "warned": verdict.warned,
                    "warn_at": verdict.warn_at,
                    # A deadline only when the lecturer turned the culler on.
                    "shutdown_at": verdict.due_at if settings.cull else None,
                    "seconds_left": verdict.seconds_left if settings.cull else None,
                },
            }
        )
    processes = [
        {
            "pid": int(_number(p.get("pid"))),
            "command": _text(p.get("command"), 120),
            "gpu_memory_bytes": int(_number(p.get("gpu_memory_bytes"))),
            "gpu_idle_since": _optional_number(p.get("gpu_idle_since")),
        }
        for p in _list(facts.get("other_gpu_processes"))
        if isinstance(p, dict)
    ]
    deaths = []
    for d in _list(facts.get("deaths")):
        if not isinstance(d, dict):
            continue
        reason = _text(d.get("reason"), 32)
        explanation = explain(reason, _text(d.get("detail")))
        deaths.append(
            {
                "kernel_id": _text(d.get("kernel_id"), 64),
                "notebook": _text(d.get("notebook"), 200),
                "at": _optional_number(d.get("at")),
                "reason": reason,
                "what": explanation.what,
                "advice": explanation.advice,
            }
        )
    deaths.sort(key=lambda d: d["at"] or 0, reverse=True)
    gpus = [
        {
            "gpu": _text(g.get("gpu"), 16),
            "uuid": _text(g.get("uuid"), 64),
            "assigned": bool(g.get("assigned")),
            "memory_used_bytes": int(_number(g.get("memory_used_bytes"))),
            "utilization_ratio": _number(g.get("utilization_ratio")),
        }
        for g in _list(facts.get("gpus"))
        if isinstance(g, dict)
    ]
    return {
        "user": user,
        "generated_at": _optional_number(facts.get("generated_at")),
        "now": now,
        "gpus": gpus,
        "kernels": kernels,
        "other_gpu_processes": processes,
        "deaths": deaths,
        "idle_culls": int(_number(facts.get("idle_culls"))),
        "usage": usage,
        "culling": {
            "on": settings.cull,
            "min_bytes": settings.min_bytes,
            "warn_seconds": settings.warn_seconds,
            "grace_seconds": settings.grace_seconds,
        },
    }
