"""Gradual magnitude pruning: recipes, schedules, masks and the pruner callbacks."""
