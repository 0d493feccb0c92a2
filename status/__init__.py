"""dlcourse-status: the class-status page, for staff only, as a JupyterHub service.

The hub starts it (a managed service, see ``dlcourse_installer.rendered.access``) and hands it, in
its environment, its hub token, its URL prefix and the exporter's bearer token. People reach
it at ``/services/dlcourse-status/`` through the hub's own login: JupyterHub's service OAuth
(``HubOAuth``) lets in only users holding ``access:services!service=dlcourse-status``, which
the ``dlcourse-staff`` role grants to the staff group; hub admins hold it already.

It lives in its own process, in the hub's Python: JupyterHub's OAuth client and Tornado
cost the exporter about 44 MiB it cannot spare.
"""
