"""Table-driven tests for the HydraFlow-compatible extended sweep syntax.

Expected values are written out literally, derived from the specification
(not from the implementation).
"""

from __future__ import annotations

from typing import Any

import pytest

from sweepflow.syntax import SweepSyntaxError, collect, expand, values

# ---------------------------------------------------------------------------
# values(): expression -> expected list
# ---------------------------------------------------------------------------

VALUES_TABLE = [
    # --- plain comma lists -------------------------------------------------
    ("list-abc", "a,b,c", ["a", "b", "c"]),
    ("list-single", "small", ["small"]),
    ("list-numbers", "0.1,0.01,0.001", ["0.1", "0.01", "0.001"]),
    ("list-model-sizes", "small,medium,large", ["small", "medium", "large"]),
    ("list-bools", "true,false", ["true", "false"]),
    ("list-weight-decay-textual", "0,1e-4,1e-5,1e-6", ["0", "1e-4", "1e-5", "1e-6"]),
    ("list-width", "100,300", ["100", "300"]),
    # --- brackets protect commas -------------------------------------------
    ("brackets-two-lists", "[a,1],[b,2]", ["[a,1]", "[b,2]"]),
    ("brackets-single-list", "[1,2,3]", ["[1,2,3]"]),
    ("brackets-nested", "[[1,2],[3]],x", ["[[1,2],[3]]", "x"]),
    ("brackets-mixed-with-plain", "x,[1,2],y", ["x", "[1,2]", "y"]),
    # --- quotes protect commas, quotes kept, quoted items literal ----------
    ("quote-single-comma", "'x,y',z", ["'x,y'", "z"]),
    ("quote-double-comma", '"x,y",z', ['"x,y"', "z"]),
    ("quote-literal-range", "'10:30'", ["'10:30'"]),
    ("quote-literal-range-double", '"1:3"', ['"1:3"']),
    ("quote-literal-parens", "'(a,b)'", ["'(a,b)'"]),
    ("quote-literal-si", "'1k'", ["'1k'"]),
    ("quote-mixed-kinds", "'a',\"b\"", ["'a'", '"b"']),
    ("quote-brackets-inside", "'[1,2]',3", ["'[1,2]'", "3"]),
    # --- integer ranges ----------------------------------------------------
    ("int-range-step3", "1:10:3", ["1", "4", "7", "10"]),
    ("int-range-2part", "1:4", ["1", "2", "3", "4"]),
    ("int-range-negative-start", "-2:2", ["-2", "-1", "0", "1", "2"]),
    ("int-range-stop-not-hit", "1:10:4", ["1", "5", "9"]),
    ("int-range-omitted-start", ":3", ["0", "1", "2", "3"]),
    ("int-range-omitted-stop", "-3:", ["-3", "-2", "-1", "0"]),
    ("int-range-neg-step2", "5:1:-2", ["5", "3", "1"]),
    ("int-range-neg-step1", "3:1:-1", ["3", "2", "1"]),
    ("int-range-batch-size", "16:128:16", ["16", "32", "48", "64", "80", "96", "112", "128"]),
    ("int-range-height", "100:300:100", ["100", "200", "300"]),
    ("int-range-width-stop-not-hit", "250:350:100", ["250", "350"]),
    ("int-range-single-point", "0:0", ["0"]),
    ("int-range-single-point-5", "5:5", ["5"]),
    ("int-range-all-negative", "-5:-1:2", ["-5", "-3", "-1"]),
    ("int-range-all-negative-down", "-1:-3:-1", ["-1", "-2", "-3"]),
    ("int-range-by-25", "0:100:25", ["0", "25", "50", "75", "100"]),
    ("int-range-in-list", "1:3,10", ["1", "2", "3", "10"]),
    ("int-range-two-in-list", "1:2,5:6", ["1", "2", "5", "6"]),
    # --- float ranges ------------------------------------------------------
    ("float-range-quarter", "0:1:0.25", ["0", "0.25", "0.5", "0.75", "1"]),
    ("float-range-exponent", "1.2e3:1.4e3:0.1e3", ["1.2e+03", "1.3e+03", "1.4e+03"]),
    ("float-range-tenth-0.3", "0:0.3:0.1", ["0", "0.1", "0.2", "0.3"]),
    ("float-range-0.1-0.5", "0.1:0.5:0.1", ["0.1", "0.2", "0.3", "0.4", "0.5"]),
    ("float-range-half", "1:2:0.5", ["1", "1.5", "2"]),
    ("float-range-descending", "0.5:0:-0.25", ["0.5", "0.25", "0"]),
    (
        "float-range-0-1-tenth",
        "0:1:0.1",
        ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"],
    ),
    ("float-range-through-zero", "-1:1:0.5", ["-1", "-0.5", "0", "0.5", "1"]),
    ("float-range-neg-quarter", "-0.5:0.5:0.25", ["-0.5", "-0.25", "0", "0.25", "0.5"]),
    ("float-range-two-int-digits", "10.5:12:0.5", ["10.5", "11", "11.5", "12"]),
    ("float-range-three-int-digits", "100:100.2:0.1", ["100", "100.1", "100.2"]),
    ("float-range-e-notation-small", "1e-3:3e-3:1e-3", ["0.001", "0.002", "0.003"]),
    ("float-range-thousandths", "0.001:0.003:0.001", ["0.001", "0.002", "0.003"]),
    ("float-range-2.5", "2.5:10:2.5", ["2.5", "5", "7.5", "10"]),
    ("float-range-0.05", "0.05:0.2:0.05", ["0.05", "0.1", "0.15", "0.2"]),
    ("float-range-1-2-quarter", "1:2:0.25", ["1", "1.25", "1.5", "1.75", "2"]),
    ("float-range-2part", "0.5:2.5", ["0.5", "1.5", "2.5"]),
    ("float-range-e-ints", "1e2:3e2:1e2", ["1e+02", "2e+02", "3e+02"]),
    # --- range suffixes ----------------------------------------------------
    ("suffix-k", "1:3:k", ["1e3", "2e3", "3e3"]),
    ("suffix-k-zero-kept", "0:2:k", ["0", "1e3", "2e3"]),
    ("suffix-exponent-e2", "1:2:e2", ["1e2", "2e2"]),
    ("suffix-step-and-m", "1:3:2:m", ["1e-3", "3e-3"]),
    ("suffix-float-range-k", "1.2:1.4:0.1:k", ["1.2e3", "1.3e3", "1.4e3"]),
    ("suffix-single-value-k", "1.5:k", ["1.5e3"]),
    ("suffix-single-value-M", "4:M", ["4e6"]),
    ("suffix-single-zero-k", "0:k", ["0"]),
    ("suffix-n", "1:3:n", ["1e-9", "2e-9", "3e-9"]),
    ("suffix-u", "1:2:u", ["1e-6", "2e-6"]),
    ("suffix-p", "1:2:p", ["1e-12", "2e-12"]),
    ("suffix-f", "1:2:f", ["1e-15", "2e-15"]),
    ("suffix-G", "1:2:G", ["1e9", "2e9"]),
    ("suffix-T", "1:2:T", ["1e12", "2e12"]),
    ("suffix-M-range", "1:3:M", ["1e6", "2e6", "3e6"]),
    ("suffix-negative-range-k", "-1:1:k", ["-1e3", "0", "1e3"]),
    ("suffix-negative-to-zero-k", "-2:0:k", ["-2e3", "-1e3", "0"]),
    ("suffix-float-step-m-zero", "0:1:0.5:m", ["0", "0.5e-3", "1e-3"]),
    ("suffix-float-step-k", "1:2:0.5:k", ["1e3", "1.5e3", "2e3"]),
    ("suffix-exponent-negative", "1:2:e-3", ["1e-3", "2e-3"]),
    ("suffix-exponent-with-step", "2:6:2:e1", ["2e1", "4e1", "6e1"]),
    # --- SI-suffixed literals ----------------------------------------------
    ("si-literal-list", "1k,2k,4k", ["1e3", "2e3", "4e3"]),
    ("si-literal-m", "5m", ["5e-3"]),
    ("si-literal-u-float", "2.5u", ["2.5e-6"]),
    ("si-literal-M", "3M", ["3e6"]),
    ("si-literal-G", "1G", ["1e9"]),
    ("si-literal-n", "7n", ["7e-9"]),
    ("si-literal-p", "2p", ["2e-12"]),
    ("si-literal-f", "3f", ["3e-15"]),
    ("si-literal-T", "4T", ["4e12"]),
    ("si-literal-float-k", "1.5k", ["1.5e3"]),
    ("si-literal-10k", "10k", ["10e3"]),
    ("si-literal-mixed", "1k,small,5m", ["1e3", "small", "5e-3"]),
    # --- non-numbers untouched ---------------------------------------------
    ("untouched-small", "small", ["small"]),
    ("untouched-resnet18", "resnet18", ["resnet18"]),
    ("untouched-1e-3", "1e-3", ["1e-3"]),
    ("untouched-true", "true", ["true"]),
    ("untouched-exponents-list", "1e-3,1e-4", ["1e-3", "1e-4"]),
    ("untouched-negative-int", "-5", ["-5"]),
    ("untouched-float", "3.14", ["3.14"]),
    ("untouched-1.0", "1.0", ["1.0"]),
    ("untouched-5min", "5min", ["5min"]),
    ("untouched-path", "/path/to", ["/path/to"]),
    # --- parentheses (products) --------------------------------------------
    ("paren-mantissa-exponent", "(1,5)e-(1:3)", ["1e-1", "5e-1", "1e-2", "5e-2", "1e-3", "5e-3"]),
    ("paren-ranges-M", "(1:3,5:7)M", ["1e6", "2e6", "3e6", "5e6", "6e6", "7e6"]),
    ("paren-negative-exponents", "2e(-1,-2,-3)", ["2e-1", "2e-2", "2e-3"]),
    ("paren-two-groups", "(1:3)e(3,5)", ["1e3", "2e3", "3e3", "1e5", "2e5", "3e5"]),
    (
        "paren-names",
        "(cnn,transformer)_(small,large)",
        ["cnn_small", "transformer_small", "cnn_large", "transformer_large"],
    ),
    ("paren-in-list", "(a,b)x,c", ["ax", "bx", "c"]),
    ("paren-only-group", "(a,b)", ["a", "b"]),
    ("paren-prefix", "x(1,2)", ["x1", "x2"]),
    ("paren-si-k", "(1,2)k", ["1e3", "2e3"]),
    ("paren-adjacent-groups", "(1,2)(a,b)", ["1a", "2a", "1b", "2b"]),
    ("paren-interleaved-text", "lr_(a,b)_v(1,2)", ["lr_a_v1", "lr_b_v1", "lr_a_v2", "lr_b_v2"]),
    ("paren-range-m", "(1:2)m", ["1e-3", "2e-3"]),
    ("paren-nested-group", "((a,b)1,c)", ["a1", "b1", "c"]),
    ("paren-nested-group-2", "(x,(y,z)w)", ["x", "yw", "zw"]),
    ("paren-float-range-u", "(0.1:0.3:0.1)u", ["0.1e-6", "0.2e-6", "0.3e-6"]),
    ("paren-float-range-textual-exp", "(0.5:1:0.25)e-3", ["0.5e-3", "0.75e-3", "1e-3"]),
    ("paren-textual-e3", "(1,2)e3", ["1e3", "2e3"]),
    ("paren-single-item", "(a)", ["a"]),
    ("paren-single-second", "(1,2)_(3)", ["1_3", "2_3"]),
    ("paren-suffix-prefix", "x_(1:3)", ["x_1", "x_2", "x_3"]),
    (
        "paren-three-groups",
        "(a,b)_(c,d)_(e,f)",
        ["a_c_e", "b_c_e", "a_d_e", "b_d_e", "a_c_f", "b_c_f", "a_d_f", "b_d_f"],
    ),
    ("paren-M-and-si-literal-list", "(1,2)M,3k", ["1e6", "2e6", "3e3"]),
    ("paren-si-literals-inside", "(1k,2k)", ["1e3", "2e3"]),
    ("paren-log-inside", "(log(1:100:3))x", ["1x", "10x", "100x"]),
    # --- log / lin ---------------------------------------------------------
    ("log-small", "log(0.0001:0.1:4)", ["0.0001", "0.001", "0.01", "0.1"]),
    ("log-1-100", "log(1:100:3)", ["1", "10", "100"]),
    ("log-1-1000", "log(1:1000:4)", ["1", "10", "100", "1000"]),
    ("log-10-1000", "log(10:1000:3)", ["10", "100", "1000"]),
    ("log-powers-of-two", "log(1:16:5)", ["1", "2", "4", "8", "16"]),
    ("log-to-one", "log(0.001:1:4)", ["0.001", "0.01", "0.1", "1"]),
    ("log-e-notation-bounds", "log(1e-4:1e-1:4)", ["0.0001", "0.001", "0.01", "0.1"]),
    ("log-two-points", "log(1:100:2)", ["1", "100"]),
    ("log-six-g-exponent", "log(1:1e6:3)", ["1", "1000", "1e+06"]),
    ("log-2-2000", "log(2:2000:4)", ["2", "20", "200", "2000"]),
    ("log-in-list", "log(1:100:3),7", ["1", "10", "100", "7"]),
    ("lin-0-1-5", "lin(0:1:5)", ["0", "0.25", "0.5", "0.75", "1"]),
    ("lin-0-0.5-6", "lin(0:0.5:6)", ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]),
    ("lin-0-10-3", "lin(0:10:3)", ["0", "5", "10"]),
    ("lin-1-2-3", "lin(1:2:3)", ["1", "1.5", "2"]),
    ("lin-negative", "lin(-1:1:5)", ["-1", "-0.5", "0", "0.5", "1"]),
    ("lin-thirds-6g", "lin(0:1:4)", ["0", "0.333333", "0.666667", "1"]),
    ("lin-0-100-5", "lin(0:100:5)", ["0", "25", "50", "75", "100"]),
    ("lin-in-list", "x,lin(0:1:3)", ["x", "0", "0.5", "1"]),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [row[1:] for row in VALUES_TABLE],
    ids=[row[0] for row in VALUES_TABLE],
)
def test_values(text: str, expected: list[str]) -> None:
    assert values(text) == expected


