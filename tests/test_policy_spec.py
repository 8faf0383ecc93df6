"""Policy ids as one value (PolicySpec): built from the config with any dimension changed, read back from a path."""

from __future__ import annotations

import pytest

from prunenet.policy_spec import ID_RE, PolicySpec

PAPER = {"penalty": "ks", "state": "up", "objective": "paper", "eq3": "coded", "baseline": "none", "samples": 1}


@pytest.mark.parametrize(
    "changes, policy_id",
    [
        ({}, "ks-up-paper-t0.3"),  # the paper's policy: no Eq. 3 or estimator tag
        ({"penalty": "ad"}, "ad-up-paper-t0.3"),
        ({"state": "down", "objective": "official"}, "ks-down-official-t0.3"),
        ({"eq3": "printed"}, "ks-up-paper-printed-t0.3"),
        ({"baseline": "loo", "samples": 4}, "ks-up-paper-loo4-t0.3"),
        ({"baseline": "none", "samples": 2}, "ks-up-paper-none2-t0.3"),
        ({"eq3": "printed", "baseline": "running", "samples": 1}, "ks-up-paper-printed-running1-t0.3"),
        ({"init": "official"}, "ks-up-paper-init-official-t0.3"),  # the released init alone (issue 26)
        ({"update": "official", "lr": 1e-5}, "ks-up-paper-update-official-lr1e-05-t0.3"),
        ({"init": "paper", "update": "paper", "lr": 5e-4}, "ks-up-paper-t0.3"),
    ],
)
def test_policy_ids_name_every_dimension_that_differs_from_the_paper(changes, policy_id):
    spec = PolicySpec.from_config(PAPER, 0.30, **changes)
    assert spec.id == policy_id
    assert PolicySpec.parse(policy_id) == spec  # the wildcard reads back to the same dimensions
    assert ID_RE.fullmatch(policy_id)


def test_the_train_command_gets_every_dimension_of_the_wildcard():
    spec = PolicySpec.parse("ad-down-official-printed-loo4-t0.25")
    assert spec.train_args == (
        "--ratio 0.25 --penalty ad --state down --objective official --eq3 printed --baseline loo --samples 4"
    )
    assert PolicySpec.parse("ks-qkv-paper-t0.5").train_args == (
        "--ratio 0.5 --penalty ks --state qkv --objective paper --eq3 coded --baseline none --samples 1"
    )
    assert PolicySpec.parse("ks-first-official-init-official-update-official-lr0.001-t0.3").train_args == (
        "--ratio 0.3 --penalty ks --state first --objective official --eq3 coded --baseline none --samples 1 "
        "--init official --update official"  # the learning rate is the rule's --lr, read from the same id
    )


def test_bad_policy_ids_and_dimensions_are_refused():
    with pytest.raises(ValueError, match="not a policy id"):
        PolicySpec.parse("ks-sideways-paper-t0.3")
    with pytest.raises(ValueError, match="unknown policy dimension"):
        PolicySpec.from_config(PAPER, 0.3, temperature="hot")
