.PHONY: bench
bench: setup  ## benchmark the exporter against node_exporter (see docs/performance.md)
	$(PY) bench/bench_exporter.py
