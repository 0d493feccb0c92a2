# The installer's own targets. `make test` and `make test-installer` run tests/installer.
.PHONY: installer-plan installer-docs

installer-plan: venv  ## what dlcourse-install would do on this machine (changes nothing)
	$(VENV)/bin/dlcourse-install --dry-run --admin teacher --driver 580 || true

installer-docs: venv  ## regenerate the option table of docs/installer.md
	$(PY) -m dlcourse_installer.docs
