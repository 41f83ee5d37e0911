"""The spec in code: media types, annotation keys and the JSON Schemas, all loaded from `schemas/`."""
