"""Every file an install writes, as text: the registry (generated.py ``plan()``), the text
of each file (templates.py, grafana_config.py, staff.py, students.py), who may read the
monitoring stack (access.py, webauth.py), the packaged rules, dashboards and JupyterLab
extension (assets.py), and
``dlcourse-install render``, which writes all of it under a folder (render.py, rooted.py)."""
