"""kickoff: an event-sourced task scheduler for heterogeneous compute clusters.

The Python API (docs/python.md): `kickoff.Client`, and `kickoff.Task` as it answers tasks;
imported on first use, so that `import kickoff` (and the command line) stays quick.
"""

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kickoff.client import Client, Task

__all__ = ["Client", "Task", "__version__"]


def __getattr__(name: str) -> object:
    if name in ("Client", "Task"):
        from kickoff import client

        return getattr(client, name)
    raise AttributeError(f"module 'kickoff' has no attribute {name!r}")
