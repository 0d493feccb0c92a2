"""The Prometheus job names the dashboards select: parameters, not constants.

generate.py takes the defaults from prometheus/thresholds.json, the one place the alert rules
take them from too. The Helm chart (deploy/helm) builds the dashboards with the names left
open, as `${job.<role>}`, and fills them in from its values, as it does for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Jobs:
    exporter: str  # the dlcourse exporter
    jupyterhub: str  # JupyterHub's own /hub/metrics
    node: str  # node_exporter

    @classmethod
    def left_open(cls) -> Jobs:
        """Placeholders `${job.<role>}` for whoever renders the JSON to fill in."""
        return cls(**{f.name: f"${{job.{f.name}}}" for f in fields(cls)})

    def selector(self, role: str) -> str:
        """The label matcher of one role's job: job="..."."""
        return f'job="{getattr(self, role)}"'
