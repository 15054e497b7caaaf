"""One module per generated target of ``cluster/render.py``: :mod:`.aws` and :mod:`.gcp` (cluster launcher, sharing
:mod:`.vm`), :mod:`.kuberay`, :mod:`.image` (Dockerfile); :mod:`.common` holds settings, names and YAML writing."""
