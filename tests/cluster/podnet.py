"""Pod addresses on loopback: ``127.0.0.N:<port>`` relayed to a replica's own port, counting the bytes.

In a cluster every TF Serving pod has its own IP and listens on the same port (8500), and one DNS name (the
headless Service) answers all the pod IPs. localserving binds 127.0.0.1 only, as TF Serving has no flag to
choose the address it binds (it takes every address, 0.0.0.0), so two replicas cannot share a port on one
machine. Each replica therefore listens on a port of its own and a ``PodAddress`` plays its pod IP: it
accepts on ``127.0.0.N:<shared port>`` and relays each connection, byte for byte, to the replica.

The relay is transparent to gRPC (HTTP/2 GOAWAY, pings and resets pass through). When the replica's process
dies, its connections end and the relay ends the client's side the same way (a reset as a reset); the test
then closes the pod address (``replica_stopped``), so connections are refused, as they are by a pod whose
server process is gone, until the replica is up again (``replica_started``). Without that, the relay would
accept a connection and then reset it, which is not what a client of a dead pod sees.

``bytes_to_replica`` counts what clients sent to the replica: the observable of which replica takes traffic
(a Predict request of the ConfigMap's model is ~150 KB).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

BUFFER_BYTES = 1 << 16
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class PodAddress:
    """Accepts on ``host:port`` and relays every connection to ``127.0.0.1:replica_port``."""

    def __init__(self, host: str, port: int, replica_port: int) -> None:
        self.host = host
        self.port = port
        self.replica_port = replica_port
        self._lock = threading.Condition()
        self._bytes_to_replica = 0
        self._open: set[socket.socket] = set()
        self._closed = False
        self._listener: socket.socket | None = None
        self.replica_started(replica_port)

    def replica_started(self, replica_port: int) -> None:
        """The replica listens on ``replica_port``: the pod address accepts connections again."""
        self.replica_port = replica_port
        self._listener = socket.create_server((self.host, self.port))
        threading.Thread(target=self._accept, args=(self._listener,), name=f"pod-{self.host}", daemon=True).start()

    def replica_stopped(self) -> None:
        """The replica's process is gone, and with it its listening socket: connections are refused.

        Call it right after the process is known to be dead: the kernel would have closed its socket then.
        """
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)

    @property
    def bytes_to_replica(self) -> int:
        with self._lock:
            return self._bytes_to_replica

    def wait_for_bytes(self, count: int, timeout: float) -> None:
        """Block until clients have sent ``count`` bytes to the replica in all (AssertionError after ``timeout``)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._bytes_to_replica >= count, timeout):
                raise AssertionError(f"{self.host}: {count} bytes not sent to the replica within {timeout} s")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._open)
        self.replica_stopped()
        for sock in sockets:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            replica = socket.create_connection(("127.0.0.1", self.replica_port))
        except OSError:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            client.close()
            return
        for sock in (client, replica):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._track(client, replica):
            return
        upstream = threading.Thread(target=self._pump, args=(client, replica, True), daemon=True)
        upstream.start()
        self._pump(replica, client, False)
        upstream.join()
        with self._lock:
            self._open.difference_update((client, replica))

    def _track(self, *sockets: socket.socket) -> bool:
        with self._lock:
            if not self._closed:
                self._open.update(sockets)
                return True
        for sock in sockets:
            _close(sock)
        return False

    def _pump(self, source: socket.socket, sink: socket.socket, to_replica: bool) -> None:
        """Copy until ``source`` ends, then end both: a reset is passed on as a reset, an end as an end."""
        reset = False
        try:
            while data := source.recv(BUFFER_BYTES):
                sink.sendall(data)
                if to_replica:
                    with self._lock:
                        self._bytes_to_replica += len(data)
                        self._lock.notify_all()
        except OSError:
            reset = True
        if reset:
            with contextlib.suppress(OSError):
                sink.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        for sock in (sink, source):
            _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def shared_free_port(hosts: list[str]) -> int:
    """A port free on every one of ``hosts`` (the one port all pods listen on)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        if all(_free(host, port) for host in hosts):
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def _free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
