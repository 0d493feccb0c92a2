"""grafana/ is a folder of the repository, not an installed package: pyproject's pytest
`pythonpath` makes its `dlcourse_dashboards` importable."""
