"""How localserving listens: address, readiness line and gRPC server options (no TensorFlow here: the benchmark
and the launcher reuse them)."""

from __future__ import annotations

from collections.abc import Sequence

HOST = "127.0.0.1"
READY_PREFIX = "localserving: ready on "  # then "<host>:<port> models=<name>:<versions>,...", once all are loaded
GRPC_OPTIONS = (
    # TF Serving takes messages of any size; a batch of 32 224x224 float images is 19 MB.
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # grpc enables SO_REUSEPORT by default, which would let two servers share a port silently.
    ("grpc.so_reuseport", 0),
    # Let clients send large requests in few HTTP/2 frames (measured: a 19 MB request takes ~30% less time).
    ("grpc.http2.max_frame_size", (1 << 24) - 1),
)
# The server channel arguments --grpc_channel_arguments accepts: gRPC core's integer server arguments about
# connection lifetime and keepalive. TF Serving hands any key to gRPC, which ignores one it does not know;
# here an unknown key is refused, so a typo cannot silently do nothing.
SERVER_CHANNEL_ARGUMENTS = (
    "grpc.max_connection_age_ms",
    "grpc.max_connection_age_grace_ms",
    "grpc.max_connection_idle_ms",
    "grpc.keepalive_time_ms",
    "grpc.keepalive_timeout_ms",
    "grpc.keepalive_permit_without_calls",
    "grpc.http2.min_recv_ping_interval_without_data_ms",
    "grpc.http2.max_ping_strikes",
    "grpc.max_concurrent_streams",
)

ChannelArgument = tuple[str, int]


def server_options(channel_arguments: Sequence[ChannelArgument] = ()) -> tuple[ChannelArgument, ...]:
    """GRPC_OPTIONS with the command line's channel arguments on top (a key given there wins)."""
    given = dict(channel_arguments)
    return tuple((key, value) for key, value in GRPC_OPTIONS if key not in given) + tuple(given.items())
