# Re-recording the hub API answers the hub unit tests replay (tests/exporter/sources/recorded).
.PHONY: hub-record

hub-record: venv  ## record a real JupyterHub's GET /users answers for the hub unit tests
	$(PY) tests/exporter/sources/record_responses.py
