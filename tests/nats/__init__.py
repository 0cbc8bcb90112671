"""Real nats-server processes for the tests: binaries, single nodes and loopback clusters."""