# ---------------------------------------------------------------------------
# expand(): `each` semantics
# ---------------------------------------------------------------------------

EXPAND_TABLE = [
    ("empty-args", "", [[]]),
    ("whitespace-only", "   ", [[]]),
    ("single-value", "model=small", [["model=small"]]),
    (
        "two-tokens-product",
        "a=1,2 b=x,y",
        [["a=1", "b=x"], ["a=1", "b=y"], ["a=2", "b=x"], ["a=2", "b=y"]],
    ),
    (
        "three-tokens-product",
        "a=1,2 b=3 c=x,y",
        [
            ["a=1", "b=3", "c=x"],
            ["a=1", "b=3", "c=y"],
            ["a=2", "b=3", "c=x"],
            ["a=2", "b=3", "c=y"],
        ],
    ),
    ("quoted-value-contains-equals", "a='b=c'", [["a='b=c'"]]),
    ("double-quoted-value-contains-equals", 'a="b=c"', [['a="b=c"']]),
    ("escaped-equals-in-value", r"a=x\=y", [[r"a=x\=y"]]),
    ("equals-in-interpolation", "a=${oc.env:X,a=b}", [["a=${oc.env:X,a=b}"]]),
    ("extra-whitespace", "  a=1   b=2  ", [["a=1", "b=2"]]),
    ("tab-separated", "a=1\tb=2", [["a=1", "b=2"]]),
    ("range", "n=1:3", [["n=1"], ["n=2"], ["n=3"]]),
    ("float-range", "x=0:1:0.25", [["x=0"], ["x=0.25"], ["x=0.5"], ["x=0.75"], ["x=1"]]),
    ("key-suffix-m", "lr/m=1,2,5", [["lr=1e-3"], ["lr=2e-3"], ["lr=5e-3"]]),
    ("key-suffix-e3", "w/e3=1,2", [["w=1e3"], ["w=2e3"]]),
    ("key-suffix-u", "lr/u=1,5", [["lr=1e-6"], ["lr=5e-6"]]),
    ("key-suffix-float-range", "lr/m=0.5:1.5:0.5", [["lr=0.5e-3"], ["lr=1e-3"], ["lr=1.5e-3"]]),
    ("config-group-key", "model/encoder=a,b", [["model/encoder=a"], ["model/encoder=b"]]),
    ("config-group-deep-key", "a/b/c=x", [["a/b/c=x"]]),
    (
        "paren-product",
        "model=(cnn,transformer)_(small,large)",
        [
            ["model=cnn_small"],
            ["model=transformer_small"],
            ["model=cnn_large"],
            ["model=transformer_large"],
        ],
    ),
    (
        "paren-product-with-seed",
        "model=(cnn,transformer)_(small,large) seed=1,2",
        [
            ["model=cnn_small", "seed=1"],
            ["model=cnn_small", "seed=2"],
            ["model=transformer_small", "seed=1"],
            ["model=transformer_small", "seed=2"],
            ["model=cnn_large", "seed=1"],
            ["model=cnn_large", "seed=2"],
            ["model=transformer_large", "seed=1"],
            ["model=transformer_large", "seed=2"],
        ],
    ),
    ("pipe-same-key", "a=1,2|3,4", [["a=1,2"], ["a=3,4"]]),
    ("pipe-switch-key", "a=1,2|b=3:5", [["a=1,2"], ["b=3,4,5"]]),
    (
        "pipe-in-product",
        "x=1,2 a=1|2",
        [["x=1", "a=1"], ["x=1", "a=2"], ["x=2", "a=1"], ["x=2", "a=2"]],
    ),
    ("pipe-three-alternatives", "a=1|2|3", [["a=1"], ["a=2"], ["a=3"]]),
    ("pipe-range-alternative", "a=1:3|5", [["a=1,2,3"], ["a=5"]]),
    ("pipe-key-suffix", "lr/m=1,2|5", [["lr=1e-3,2e-3"], ["lr=5e-3"]]),
    (
        "pipe-switch-then-product",
        "a=1|b=2 c=x,y",
        [["a=1", "c=x"], ["a=1", "c=y"], ["b=2", "c=x"], ["b=2", "c=y"]],
    ),
    (
        "pipe-two-tokens",
        "a=1|2 b=3|4",
        [["a=1", "b=3"], ["a=1", "b=4"], ["a=2", "b=3"], ["a=2", "b=4"]],
    ),
    ("pipe-group-alternative", "a=(1,2)k|3", [["a=1e3,2e3"], ["a=3"]]),
    ("pipe-paren-alternative", "a=(x,y)|z", [["a=x,y"], ["a=z"]]),
    ("pipe-quoted-literal", "a='x|y'", [["a='x|y'"]]),
    (
        "quoted-space",
        "msg='hello world' n=1,2",
        [["msg='hello world'", "n=1"], ["msg='hello world'", "n=2"]],
    ),
    ("double-quoted-space-list", 's="a b",c', [['s="a b"'], ["s=c"]]),
    ("bracket-space", "a=[1, 2],[3] b=1", [["a=[1, 2]", "b=1"], ["a=[3]", "b=1"]]),
    ("log-in-expand", "lr=log(1:100:3)", [["lr=1"], ["lr=10"], ["lr=100"]]),
    ("lin-in-expand", "p=lin(0:1:3)", [["p=0"], ["p=0.5"], ["p=1"]]),
    ("si-literals", "n=1k,2k", [["n=1e3"], ["n=2e3"]]),
    # HydraFlow's documented examples
    (
        "doc-batch-size",
        "batch_size=16:128:16",
        [
            ["batch_size=16"],
            ["batch_size=32"],
            ["batch_size=48"],
            ["batch_size=64"],
            ["batch_size=80"],
            ["batch_size=96"],
            ["batch_size=112"],
            ["batch_size=128"],
        ],
    ),
    (
        "doc-learning-rate",
        "learning_rate=0.1,0.01,0.001",
        [["learning_rate=0.1"], ["learning_rate=0.01"], ["learning_rate=0.001"]],
    ),
    ("doc-model", "model=small,medium,large", [["model=small"], ["model=medium"], ["model=large"]]),
    (
        "doc-width-height",
        "width=100,300 height=100:300:100",
        [
            ["width=100", "height=100"],
            ["width=100", "height=200"],
            ["width=100", "height=300"],
            ["width=300", "height=100"],
            ["width=300", "height=200"],
            ["width=300", "height=300"],
        ],
    ),
    ("doc-width-range", "width=250:350:100", [["width=250"], ["width=350"]]),
    (
        "doc-augmentation",
        "use_augmentation=true,false",
        [["use_augmentation=true"], ["use_augmentation=false"]],
    ),
    (
        "doc-weight-decay",
        "weight_decay=0,1e-4,1e-5,1e-6",
        [["weight_decay=0"], ["weight_decay=1e-4"], ["weight_decay=1e-5"], ["weight_decay=1e-6"]],
    ),
]


