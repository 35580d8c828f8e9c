"""The contract between augserve's server and its clients, written once and imported by both sides.

- :mod:`.spec`: the augmentation spec (ops, output) and the shapes it gives;
- :mod:`.seeds`: how every variant's seed is derived;
- :mod:`.epochs`: which samples an epoch visits, in which order, and how shards split it;
- :mod:`.wire`: the variant tar and the batch frames, their writers and their readers;
- :mod:`.errors`: the error codes, their HTTP statuses, and the typed exceptions they map back to;
- :mod:`.datasets`: the dataset registration requests.

It depends on numpy and pydantic only (no HTTP library), so the server imports it without the client's
transport, and any reader of the wire can use it alone.
"""
