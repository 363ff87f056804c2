"""A plain TCP peer on 127.0.0.1 that answers each chunk it receives with
``answer(chunk)``: the generator's tests use it as a server that answers
wrongly on purpose or holds its answer back.

Lifecycle: ``AnsweringServer(answer)`` listens and accepts in a daemon
thread (one more daemon thread per connection); ``close()`` closes the
listener (connections end when their peer closes). ``answer`` runs in the
connection's thread and may block (on an event the test sets, never a
guessed sleep).
"""
import socket
import threading


class AnsweringServer:
    def __init__(self, answer):
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    conn.sendall(self.answer(data))
                except OSError:
                    return

    def close(self):
        self.listener.close()