@pytest.mark.parametrize(
    ("args", "expected"),
    [row[1:] for row in EXPAND_TABLE],
    ids=[row[0] for row in EXPAND_TABLE],
)
def test_expand(args: str, expected: list[list[str]]) -> None:
    assert expand(args) == expected


# ---------------------------------------------------------------------------
# collect(): `all` semantics
# ---------------------------------------------------------------------------

COLLECT_TABLE = [
    ("empty-args", "", []),
    ("range-and-single", "a=1:3 b=x", ["a=1,2,3", "b=x"]),
    ("two-lists", "a=1,2 b=x,y", ["a=1,2", "b=x,y"]),
    ("key-suffix-m", "lr/m=1,2,5", ["lr=1e-3,2e-3,5e-3"]),
    ("key-suffix-e-2", "x/e-2=1:3", ["x=1e-2,2e-2,3e-2"]),
    ("key-suffix-k-range", "freq/k=1:3", ["freq=1e3,2e3,3e3"]),
    ("key-slash-e-no-int", "x/e=1", ["x/e=1"]),
    ("config-group-key", "model/encoder=a,b", ["model/encoder=a,b"]),
    (
        "paren-product",
        "model=(cnn,transformer)_(small,large)",
        ["model=cnn_small,transformer_small,cnn_large,transformer_large"],
    ),
    ("log", "lr=log(1:100:3)", ["lr=1,10,100"]),
    ("lin", "p=lin(0:1:5)", ["p=0,0.25,0.5,0.75,1"]),
    ("si-literals", "n=1k,2k", ["n=1e3,2e3"]),
    ("float-range", "x=0:1:0.25", ["x=0,0.25,0.5,0.75,1"]),
    ("quoted-value-contains-equals", "a='b=c'", ["a='b=c'"]),
    ("plus-key-quoted-equals", "+a='b=c'", ["+a='b=c'"]),
    ("quoted-comma", "s='x,y'", ["s='x,y'"]),
    ("brackets", "a=[1,2],[3]", ["a=[1,2],[3]"]),
    ("single-value", "model=small", ["model=small"]),
    ("doc-batch-size", "batch_size=16:128:16", ["batch_size=16,32,48,64,80,96,112,128"]),
    ("doc-weight-decay", "weight_decay=0,1e-4,1e-5,1e-6", ["weight_decay=0,1e-4,1e-5,1e-6"]),
    ("range-suffix", "f=1:3:k", ["f=1e3,2e3,3e3"]),
]


