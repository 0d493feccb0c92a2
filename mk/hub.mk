# Hub collector: its tests, and re-recording the hub API answers the unit tests replay.
.PHONY: test-hub hub-record

test-hub: setup
	$(PY) -m pytest tests/hub

hub-record: venv
	$(PY) tests/hub/record_responses.py
