"""The benchmark harness: runner, worker process, statistics, machine facts and results store."""