@pytest.mark.parametrize(
    ("args", "expected"),
    [row[1:] for row in COLLECT_TABLE],
    ids=[row[0] for row in COLLECT_TABLE],
)
def test_collect(args: str, expected: list[str]) -> None:
    assert collect(args) == expected


# ---------------------------------------------------------------------------
# Property-style checks on float ranges: exact count, stop never lost.
# ---------------------------------------------------------------------------

FLOAT_RANGE_PROPS = [
    ("0-1-tenth", "0:1:0.1", 11, "1"),
    ("0.1-0.5-tenth", "0.1:0.5:0.1", 5, "0.5"),
    ("0-0.3-tenth", "0:0.3:0.1", 4, "0.3"),
    ("0-10-tenth", "0:10:0.1", 101, "10"),
    ("0.05-0.2", "0.05:0.2:0.05", 4, "0.2"),
    ("0-1-hundredth", "0:1:0.01", 101, "1"),
    ("descending-1-0-tenth", "1:0:-0.1", 11, "0"),
    ("0.7-2.1-0.7", "0.7:2.1:0.7", 3, "2.1"),
]


@pytest.mark.parametrize(
    ("text", "count", "last"),
    [row[1:] for row in FLOAT_RANGE_PROPS],
    ids=[row[0] for row in FLOAT_RANGE_PROPS],
)
def test_float_range_count_and_stop(text: str, count: int, last: str) -> None:
    result = values(text)
    assert len(result) == count
    assert result[-1] == last
    assert len(set(result)) == count


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

