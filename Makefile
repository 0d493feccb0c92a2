# The two commands a newcomer needs: `make demo` and `make test`.
# Each does its own setup: Debian packages (when root), the venv, the stand-in NVML.
VENV ?= .venv
PY := $(VENV)/bin/python
# Students' servers and kernels run as other Linux accounts, which cannot read a venv
# under /root: as root they get their own world-readable environment (as TLJH's /opt/tljh/user).
USERENV ?= $(shell [ "$$(id -u)" = 0 ] && echo /opt/dlcourse-dev/user-env || echo $(CURDIR)/$(VENV))
export DLCOURSE_USERENV := $(USERENV)

.PHONY: help setup system venv userenv test lint demo bench clean

help:  ## this list
	@echo "make targets (test areas: $(TEST_AREAS)):"
	@grep -hE '^[a-z$$(][^:]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^\$$\(addprefix test-,\$$\(TEST_AREAS\)\): test-%/test-AREA/' \
	  | awk -F':.*## ' '{ printf "  %-18s %s\n", $$1, $$2 }'

setup: system venv userenv  ## Debian packages (as root), the venv, the students' environment

system:
	scripts/setup-system.sh

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml testing/pyproject.toml
	/usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q -e ./testing  # the test helpers: not in the product's wheel
	touch $@

# The kernel extension and its loader, as the installer writes them into TLJH's environment.
USER_KERNEL_CONFIG := $(USERENV)/etc/ipython/ipython_kernel_config.py

userenv: $(USERENV)/.installed $(USERENV)/.jupyterlab $(USER_KERNEL_CONFIG)
$(USERENV)/.installed:
	/usr/bin/python3 -m venv $(USERENV)
	$(USERENV)/bin/python -m pip install -q "jupyterhub>=5.2,<6" jupyter_server ipykernel
	chmod -R a+rX $(USERENV)
	touch $@
# JupyterLab 4, as TLJH's user environment has it: the dlcourse extension's tests open it,
# and `make labextension` builds against its core (pinned: the same build everywhere)
# (a stamp of its own, so environments made before it get it too).
$(USERENV)/.jupyterlab: $(USERENV)/.installed
	$(USERENV)/bin/python -m pip install -q "jupyterlab==4.6.6"
	chmod -R a+rX $(USERENV)
	touch $@

$(USER_KERNEL_CONFIG): installer/probes/kernel_gpu_errors.py installer/rendered/templates.py $(USERENV)/.installed | venv
	mkdir -p $(@D)
	cp installer/probes/kernel_gpu_errors.py $(@D)/dlcourse_kernel_gpu_errors.py
	$(PY) -c 'from dlcourse_installer.rendered.templates import kernel_config; print(kernel_config(), end="")' > $@
	chmod -R a+rX $(@D)

test: setup  ## every test, with coverage (floor 85 %)
	$(PY) -m pytest --cov --cov-report=term --cov-fail-under=85

lint: venv  ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:  ## remove the venv and build outputs
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Each area adds its own targets (demo, bench, dashboards, ...) in mk/*.mk.
-include mk/*.mk
