"""leaderboard: see the project's open issues; this package is not implemented yet."""