FUNCS = {"values": values, "expand": expand, "collect": collect}

# (id, function name, input, any-of substrings expected in the message
#  (case-insensitive; empty tuple = no requirement), expected prefix of
#  err.text[err.column:] or None when the caret position is left open)
ERROR_TABLE = [
    ("start-after-stop", "values", "5:3", ("start",), None),
    ("float-start-after-stop", "values", "1.5:0.5", ("start",), None),
    ("zero-step", "values", "1:2:0", ("step",), None),
    ("zero-float-step", "values", "1:2:0.0", ("step",), None),
    ("negative-step-ascending", "values", "3:5:-1", ("step",), None),
    ("negative-float-step-ascending", "values", "0:1:-0.1", ("step",), None),
    ("too-many-parts", "values", "1:2:3:4", (), "4"),
    ("too-many-parts-5", "values", "1:2:3:4:5", (), None),
    ("too-many-parts-with-suffix", "values", "1:2:3:4:k", (), None),
    ("non-numeric-range", "values", "a:b", (), "a"),
    ("non-numeric-stop", "values", "1:x", (), "x"),
    ("non-numeric-start", "values", "x:2", (), "x"),
    ("non-numeric-step", "values", "1:2:x", (), "x"),
    ("trailing-junk-expand", "expand", "count=1:3tep", (), None),
    ("trailing-junk-collect", "collect", "count=1:3tep", (), None),
    ("no-equals", "expand", "a", ("key=value",), None),
    ("no-equals-second-token", "expand", "a=1 b", ("key=value",), None),
    ("no-equals-collect", "collect", "a", ("key=value",), None),
    ("empty-first-alternative", "expand", "|a=1", (), "|"),
    ("empty-middle-alternative", "expand", "a=1||2", (), "|"),
    ("empty-last-alternative", "expand", "a=1|", (), None),
    ("empty-key", "expand", "=1", ("key",), "="),
    ("empty-key-collect", "collect", "=1", ("key",), "="),
    ("unclosed-paren", "values", "(1,2", (")", "paren"), None),
    ("unclosed-paren-in-expand", "expand", "a=(1,2", (")", "paren"), None),
    ("unbalanced-close-paren", "values", "1,2)", (), ")"),
    ("unbalanced-close-paren-2", "values", "a)", (), ")"),
    ("unclosed-single-quote", "values", "'abc", ("quote", "'"), None),
    ("unclosed-double-quote", "values", '"abc', ("quote", '"'), None),
    ("unclosed-quote-in-expand", "expand", "a='x", ("quote", "'"), None),
    ("log-zero-start", "values", "log(0:1:3)", ("positive", "> 0", ">0"), None),
    ("log-negative-start", "values", "log(-1:10:3)", ("positive", "> 0", ">0"), None),
    ("log-zero-stop", "values", "log(0.1:0:3)", ("positive", "> 0", ">0"), None),
    ("log-num-missing", "values", "log(1:10)", (), None),
    ("log-num-zero", "values", "log(1:10:0)", (), None),
    ("log-num-not-int", "values", "log(1:10:x)", (), None),
    ("log-too-many-parts", "values", "log(1:10:3:4)", (), None),
    ("lin-num-not-int", "values", "lin(0:1:x)", (), "x"),
    ("lin-num-missing", "values", "lin(0:1)", (), None),
    ("empty-item", "values", "1,,2", ("empty", "value", "item"), None),
    ("trailing-empty-item", "values", "a,", ("empty", "value", "item"), None),
    ("leading-empty-item", "values", ",a", ("empty", "value", "item"), None),
    ("pipe-in-collect", "collect", "a=1|2", ("|",), "|"),
    ("bad-range-in-collect", "collect", "a=1:x", (), "x"),
    ("suffix-without-number", "values", ":k", ("number",), ":k"),
    ("exponent-suffix-without-number", "values", ":e3", ("number",), ":e3"),
    ("suffix-without-numbers", "values", "::k", ("number",), None),
    ("colon-alone", "values", ":", ("number",), ":"),
    ("suffix-without-number-expand", "expand", "f=:k", ("2:k",), ":k"),
    ("suffix-without-number-in-group", "values", "(:k)", ("number",), ":k"),
    ("second-equals", "expand", "a=b=c", ("quote", "a='b=c'"), "=c"),
    ("second-equals-collect", "collect", "x=1 a=b=c", ("a='b=c'",), "=c"),
    ("second-equals-plus-key", "expand", "+a=b=c", ("+a='b=c'",), "=c"),
    ("second-equals-missing-space", "expand", "a=1,b=2", ("a=1 b=2",), "=2"),
    ("second-equals-in-alternative", "expand", "a=1|b=2=3", ("b='2=3'",), "=3"),
    ("second-equals-after-group", "collect", "a=(x,y)=z", ("quote",), "=z"),
]

