"""A Snakemake run that SIGTERM (a scheduler's or `kill`'s stop) ends without ever hanging it.

Snakemake answers SIGTERM as we want (finish and record the running jobs, start none, exit
non-zero), but its handler takes the scheduler's lock, which the main thread, where Python runs
signal handlers, may already hold while it selects or finishes jobs: the run then hangs for
good (17 of 20 stops of a toy workflow with Snakemake 9.27.1; tests/test_interrupt.py).
"""
import signal
import threading


def relay_sigterm():
    """Replace Snakemake's SIGTERM handler by one that only sets an event; a thread then calls
    Snakemake's handler, waiting for the lock like any other thread. Call it from `onstart`,
    which runs after Snakemake has set its handler, in its main thread."""
    graceful = signal.getsignal(signal.SIGTERM)
    if not callable(graceful):  # Snakemake set none (not its main thread): nothing to guard
        return
    requested = threading.Event()

    def relay():
        requested.wait()
        graceful(signal.SIGTERM, None)

    threading.Thread(target=relay, name="sigterm-relay", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: requested.set())
