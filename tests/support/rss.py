"""The client process's memory for the hostile-peer tests: reset the
kernel's peak-RSS mark (VmHWM) and read it back, so a test measures the
peak a call reached without sampling."""
import ctypes
import gc


def status(field):
    """A /proc/self/status field (``"VmRSS:"``, ``"VmHWM:"``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def reset_peak_rss():
    """Release free heap, reset the kernel's peak-RSS mark (VmHWM) to the
    current RSS; the RSS now."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status("VmRSS:")