BARE_PYTHON_PHRASES = (
    "invalid literal for int()",
    "could not convert string to float",
    "invalid literal",
    "Traceback",
)


def _check_caret(err: SweepSyntaxError) -> None:
    message = str(err)
    text = err.text
    column = err.column
    assert isinstance(text, str)
    assert isinstance(column, int)
    assert 0 <= column <= len(text)
    lines = message.splitlines()
    for index, line in enumerate(lines[:-1]):
        if text and text in line and "^" in lines[index + 1]:
            offset = line.index(text)
            caret = lines[index + 1].index("^")
            assert caret - offset == column, message
            return
        if not text and "^" in lines[index + 1]:
            return
    pytest.fail(f"no text line followed by a caret line in message:\n{message}")


@pytest.mark.parametrize(
    ("func", "text", "substrings", "offending"),
    [row[1:] for row in ERROR_TABLE],
    ids=[row[0] for row in ERROR_TABLE],
)
def test_errors(func: str, text: str, substrings: tuple[str, ...], offending: str | None) -> None:
    with pytest.raises(SweepSyntaxError) as info:
        FUNCS[func](text)
    err = info.value
    assert isinstance(err, ValueError)
    message = str(err)
    for phrase in BARE_PYTHON_PHRASES:
        assert phrase not in message, message
    _check_caret(err)
    if substrings:
        lowered = message.lower()
        assert any(s.lower() in lowered for s in substrings), message
    if offending is not None:
        assert err.text[err.column :].startswith(offending), (
            f"caret at {err.column} in {err.text!r}: {err.text[err.column :]!r}"
        )


