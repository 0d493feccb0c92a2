.PHONY: bench
bench: setup  ## benchmark the exporter against node_exporter, results in docs/performance.md
	$(PY) -m bench --write docs/performance.md
