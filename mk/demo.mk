.PHONY: demo
demo: setup  ## the whole stack on simulated GPUs (Ctrl-C stops it)
	$(PY) demo/run.py
