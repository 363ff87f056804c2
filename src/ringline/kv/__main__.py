"""`python -m ringline.kv`: parse the command line into KvOptions and run the
server with ringline.serve until SIGINT/SIGTERM.

Owns: the command line only (every option is a KvOptions field or a
runtime Config field; docs/kv.md lists them).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from .._runtime.config import Config
from .._runtime.supervisor import serve
from .resp import Limits
from .server import KvOptions, KvServer

__all__ = ["main", "parse_args"]


def _yes_no(text: str) -> bool:
    t = text.lower()
    if t in ("yes", "1", "true", "on"):
        return True
    if t in ("no", "0", "false", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def parse_args(argv: Optional[List[str]] = None) -> KvOptions:
    p = argparse.ArgumentParser(prog="python -m ringline.kv",
                                description="A Redis-compatible server on ringline.")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--workers", type=int, default=1,
                   help="shards (worker processes); >1 serves cluster-style MOVED")
    p.add_argument("--appendonly", type=_yes_no, default=False, metavar="yes|no")
    p.add_argument("--dir", default=".", help="directory of the journal files")
    p.add_argument("--appendfsync", type=_yes_no, default=True, metavar="yes|no",
                   help="fdatasync each group commit (default yes)")
    p.add_argument("--commit-interval-us", type=int, default=0,
                   help="group commit every N microseconds (0: once per loop turn)")
    p.add_argument("--ack-policy", default="none",
                   choices=["none", "disk", "replica", "disk+replica"])
    p.add_argument("--ack-replicas", type=int, default=1,
                   help="replicas that must acknowledge a write (policies *replica)")
    p.add_argument("--replicaof", nargs=2, metavar=("HOST", "PORT"),
                   help="serve as a read-only replica of HOST PORT")
    p.add_argument("--repl-backlog-size", type=int, default=16 << 20,
                   help="bytes of recent writes kept per shard for resuming (sub-)replicas")
    p.add_argument("--repl-max-pending", type=int, default=64 << 20,
                   help="unsent bytes after which a stalled replica is disconnected")
    p.add_argument("--client-cap", type=int, default=8 << 20,
                   help="slow-client cap: bytes held + unsent per connection")
    p.add_argument("--max-bulk", type=int, default=Limits._field_defaults["max_bulk"])
    p.add_argument("--max-args", type=int, default=Limits._field_defaults["max_args"])
    p.add_argument("--max-inline", type=int, default=Limits._field_defaults["max_inline"])
    p.add_argument("--max-request", type=int, default=Limits._field_defaults["max_request"])
    a = p.parse_args(argv)
    replicaof = None
    if a.replicaof:
        try:
            replicaof = (a.replicaof[0], int(a.replicaof[1]))
        except ValueError:
            p.error(f"--replicaof: port must be an integer, got {a.replicaof[1]!r}")
    try:
        return KvOptions(host=a.bind, port=a.port, workers=a.workers, appendonly=a.appendonly,
                         dir=a.dir, appendfsync=a.appendfsync,
                         commit_interval=a.commit_interval_us / 1e6 or None,
                         ack_policy=a.ack_policy, client_cap=a.client_cap,
                         ack_replicas=a.ack_replicas, replicaof=replicaof,
                         repl_backlog_size=a.repl_backlog_size,
                         repl_max_pending=a.repl_max_pending,
                         limits=Limits(a.max_bulk, a.max_args, a.max_inline, a.max_request))
    except ValueError as exc:
        p.error(str(exc))
        raise


def runtime_config(opts: KvOptions) -> Config:
    return Config(workers=opts.workers, pin_to_core=False,
                  recv_accumulator_cap=opts.limits.max_request + 65536,
                  # the hard bound behind the gate's cap: one reply may exceed the cap
                  max_send_queue=max(opts.client_cap * 4, 512 << 20))


def main(argv: Optional[List[str]] = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    KvServer.options = opts
    try:
        serve(KvServer, (opts.host, opts.port), runtime_config(opts))
    except (OSError, RuntimeError) as exc:
        logging.getLogger("ringline.kv").error("ringline.kv failed to start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
