"""The bulk client, ``imagegate classify``: a folder or a list of URLs through a tier, with progress and resume.

It talks to a tier over HTTP like any other client. It uses the standard library, tqdm (on a terminal only)
and ``processing.sniff`` (so it calls an image what the tier calls one), never the tier's server modules:
importing it does not import Tornado, gRPC, NumPy or OpenCV (tests/app/bulk/test_process.py).
"""

PROG = "imagegate classify"  # the command's name: its usage line and the start of each line it writes to stderr
