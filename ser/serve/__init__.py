"""``ser serve MODEL``: a model behind an HTTP server (LitServe), a page at ``/`` and a live
microphone endpoint.

The answers come from :mod:`ser.inference`, the code ``ser predict`` runs (loading, pipeline,
windows, calibration, probability averaging), so the server and the command agree on every file.
Needs the ``serve`` extra: ``pip install 'ser[serve]'``.
"""
