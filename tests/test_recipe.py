import pytest

from sparsebench.pruning.recipe import Recipe


def recipe(**overrides) -> Recipe:
    return Recipe.from_config({"name": "test", "final_sparsity": 0.62, **overrides})


def test_recipe_defaults_fill_groups():
    (group,) = recipe().resolved_groups()
    assert group.final_sparsity == 0.62
    assert group.start_epoch == 1.0
    assert group.end_epoch == 6.0


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_rejected(value):
    with pytest.raises(ValueError, match=r"recipe.final_sparsity=.*outside \[0, 1\)"):
        recipe(final_sparsity=value)


def test_group_sparsity_outside_unit_interval_rejected():
    with pytest.raises(ValueError, match=r"groups\[0\].*final_sparsity=1.2"):
        recipe(groups=[{"name": "all", "patterns": ["*"], "final_sparsity": 1.2}])


def test_window_ending_before_start_rejected():
    with pytest.raises(ValueError, match="ends at epoch 2.0 before it starts at epoch 3.0"):
        recipe(groups=[{"name": "late", "patterns": ["*"], "start_epoch": 3.0, "end_epoch": 2.0}])


def test_window_beyond_recipe_rejected():
    with pytest.raises(ValueError, match="outside the recipe's 8 epochs"):
        recipe(groups=[{"name": "late", "patterns": ["*"], "end_epoch": 9.0}])


def test_fractional_total_epochs_rejected():
    with pytest.raises(ValueError, match="whole number of epochs"):
        recipe(finetuning_epochs=1.5)


def test_init_above_final_rejected():
    with pytest.raises(ValueError, match="init_sparsity=0.7 is above"):
        recipe(init_sparsity=0.7)


def test_unknown_key_rejected():
    with pytest.raises(ValueError, match="final_sparsty"):
        recipe(final_sparsty=0.5)


def test_wrong_type_rejected():
    with pytest.raises(ValueError, match="pruning_epochs"):
        recipe(pruning_epochs="many")


def test_unknown_scope_rejected():
    with pytest.raises(ValueError, match="recipe.scope='model'"):
        recipe(scope="model")


def test_phase_boundaries():
    r = recipe(stabilization_epochs=0.5, pruning_epochs=2.5, finetuning_epochs=1)
    assert r.total_epochs == 4
    assert r.phase_at(0.4) == "stabilization"
    assert r.phase_at(0.5) == "pruning"
    assert r.phase_at(3.0) == "finetuning"
