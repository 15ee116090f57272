"""The zoobench leaderboard: scoring submissions with intervals and symmetry consistency, the SQLite
store, and the tables, page and plots papers report.

It reads the submission format that `benchmark.submission` defines (methods write it
with `benchmark.submission.write_submission`); `zoobench leaderboard score|show|html`
is what a maintainer runs. It never imports `baselines`.
"""
