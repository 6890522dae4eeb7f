"""--plot FILE.png: the ratios as a bar chart (matplotlib, imported only when drawing)."""

import textwrap

from cfutures._bench.peers import PEERS


def plot(rows, path, title):
    """A bar chart of the ratios: per row, cfutures against each other implementation (log scale;
    above the line at 1x cfutures is ahead)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    def ratios(r):
        return r.get("ratios", {"stdlib": r["ratio"]})
    order = ["stdlib", *PEERS]
    others = [impl for impl in order if any(impl in ratios(r) for r in rows)]
    names = {"stdlib": "concurrent.futures"}
    width = 0.8 / len(others)
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(rows) + 1.5), 6))
    values = [1.0]
    for j, impl in enumerate(others):
        xs = [i - 0.4 + width * (j + 0.5) for i, r in enumerate(rows) if impl in ratios(r)]
        ys = [ratios(r)[impl] for r in rows if impl in ratios(r)]
        values += ys
        # From the 1x line: up where cfutures is ahead, down where it is behind.
        ax.bar(xs, [y - 1 for y in ys], bottom=1, width=width,
               label=f"vs {names.get(impl, impl)}")
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 1.5, max(values) * 4)  # room for the legend at the top
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=()))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([textwrap.fill(r["workload"], 18, break_long_words=False) for r in rows], fontsize=7)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("times better than the other implementation (log scale)")
    ax.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(others), 6), loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

