"""The `mdl` command line: parse, call the library, render. No logic lives here."""
