"""Leaf helpers of ringline that import nothing else from the package.

Owns: `addr` (the one parser of "host:port" text and (host, port) pairs),
`ketama` (libmemcached-compatible consistent hashing) and `ratelog` (a
rate-limited warning). Every layer may import from here; nothing here imports
a layer above (only `ringline._errors`, itself a leaf, is allowed).

Lifecycle: importing the package imports none of its modules.  Invariants:
no module here holds mutable module-level state; what state there is lives
in the objects they hand out (a Ketama ring, a RateLimitedLog).
"""
