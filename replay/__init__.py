"""Verify a log, re-execute it, diff two logs, tail a live log. Imports everything to its
left (events, engine, projections), never `runbook`."""