def test_error_shows_the_fix_for_a_bare_suffix() -> None:
    with pytest.raises(SweepSyntaxError) as info:
        values(":k")
    assert info.value.reason == (
        "the suffix 'k' needs a number before it: write e.g. 2:k or 1:3:k, or quote the"
        " item (':k') to pass it as text"
    )
    assert str(info.value).endswith("\n  :k\n  ^")


def test_start_after_stop_mentions_both() -> None:
    with pytest.raises(SweepSyntaxError) as info:
        values("5:3")
    message = str(info.value).lower()
    assert "start" in message and "stop" in message
    assert info.value.column in (0, 2)


def test_error_is_value_error_subclass() -> None:
    assert issubclass(SweepSyntaxError, ValueError)


@pytest.mark.parametrize(
    "args",
    ["count=1:3tep", "lr=0.1 count=1:3tep"],
    ids=["alone", "after-other-token"],
)
def test_error_shows_whole_args_with_caret_in_token(args: str) -> None:
    with pytest.raises(SweepSyntaxError) as info:
        expand(args)
    err = info.value
    assert args in err.text
    start = err.text.index("3tep")
    assert start <= err.column < start + len("3tep"), (err.text, err.column)
    _check_caret(err)


# ---------------------------------------------------------------------------
# A list of tokens (HydraFlow's other form): each string is one token.
# ---------------------------------------------------------------------------

