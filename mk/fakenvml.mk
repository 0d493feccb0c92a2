# The stand-in libnvidia-ml.so.1 (fakenvml/): `make fakenvml` builds it into build/fakenvml/.
# Use it with LD_LIBRARY_PATH=build/fakenvml FAKENVML_SCENARIO=<file>; see docs/fakenvml.md.
FAKENVML_DIR ?= build/fakenvml

.PHONY: fakenvml
fakenvml: $(FAKENVML_DIR)/libnvidia-ml.so.1  ## build the stand-in libnvidia-ml.so.1

# build_library itself rebuilds only when the source or compiler changed.
$(FAKENVML_DIR)/libnvidia-ml.so.1: fakenvml/fakenvml.c fakenvml/build.py | venv
	$(PY) -m fakenvml build --out $(FAKENVML_DIR)
