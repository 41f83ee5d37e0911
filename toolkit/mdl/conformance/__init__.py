"""The conformance suite's engines: artifact cases, one-artifact checks, registry checks, end to end.

The cases themselves are data in `conformance/` at the top of the repository (shipped in the wheel).
"""
