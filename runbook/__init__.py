"""The runbook as code: the `asup` CLI, gates, e2e pack, readiness, triage, sign-off.
The only package that may import all others; nothing imports it."""
