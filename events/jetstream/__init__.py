"""The log on NATS JetStream: the scale-out store, selected by a `nats://` URL.

nats-py is imported only when a URL log is opened, so the JSONL path pays nothing for it.
"""
