"""`asup ui`: a local, read-only web console over transfer logs (the `asupersync[ui]` extra).

`views.py` is the contract between the model (folds fed by the follower, pure Python) and
the web layer (Starlette): the web layer renders these structs and nothing else.
"""
