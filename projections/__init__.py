"""Pure folds over events: transfers, audit, metrics, checklist, escalation, evidence.
They import `events` and `engine` only."""
