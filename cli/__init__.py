"""The `lsscore` command-line application (click). Thin: parse, validate, call the library."""
