# The installer's own targets. `make test` already runs tests/installer.
.PHONY: installer-test installer-plan

installer-test: venv
	$(PY) -m pytest tests/installer -q

# What `dlcourse-install` would do on this machine (never changes anything, needs no root).
installer-plan: venv
	$(VENV)/bin/dlcourse-install --dry-run --admin teacher --driver 580 || true
