"""Resource probes of the test process itself, for the leak tests: the number
of open file descriptors and the resident set size, both read from /proc.

Stateless; each call reads /proc afresh.
"""
import os


def open_fds():
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def rss_bytes():
    """This process's resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
