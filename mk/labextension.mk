# The JupyterLab extension (labextension/): committed prebuilt, so installs and CI need no node.
# `make labextension` rebuilds labextension/prebuilt with JupyterLab's own builder (npm) against
# the users' environment's JupyterLab, and records which sources it was built from.
LABEXT := labextension
LAB_STAGING = $(shell $(USERENV)/bin/python -c "import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), 'staging'))")

.PHONY: labextension labextension-check

labextension: userenv  ## rebuild the JupyterLab extension's prebuilt files (needs npm)
	cd $(LABEXT) && npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(LABEXT)/prebuilt
	cd $(LABEXT) && node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path $(LAB_STAGING) .
	/usr/bin/python3 $(LABEXT)/sources.py > $(LABEXT)/BUILT_FROM

# The container's entry (remoteEntry.*.js) numbers its one module by the folder's absolute
# path, so it differs between checkouts; the extension's own code (the other chunk) does not.
CHECK_DIR := build/labextension-check/$(LABEXT)
labextension-check: userenv  ## rebuild in a scratch copy and diff against the committed build
	rm -rf $(CHECK_DIR) && mkdir -p $(CHECK_DIR)
	cp -r $(LABEXT)/src $(LABEXT)/package.json $(LABEXT)/package-lock.json $(CHECK_DIR)/
	cd $(CHECK_DIR) && npm ci --no-audit --no-fund --loglevel=error \
	  && node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path $(LAB_STAGING) .
	diff -r -x 'remoteEntry.*' -I '"load": ' $(CHECK_DIR)/prebuilt $(LABEXT)/prebuilt
