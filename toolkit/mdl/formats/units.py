"""Human-readable numbers for the Docker model config (`parameters`, `size`).

Three formats, each matching a text Docker's packager writes (FACTS §1):

- `format_parameters`: SI base 1000, units "", K, M, B, T, Q; two decimals, then trailing zeros
  and a trailing dot dropped, no space: 183 -> "183", 361_820_000 -> "361.82M", 1.5e9 -> "1.5B".
  (Docker's GGUF path, gguf-parser-go v0.24.0, drops only a trailing ".00", so it prints "1.50B";
  its safetensors path uses go-units "%.2f%s" and prints "183.00". The project's format follows
  FACTS' examples; readers accept all three spellings.)
- `format_binary_size`: GGUF tensor-data size, base 1024, units B KiB MiB GiB TiB PiB, same decimal
  rule: 864 -> "864B", 268_800_000 -> "256.35MiB". (gguf-parser-go mixes decimal units in, so
  1000..1023 bytes print "1KB".."1.02KB" there; here they stay "1000B".."1023B".)
- `format_decimal_size`: Docker's `FormatSize` exactly (go-units `CustomSize("%.2f%s", n, 1000,
  [B kB MB GB TB PB EB])`): 864 -> "864.00B", 695_280_000 -> "695.28MB", n <= 0 -> "n/a".

Arithmetic is done on float64 like the Go code (`float64(n) / base`), so the rounding of the two
decimals is Go's (`strconv.FormatFloat(x, 'f', 2, 64)` and Python's `"%.2f"` both round the exact
binary value correctly).
"""

from __future__ import annotations

_PARAM_UNITS = ("", "K", "M", "B", "T", "Q")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def _trim(text: str) -> str:
    """Drop trailing zeros of a fixed two-decimal number, then a trailing dot."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _scale(n: int, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    value = float(n)
    i = 0
    while value >= base and i < len(units) - 1:
        value /= base
        i += 1
    return value, units[i]


def _check(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"expected an int, got {type(n).__name__}")
    return n


def format_parameters(n: int) -> str:
    """Parameter count as Docker's config shows it: "183", "361.82M", "1.5B"."""
    n = _check(n)
    if n <= 0:
        return "0" if n == 0 else "-" + format_parameters(-n)
    value, unit = _scale(n, 1000.0, _PARAM_UNITS)
    return _trim(f"{value:.2f}") + unit


def format_binary_size(n: int) -> str:
    """GGUF tensor-data size in binary units: "864B", "256.35MiB"."""
    n = _check(n)
    if n <= 0:
        return "0B" if n == 0 else "-" + format_binary_size(-n)
    value, unit = _scale(n, 1024.0, _BINARY_UNITS)
    return _trim(f"{value:.2f}") + unit


def format_decimal_size(n: int) -> str:
    """Docker's `FormatSize` (safetensors, DDUF): "864.00B", "695.28MB"; "n/a" for n <= 0."""
    n = _check(n)
    if n <= 0:
        return "n/a"
    value, unit = _scale(n, 1000.0, _DECIMAL_UNITS)
    return f"{value:.2f}{unit}"
