"""What a test of a target store needs, shipped beside the code:
`engine.testing.target_store_contract.TargetStoreContract`, the contract every target
store passes (that module needs pytest; this one does not)."""
