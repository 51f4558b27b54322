"""pbsweb-client: back up hosts to a pbsweb server over HTTPS (docs/PROTOCOL.md).

Imports only the standard library and datastores.engine (never Django), so it
installs on a host with `pip install` of this repository (pyproject.toml).
"""
