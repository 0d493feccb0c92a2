# TLJH 2.0.0 from its source in ../shared/upstream (absent in a plain clone: then a no-op),
# with dlcourse as its plugin, for the conformance tests (testing/tljh_env.py, docs/hub.md).
.PHONY: tljh-env test-tljh

tljh-env: venv
	$(PY) -m dlcourse_testing.tljh_env
setup: tljh-env

test-tljh: setup  ## dlcourse against TLJH 2.0.0's own code (tests/tljh_conformance)
	$(PY) -m pytest tests/tljh_conformance
