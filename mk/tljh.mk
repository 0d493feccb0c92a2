# TLJH 2.0.0 from its source in ../shared/upstream (absent in a plain clone: then a no-op),
# with dlcourse as its plugin, for the conformance tests (tests/tljh_env.py, docs/hub.md).
.PHONY: tljh-env test-tljh

tljh-env: venv
	$(PY) tests/tljh_env.py
setup: tljh-env

test-tljh: setup
	$(PY) -m pytest tests/tljh_conformance
