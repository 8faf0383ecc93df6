"""What each table is built from (TableSpec): one spec per registered table, malformed specs refused early."""

from __future__ import annotations

import pytest

from prunenet.policy_spec import PolicySpec
from prunenet.reporting import TABLES
from prunenet.reporting.ablations import ABLATIONS
from prunenet.reporting.specs import TableSpec, Variant
from prunenet.reporting.targets import TABLE_SPECS


def test_every_registered_table_has_one_spec():
    assert sorted(TABLE_SPECS) == sorted(TABLES.names())
    assert all(TABLE_SPECS[name] == ablation.spec for name, ablation in ABLATIONS.items())


def test_ablation_variants_change_only_known_policy_dimensions():
    for name, ablation in ABLATIONS.items():
        for v in ablation.variants:
            assert set(v.policy) <= set(PolicySpec.dimensions()), (name, v)


def test_malformed_specs_fail_where_they_are_declared():
    with pytest.raises(ValueError, match="not one of"):
        TableSpec("everything")
    with pytest.raises(ValueError, match="variants"):
        TableSpec("ablation")
    with pytest.raises(ValueError, match="give a list"):
        TableSpec(methods="all")
    with pytest.raises(ValueError, match="ratios"):
        Variant("x", "prunenet", ratios="low")
