"""python -m cfutures bench [options]: the side-by-side benchmark table."""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m cfutures bench [--repeat N] [--quick] [--only NAME] [--json PATH]")
        return 0 if argv else 2
    if argv[0] == "bench":
        from cfutures import _bench
        return _bench.main(argv[1:])
    print(f"unknown command {argv[0]!r}; try: python -m cfutures bench", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
