"""The engine: capability contract, the adapter state machine, the sync adapter, its
artifact stores, fault injection, the runner and durability. It imports `events` only."""
