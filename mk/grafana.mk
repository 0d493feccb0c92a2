# Grafana dashboards as code (grafana/generate.py, grafana-foundation-sdk pinned in pyproject).
.PHONY: dashboards dashboards-check

# Regenerate grafana/dashboards/*.json after changing grafana/dlcourse_dashboards/.
dashboards: venv  ## regenerate grafana/dashboards/*.json
	$(PY) grafana/generate.py

# Fails when the committed JSON differs from what the Python generates.
dashboards-check: venv  ## fail when the committed dashboards are stale
	$(PY) grafana/generate.py --check
