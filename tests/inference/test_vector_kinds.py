from inference.vector_kinds import (
    KIND_CUTOUT,
    KIND_FULL,
    KIND_OWN,
    KIND_RENDERED,
    KINDS,
    kinds_for_strategies,
)


def test_cutout_and_plain_evaluations_skip_the_synthetic_renders():
    assert kinds_for_strategies(("cutout",)) == (KIND_FULL, KIND_CUTOUT)
    assert kinds_for_strategies(("plain",)) == (KIND_FULL,)
    assert kinds_for_strategies(("cutout", "plain")) == (KIND_FULL, KIND_CUTOUT)


def test_the_synthetic_strategy_needs_own_and_rendered_masks():
    assert kinds_for_strategies(("synthetic",)) == (KIND_FULL, KIND_OWN, KIND_RENDERED)
    assert kinds_for_strategies(("synthetic", "cutout", "plain")) == KINDS
