"""The zoobench leaderboard: submission format, validation, scoring with intervals, SQLite store.

docs/submission.md is the contract; `leaderboard.submission.write_submission`
is what a method calls, `zoobench leaderboard score|show` what a maintainer runs.
"""
