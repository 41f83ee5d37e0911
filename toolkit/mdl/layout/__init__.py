"""OCI layouts other than the store: a directory (`dir.py`) and a tar (`tar.py`), each an ordinary side
of the one copy (`content.copy`); what they share is in `common.py`."""
