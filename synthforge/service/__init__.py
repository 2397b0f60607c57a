"""The service: ``synthforge serve`` — an HTTP API and a web dashboard over the job store, with accounts.

- :mod:`synthforge.service.app`: the FastAPI app (``create_app``), its routes and pages;
- :mod:`synthforge.service.accounts`: users, roles, API tokens, sessions, the audit log, login limits;
- :mod:`synthforge.service.folders`: the folders the service may read and write, and the path checks.

Needs the ``service`` extra: ``pip install 'synthforge[service]'``.
"""
