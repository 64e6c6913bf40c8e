"""Where this process's cgroup files are: its cgroup v2 directory, or its directory in a cgroup v1 controller's tree.

Read from ``/proc/self/cgroup``: the cgroup v2 line is ``0::/path``; a cgroup v1 line names its controllers,
``4:memory:/path``, whose tree is mounted at ``/sys/fs/cgroup/<controller>``. A limit set on a parent caps its
children, so callers read each directory from the root down to the process's own and keep the tightest. In a
container (its own cgroup namespace) the process's cgroup usually is the root itself.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def cgroup_chain(root: Path, proc_cgroup: Path, controller: str | None = None) -> list[Path]:
    """The tree's root and each directory down to this process's cgroup under it.

    ``controller`` None: the cgroup v2 tree at ``root``; else that cgroup v1 controller's tree, at ``root/controller``.
    """
    base = root if controller is None else root / controller
    own = own_cgroup(proc_cgroup, controller)
    parts = PurePosixPath(own).parts[1:] if own else ()
    return [base.joinpath(*parts[:depth]) for depth in range(len(parts) + 1)]


def own_cgroup(proc_cgroup: Path, controller: str | None = None) -> str | None:
    """This process's cgroup: the v2 path (``0::``), or the v1 path of ``controller``; None if absent or unreadable."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controller is None:
            ours = hierarchy == "0" and not controllers
        else:
            ours = controller in controllers.split(",")
        if ours and path.startswith("/") and ".." not in path:
            return path
    return None
