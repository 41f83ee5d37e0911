"""OCI layouts other than the store: a directory (`dir.py`) and a tar (`tar.py`), each an ordinary side
of the one copy (`content.copy`); what they share is in `common.py`. And a model's files laid out as a
plain directory (`mdl extract`): `modeldir.py` writes files there without ever leaving it, `unpack.py`
unpacks archive layers into it safely."""
