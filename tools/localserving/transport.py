"""How localserving listens: address and gRPC server options (no TensorFlow here, the benchmark reuses them)."""

from __future__ import annotations

HOST = "127.0.0.1"
GRPC_OPTIONS = (
    # TF Serving takes messages of any size; a batch of 32 224x224 float images is 19 MB.
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # grpc enables SO_REUSEPORT by default, which would let two servers share a port silently.
    ("grpc.so_reuseport", 0),
    # Let clients send large requests in few HTTP/2 frames (measured: a 19 MB request takes ~30% less time).
    ("grpc.http2.max_frame_size", (1 << 24) - 1),
)
