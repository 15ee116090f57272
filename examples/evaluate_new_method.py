"""Evaluate your own method on a zoobench task: load, fit, predict, write a submission.

    python examples/evaluate_new_method.py ZOO_DIR OUT.json [--split id]

The "method" here is ridge regression on the weight-statistics view; replace
`fit_predict` with yours. It sees the train and validation targets only: the
test part has none, and only the scorer (`zoobench leaderboard score`) reads them.
"""

import argparse

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from benchmark import load_task
from benchmark.submission import write_submission

TARGETS = ("test_acc", "gen_gap")  # what the generalization task asks for


def fit_predict(task, target: str) -> np.ndarray:
    """Predict `target` for the test part; ridge's alpha is chosen on validation only."""
    # "stats": per-layer weight statistics, (n, F). Invariant to hidden-unit permutations,
    # so a network and its symmetry twins in the test part get the same prediction.
    scaler = StandardScaler().fit(task.train.view("stats"))  # train statistics only
    x_train, x_val, x_test = (scaler.transform(p.view("stats")) for p in task.parts)
    y_train, y_val = task.train.targets[target], task.val.targets[target]

    def val_error(alpha: float) -> float:
        model = Ridge(alpha=alpha).fit(x_train, y_train)
        return float(np.mean((model.predict(x_val) - y_val) ** 2))

    best = min((0.01, 0.1, 1.0, 10.0, 100.0, 1000.0), key=val_error)
    # Refit on train + validation with the chosen alpha, then predict the test part.
    model = Ridge(alpha=best).fit(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]))
    return model.predict(x_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", help="zoo directory, e.g. zoos/small")
    parser.add_argument("out", help="submission file to write (.json or .npz)")
    parser.add_argument("--split", default="id", help="split of the generalization task (default: id)")
    args = parser.parse_args()

    task = load_task("generalization", args.zoo, split=args.split)
    preds = {t: fit_predict(task, t) for t in TARGETS}
    # One prediction per test item (twins included), keyed by its id.
    predictions = {item: {t: float(preds[t][i]) for t in TARGETS} for i, item in enumerate(task.test.ids)}
    write_submission(args.out, task=task, method="ridge-stats", version="1",
                     description="ridge regression on standardised weight statistics",
                     predictions=predictions)  # validates against the task; raises if incomplete
    print(f"wrote {args.out} ({len(predictions)} test items); score it and show the table with")
    print(f"  zoobench leaderboard score {args.out} --zoo {args.zoo} --db leaderboard.sqlite")
    print("  zoobench leaderboard show --db leaderboard.sqlite")


if __name__ == "__main__":
    main()
