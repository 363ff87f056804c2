"""Leaf helpers of ringline that import nothing else from the package.

Owns: `addr` (the one parser of "host:port" text and (host, port) pairs),
`ketama` (libmemcached-compatible consistent hashing) and `ratelog` (a
rate-limited warning). Every layer may import from here; nothing here imports
a layer above (only `ringline._errors`, itself a leaf, is allowed).
"""
