# Types of cfutures.interpreter (Python 3.14+).
import concurrent.futures.interpreter
from concurrent.futures.interpreter import BrokenInterpreterPool as BrokenInterpreterPool
from concurrent.futures.interpreter import WorkerContext as WorkerContext

from .thread import ThreadPoolExecutor

class InterpreterPoolExecutor(ThreadPoolExecutor,
                              concurrent.futures.interpreter.InterpreterPoolExecutor): ...
