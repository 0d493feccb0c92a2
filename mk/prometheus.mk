# Prometheus rules and Alertmanager configuration (docs/alerting.md).
.PHONY: rules check-prometheus

# Regenerate the committed alert rules and alertmanager.yml from their templates and defaults.
rules:  ## regenerate the alert rules and alertmanager.yml
	/usr/bin/python3 prometheus/render.py rules
	/usr/bin/python3 prometheus/render.py alertmanager --ignore-env

# The real tools on the shipped files (pytest tests/prometheus runs these and more).
check-prometheus:  ## promtool and amtool on the shipped files
	/usr/bin/python3 prometheus/render.py rules --check
	/usr/bin/python3 prometheus/render.py alertmanager --ignore-env --check
	promtool check config --syntax-only prometheus/prometheus.yml
	promtool check rules --lint=all --lint-fatal prometheus/rules/*.yml
	promtool test rules tests/prometheus/rules/*_test.yml
	amtool check-config prometheus/alertmanager.yml
