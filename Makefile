# The two commands a newcomer needs: `make demo` and `make test`.
# Each does its own setup: Debian packages (when root), the venv, the stand-in NVML.
VENV ?= .venv
PY := $(VENV)/bin/python
# Students' servers and kernels run as other Linux accounts, which cannot read a venv
# under /root: as root they get their own world-readable environment (as TLJH's /opt/tljh/user).
USERENV ?= $(shell [ "$$(id -u)" = 0 ] && echo /opt/dlcourse-dev/user-env || echo $(CURDIR)/$(VENV))
export DLCOURSE_USERENV := $(USERENV)

.PHONY: setup system venv userenv test lint demo bench clean

setup: system venv userenv

system:
	scripts/setup-system.sh

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	/usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

userenv: $(USERENV)/.installed
$(USERENV)/.installed:
	/usr/bin/python3 -m venv $(USERENV)
	$(USERENV)/bin/python -m pip install -q "jupyterhub>=5.2,<6" jupyter_server ipykernel
	chmod -R a+rX $(USERENV)
	touch $@

test: setup
	$(PY) -m pytest --cov --cov-report=term --cov-fail-under=85

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Each area adds its own targets (demo, bench, dashboards, ...) in mk/*.mk.
-include mk/*.mk
