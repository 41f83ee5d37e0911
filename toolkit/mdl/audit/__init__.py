"""`mdl audit`: every artifact of a registry's repositories, classified and checked in place.

`run.py` lists the repositories and tags and runs the checks in parallel; `check.py` audits one
manifest (the model check of `mdl conformance check`, and the signature lookup of `mdl verify`);
`classify.py` says what a manifest is; `state.py` keeps what was checked, for resumed and incremental
audits; `rate.py` caps the requests per second; `model.py` holds the results; `report.py` writes them
as JSON, JUnit and the terminal summary, and `html.py` as one self-contained page.

The package imports none of these: import from the module (`mdl.audit.run.run_audit`, ...).
"""
