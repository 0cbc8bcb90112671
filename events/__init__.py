"""The vocabulary and the log: event types, states/triggers/reason codes, record encoding
and integrity, and the log stores. Imports no other asup package."""