LIST_TABLE = [
    ("expand", ["a=1,2", "b=x"], [["a=1", "b=x"], ["a=2", "b=x"]]),
    ("expand", ["name=my run", "n=1:2"], [["name=my run", "n=1"], ["name=my run", "n=2"]]),
    ("expand", ["a=1,2|3,4"], [["a=1,2"], ["a=3,4"]]),
    ("expand", [], [[]]),
    ("collect", ["lr/m=1,2,5", "seed=0:2"], ["lr=1e-3,2e-3,5e-3", "seed=0,1,2"]),
    ("collect", ("a=1:3", "b=x"), ["a=1,2,3", "b=x"]),
    ("collect", ["s='x y',z"], ["s='x y',z"]),
    ("collect", [], []),
]


@pytest.mark.parametrize(
    ("func", "args", "expected"),
    LIST_TABLE,
    ids=[f"{row[0]}-{'-'.join(row[1]) or 'empty'}" for row in LIST_TABLE],
)
def test_list_of_tokens(func: str, args: list[str], expected: list[Any]) -> None:
    assert FUNCS[func](args) == expected


def test_list_of_tokens_same_as_the_string() -> None:
    text = "model=(cnn,mlp)_(s,l) lr/m=1,5 seed=0:2"
    assert expand(text.split()) == expand(text)
    assert collect(text.split()) == collect(text)


@pytest.mark.parametrize(
    ("args", "offending"),
    [(["a=1", "b=1:x"], "x"), (["a=1", "b"], "b"), (["a=1", ""], ""), (["a=b=c"], "=c")],
    ids=["bad-range", "no-equals", "empty-token", "second-equals"],
)
def test_list_of_tokens_errors_point_into_the_joined_text(args: list[str], offending: str) -> None:
    with pytest.raises(SweepSyntaxError) as info:
        expand(args)
    err = info.value
    assert err.text == " ".join(args)
    assert err.text[err.column :].startswith(offending), (err.text, err.column)
    _check_caret(err)


def test_list_of_non_strings_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="list of strings"):
        collect(["a=1", 2])  # type: ignore[list-item]
