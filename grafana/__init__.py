"""Grafana dashboards as code, built with the grafana-foundation-sdk.

`python -m grafana.generate` writes `grafana/dashboards/*.json`; the provisioning files under
`grafana/provisioning/` load them into the "Orchestrator" folder.
"""
