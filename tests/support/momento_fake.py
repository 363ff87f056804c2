"""The fake Momento cache server of ringline.momento's tests: it lives in
ringline.bench.momento_fake (the bench talks to the same fake); see there
for its behaviour and test controls (fake.Control/FailNext, Delay, Short,
Calls, LastMetadata, Reset)."""
from ringline.bench.momento_fake import CACHES, MomentoFake

__all__ = ["MomentoFake", "CACHES"]
