"""Compare online permuted-digits runs of several learners (README figure).

usage: python3 scripts/plot_online_permuted.py OUT.png RUN_DIR [RUN_DIR ...]

Reads each run folder's history.csv (one row per task with rank_every = examples_per_task) and
plots per task: online accuracy (train_acc, measured before each update), held-out accuracy, the
effective rank of each hidden layer, and dead units of the last hidden layer.
"""

import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(run):
    with open(os.path.join(run, "history.csv")) as f:
        return list(csv.DictReader(f))


def column(rows, name):
    return [float(r[name]) for r in rows if r.get(name) not in (None, "")]


def main():
    out, runs = sys.argv[1], sys.argv[2:]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for run in runs:
        rows = load(run)
        label = os.path.basename(os.path.normpath(run))
        tasks = list(range(1, len(rows) + 1))
        axes[0].plot(tasks, column(rows, "train_acc"), label=label)
        axes[1].plot(tasks, column(rows, "test_acc"), label=label)
        layers = sorted({k.split("_")[0] for k in rows[0] if k.endswith("_effective_rank")})
        for layer in layers:
            axes[2].plot(tasks, column(rows, f"{layer}_effective_rank"),
                         label=f"{label} {layer}")
        axes[3].plot(tasks, column(rows, f"{layers[-1]}_dead"), label=label)
    titles = ["online accuracy", "held-out accuracy", "effective rank per layer",
              "dead units, last hidden layer"]
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("task")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
