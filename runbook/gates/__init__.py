"""The gates: each runs real code, counts its checks, writes a report and a gate event."""
