"""oomtop: top for memory cgroups, with the kernel's own OOM arithmetic."""

__version__ = "0.1.0"
