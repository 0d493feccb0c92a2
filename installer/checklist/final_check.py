"""Step 10: the stack as a whole: every service active, every Prometheus target up, and a
sample query answered."""

from __future__ import annotations

import json

from dlcourse_installer.checklist.step import Context, Step, StepError
from dlcourse_installer.machine import systemd
from dlcourse_installer.machine.host import Host
from dlcourse_installer.rendered import templates


def _get_json(host: Host, netrc: str, url: str, *params: str) -> dict | None:
    args = [a for p in params for a in ("--data-urlencode", p)]
    # As the instructor: the password comes from a root-only netrc, never the command line.
    r = host.query(["curl", "-fsS", "--max-time", "10", "--netrc-file", netrc, "-G", *args, url])
    try:
        return json.loads(r.stdout) if r.ok else None
    except json.JSONDecodeError:
        return None


def ensure_final_check(ctx: Context) -> None:
    host, opts, netrc = ctx.host, ctx.opts, ctx.paths.instructor_netrc
    if opts.dry_run:
        ctx.note("after a real run: services active, Prometheus targets up, a sample query")
        return
    units = [
        "jupyterhub",
        templates.EXPORTER_SERVICE,
        "prometheus",
        "prometheus-alertmanager",
        "prometheus-node-exporter",
        "grafana-server",
    ]
    inactive = [u for u in units if not systemd.is_active(host, u)]
    if inactive:
        raise StepError(f"not running: {', '.join(inactive)} (see `journalctl -u {inactive[0]}`)")

    prom = f"http://{ctx.ports.address('prometheus')}"
    active: list[dict] = []
    down: list[str] = ["(no answer from Prometheus)"]
    for _ in range(12):  # targets turn up after their first scrape (15 s)
        targets = _get_json(host, netrc, f"{prom}/api/v1/targets", "state=active")
        if targets is not None:
            active = targets.get("data", {}).get("activeTargets", [])
            down = [t["labels"].get("job", "?") for t in active if t.get("health") != "up"]
            if not down:
                break
        host.sleep(5)
    if down:
        raise StepError(f"Prometheus targets down: {', '.join(down)} (see {prom}/targets)")
    answer = _get_json(host, netrc, f"{prom}/api/v1/query", "query=dlcourse_exporter_build_info")
    series = (answer or {}).get("data", {}).get("result", [])
    if not series:
        raise StepError(
            "Prometheus has no dlcourse_exporter_build_info: the exporter is not scraped"
        )
    ctx.note(f"{len(active)} Prometheus targets up; a sample query answered")


STEP = Step("final-check", "Final check", ensure_final_check, always=True)
