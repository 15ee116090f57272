"""zoobench, the application: the `zoobench` command (`zoobench.cli`), the main job
(`zoobench.reproduce`) and the run-time set-up every command shares (`zoobench.runtime`).

The top floor: it drives every room below and is imported by none of them.
"""
