"""Every file an install writes, as text: the registry (generated.py ``plan()``), the text
of each file (templates.py, grafana_config.py, staff.py), who may read the monitoring stack
(access.py, webauth.py), the packaged rules and dashboards (assets.py), and
``dlcourse-install render``, which writes all of it under a folder (render.py, rooted.py)."""
