"""A CPU-bound pure-Python task for the benchmark's pool-kind rows, in a module that imports
nothing: subinterpreters (InterpreterPoolExecutor's workers) and worker processes load it
without cfutures' native module."""


def spin(n):
    """n iterations of integer arithmetic in the interpreter's loop; returns a checksum."""
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total
