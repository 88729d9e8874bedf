import pytest

from sparsebench.pruning.schedule import Window, interpolate, target_sparsity, update_steps


def cubic(progress: float, init: float, final: float) -> float:
    return final + (init - final) * (1 - progress) ** 3


def test_schedule_zero_before_window():
    window = Window(start=10, end=50, every=10)
    assert target_sparsity(0, window, 0.05, 0.62) == 0.0
    assert target_sparsity(9, window, 0.05, 0.62) == 0.0


def test_schedule_starts_at_init():
    window = Window(start=10, end=50, every=10)
    assert target_sparsity(10, window, 0.05, 0.62) == pytest.approx(0.05)


def test_schedule_middle_follows_cubic_rule():
    window = Window(start=10, end=50, every=10)
    assert target_sparsity(30, window, 0.05, 0.62) == pytest.approx(cubic(0.5, 0.05, 0.62))
    assert target_sparsity(30, window, 0.05, 0.62) == pytest.approx(0.62 - 0.57 / 8)


def test_schedule_holds_between_updates():
    window = Window(start=10, end=50, every=10)
    assert target_sparsity(39, window, 0.05, 0.62) == target_sparsity(30, window, 0.05, 0.62)


def test_schedule_lands_exactly_on_final():
    window = Window(start=10, end=50, every=10)
    assert target_sparsity(50, window, 0.05, 0.62) == 0.62
    assert target_sparsity(10_000, window, 0.05, 0.62) == 0.62


def test_schedule_final_when_window_not_multiple_of_update():
    window = Window(start=0, end=25, every=10)
    assert update_steps(window) == [0, 10, 20, 25]
    assert target_sparsity(24, window, 0.0, 0.9) == pytest.approx(cubic(0.8, 0.0, 0.9))
    assert target_sparsity(25, window, 0.0, 0.9) == 0.9


def test_schedule_is_monotone():
    window = Window(start=3, end=97, every=7)
    values = [target_sparsity(step, window, 0.05, 0.9) for step in range(120)]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_linear_interpolation_midpoint():
    assert interpolate(0.5, 0.1, 0.5, "linear") == pytest.approx(0.3)
    window = Window(start=0, end=10, every=1)
    assert target_sparsity(5, window, 0.0, 0.5, "linear") == pytest.approx(0.25)


def test_unknown_interpolation_rejected():
    with pytest.raises(ValueError, match="exponential"):
        interpolate(0.5, 0.0, 0.5, "exponential")


def test_window_from_fractional_epochs():
    window = Window.from_epochs(1.0, 3.5, 0.25, steps_per_epoch=20)
    assert window == Window(start=20, end=70, every=5)


def test_window_update_at_least_one_step():
    window = Window.from_epochs(0.0, 1.0, 0.01, steps_per_epoch=10)
    assert window.every == 1
