"""ringline's thread-per-core runtime: a supervisor process and one worker
process per core, each worker running its own ringline loop.

Modules (one job each; this file imports none of them, so the package face
can serve their names lazily):

  handler     Handler (the user's server class) and WorkerContext
  config      Config, CPU topology, RLIMIT_NOFILE sizing
  bind        the `bind` argument: parsing, listening and UDP sockets
  fdpass      the wire protocol between the processes, SCM_RIGHTS fd passing
  worker      one worker process: loop, handler, listener, connections, stop
  supervisor  the parent: fork, watch, respawn, acceptor, shutdown; serve()
  launch      launch() and Runtime: the supervisor in a process of its own
  tasks       spawn() and TaskHandle
  channels    Channel and BackpressureQueue

The timer pool and sleep/timeout are one layer down, in ringline._conn.timers
(connections use them too).

Processes: caller --(launch: fork)--> supervisor --fork--> worker 0..N-1; one
SOCK_SEQPACKET channel per worker, and one link between a launching caller
and its supervisor (fdpass describes the messages). Nothing is shared
between workers: each has its own ring, buffer ring, connection table and
timers.

Lifecycle: the processes above, each described by its module (supervisor,
worker, launch); importing this package starts nothing and imports none of
its modules.

Invariants (layering): the runtime sits above the connection layer
(ringline._conn) and the loop, and below the protocol clients; it never
imports the package face or a client (tests/test_layers.py checks it).
"""
