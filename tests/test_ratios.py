"""The ratio value object (prunenet.ratios): each form a ratio takes (CLI text, config value, path tag,
metadata record, per-layer list) derived from one parse, and the round trips the workflow relies on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prunenet.errors import PruneNetError
from prunenet.methods import PruneRequest
from prunenet.ratios import TAG_PATTERN, RatioSpec


@pytest.mark.parametrize(
    ("text", "tag", "mean", "record"),
    [
        ("0.3", "0.3", 0.3, 0.3),
        ("0.25", "0.25", 0.25, 0.25),
        ("linear:0.1:0.5", "lin0.1-0.5", 0.3, "linear:0.1:0.5"),
        ("shuffled:0:0.4", "shuf0-0.4", 0.2, "shuffled:0:0.4"),
        ("shuffled:0:0.4:3", "shuf0-0.4-3", 0.2, "shuffled:0:0.4:3"),
    ],
)
def test_a_ratio_has_one_path_tag_and_cli_text_that_parse_back_to_it(text, tag, mean, record):
    spec = RatioSpec.parse(text)
    assert (spec.tag, spec.mean, spec.record, spec.cli) == (tag, mean, record, text)
    back = RatioSpec.from_tag(tag)
    assert back == spec and back.cli == text  # path wildcard -> the prune command's --ratio
    assert str(spec) == str(record)  # run names and MLflow parameters print what was asked


def test_a_tag_keeps_its_numbers_as_written_on_the_command_line():
    assert RatioSpec.from_tag("lin0.10-0.5").cli == "linear:0.10:0.5"
    assert RatioSpec.from_tag("0.30").cli == "0.30"
    assert RatioSpec.of(0.3).tag == "0.3" and RatioSpec.of("linear:0.10:0.5").tag == "lin0.1-0.5"


def test_per_layer_ratios_of_each_kind():
    assert RatioSpec.parse("0.2").per_layer(3) == [0.2, 0.2, 0.2]
    assert RatioSpec.parse("0.1,0.2,0.4").per_layer(3) == [0.1, 0.2, 0.4]
    assert RatioSpec.parse("linear:0:0.4").per_layer(5) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    shuffled = RatioSpec.parse("shuffled:0:0.4:7").per_layer(5)
    assert sorted(shuffled) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4]) and shuffled == RatioSpec.from_tag(
        "shuf0-0.4-7"
    ).per_layer(5)
    assert RatioSpec.parse("0.1,0.2,0.4").bounds() == [0.1, 0.2, 0.4]
    assert sorted(RatioSpec.parse("shuffled:0.1:0.9:5").bounds()) == [0.1, 0.9]
    with pytest.raises(PruneNetError, match="has 2 entries but the model has 3 layers"):
        RatioSpec.parse("0.1,0.2").per_layer(3)


@pytest.mark.parametrize("bad", ["x", "0.1,", "linear:0.1", "cosine:0:1", "shuffled:0:0.4:x", "linear:a:b"])
def test_malformed_ratios_are_refused_at_parse(bad):
    with pytest.raises(PruneNetError, match="unknown ratio schedule|not a ratio"):
        RatioSpec.parse(bad)


def test_only_a_uniform_ratio_is_a_single_number():
    assert float(RatioSpec.parse("0.3")) == 0.3
    for text in ("0.1,0.2", "linear:0.1:0.5"):
        with pytest.raises(TypeError):
            float(RatioSpec.parse(text))
    with pytest.raises(ValueError, match="no path tag"):
        _ = RatioSpec.parse("0.1,0.2").tag


def test_a_request_holds_the_parsed_spec_whatever_it_was_given():
    spec = RatioSpec.parse("linear:0.1:0.5")
    assert PruneRequest(ratio=spec).ratio is spec  # passed on, not parsed again
    assert PruneRequest(ratio=0.3).ratio == RatioSpec.parse("0.3")
    assert PruneRequest(ratio=[0.1, 0.2]).ratio.per_layer(2) == [0.1, 0.2]
    assert PruneRequest(ratio=None).ratio is None  # a prepare request


def test_the_tag_pattern_matches_every_tag_and_nothing_else():
    import re

    for tag in ("0.3", "1", "lin0.1-0.5", "shuf0-0.4", "shuf0-0.4-3"):
        assert re.fullmatch(TAG_PATTERN, tag)
    for tag in ("linear:0.1:0.5", "0.1,0.2", "lin0.1"):
        assert not re.fullmatch(TAG_PATTERN, tag)


def test_the_module_is_torch_free():
    """The workflow imports it while it builds the DAG."""
    code = "import sys, prunenet.ratios; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
