"""zoobench's main job (`zoobench.reproduce`): every stage of the pipeline, from zoo to leaderboard."""
