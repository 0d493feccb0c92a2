# The tests by area: `make test-unit` (no process started: seconds) and `make test-AREA`.
# tests/ mirrors the source tree; the stand-in NVML's tests are tests/stand_in_nvml (a
# folder named fakenvml there would shadow the package on pytest's sys.path).
TEST_AREAS := bench demo exporter fakenvml grafana helm installer integration labextension prometheus
TEST_AREAS += security students testing
.PHONY: test-unit $(addprefix test-,$(TEST_AREAS))

test-unit: venv  ## the unit tests alone: nothing marked live (no process started), in seconds
	$(PY) -m pytest -q -m "not live"

test-fakenvml: AREA_TESTS := tests/stand_in_nvml
$(addprefix test-,$(TEST_AREAS)): test-%: setup  ## one area's tests (the areas above)
	$(PY) -m pytest $(or $(AREA_TESTS),tests/$*)

# Issue 23's proof at full size: 100 deaths of each kind on the live test hub, the reason
# on the student's page (make test provokes 3 of each). The result is in docs/students.md.
.PHONY: proof-deaths
proof-deaths: setup  ## 100 provoked kernel deaths of each kind, the reason on the page
	DLCOURSE_DEATHS_EACH=100 $(PY) -m pytest -s --no-cov tests/students/test_death_reasons.py
