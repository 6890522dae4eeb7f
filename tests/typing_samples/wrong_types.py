import cfutures


def square(x: int) -> int:
    return x * x


with cfutures.ThreadPoolExecutor() as ex:
    wrong_arg = ex.submit(square, "3")
    wrong_result: cfutures.Future[str] = ex.submit(square, 3)
    wrong_map: list[str] = list(ex.map(square, [1, 2]))
