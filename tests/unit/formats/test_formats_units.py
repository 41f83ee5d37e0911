import pytest

from mdl.formats.units import format_binary_size, format_decimal_size, format_parameters


@pytest.mark.parametrize("n, text", [
    (0, "0"), (1, "1"), (183, "183"), (999, "999"), (1000, "1K"), (1001, "1K"), (1005, "1K"),
    (1010, "1.01K"), (1023, "1.02K"), (1024, "1.02K"), (1500, "1.5K"), (999_999, "1000K"),
    (1_000_000, "1M"), (124_224, "124.22K"), (361_820_000, "361.82M"), (1_500_000_000, "1.5B"),
    (7_241_732_096, "7.24B"), (1_000_000_000_000, "1T"), (2_500_000_000_000_000, "2.5Q"),
])
def test_format_parameters(n, text):
    assert format_parameters(n) == text


@pytest.mark.parametrize("n, text", [
    (0, "0B"), (1, "1B"), (864, "864B"), (999, "999B"), (1000, "1000B"), (1023, "1023B"),
    (1024, "1KiB"), (1536, "1.5KiB"), (1025, "1KiB"), (1034, "1.01KiB"),
    (1024 * 1024 - 1, "1024KiB"), (1024 * 1024, "1MiB"), (268_800_000, "256.35MiB"),
    (4 * 1024**3, "4GiB"), (int(1.25 * 1024**4), "1.25TiB"),
])
def test_format_binary_size(n, text):
    assert format_binary_size(n) == text


@pytest.mark.parametrize("n, text", [
    (0, "n/a"), (-5, "n/a"), (1, "1.00B"), (864, "864.00B"), (999, "999.00B"), (1000, "1.00kB"),
    (1023, "1.02kB"), (1024, "1.02kB"), (999_999, "1000.00kB"), (1_000_000, "1.00MB"),
    (695_280_000, "695.28MB"), (1_500_000_000, "1.50GB"), (3 * 10**12, "3.00TB"),
])
def test_format_decimal_size(n, text):
    assert format_decimal_size(n) == text


def test_rounding_follows_the_exact_binary_value():
    # 1.125 is exact in binary: a tie, rounded half to even by both Go and Python.
    assert format_parameters(1125) == "1.12K"
    assert format_decimal_size(1125) == "1.12kB"
    # Neither 1.005 nor 1.135 is exact in binary: the exact values are 1.00499999... and
    # 1.13500000...09, so they round down and up respectively (as Go's FormatFloat does).
    assert format_parameters(1005) == "1K"
    assert format_parameters(1135) == "1.14K"


@pytest.mark.parametrize("fn", [format_parameters, format_binary_size, format_decimal_size])
def test_rejects_non_int(fn):
    with pytest.raises(TypeError):
        fn(1.5)
    with pytest.raises(TypeError):
        fn(True)
