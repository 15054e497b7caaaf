"""Named template sets fetched on first use: the polnet 10 Å density maps, pinned by URL and SHA-256.

The maps come from the polnet repository (github.com/anmartinezs/polnet, ``data/templates/mrcs_10A``, Apache
License 2.0) and are cached in the user cache folder (``$SASI_CACHE`` overrides it). ``$SASI_TEMPLATES_URL``
replaces the base URL (a mirror; ``file://`` works, which is what the tests use). ``--templates FOLDER`` or
``$SASI_TEMPLATES`` skips the download altogether.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from sasi.errors import SasiError

POLNET = "polnet-10A"  # the named set a recipe asks for
POLNET_COMMIT = "629e85ad24315be8f928775a8bb89e47db7ad33f"
POLNET_URL = f"https://raw.githubusercontent.com/anmartinezs/polnet/{POLNET_COMMIT}/data/templates/mrcs_10A/"
POLNET_SHA256 = {
    "1bxn": "73535a7d71a63af01518c44da639f753dad91e624244a1340847635cb0ead121",
    "1qvr": "7dbf001c4219ddd2b99e0d618959b0c9a9f7948c3cb09691c9520b8e5d1ed356",
    "1s3x": "31200cf77d4e6ff72043bd269fe84dacfc7d0855eb238ac324c0cc14fe9233be",
    "1u6g": "241ee22978bb7d12e93129e7125f52a1fb2d786c5e063abff40dd760e1c4a80f",
    "2cg9": "d8d32dc324dd2bb08e11d2e4a36def4433a66aa5efd54e2b6fa464a5e09c10a6",
    "3cf3": "2132446d8288ea58d456540be0ada61c8c92d6383c31b7eb823033fd59534b61",
    "3d2f": "1776e0b1559b3a667d9892c662777ff7e97bb09fc186cea2c129448fcb66b356",
    "3gl1": "df0b92848d5bcc679234cda6b584544a4a6baa069999367eab0af0644c140db1",
    "3h84": "61e02c042e620653c190ff86e4a7db66b0d93809a3442fae2f99f5051de9ced6",
    "3ipm": "adddf99436cdc1d6beacaacca2f70411b5f74e7b049f11ef2a12cb9b9f28074a",
    "3j9i": "b57456f48de0961921bf2186484e16d1de876f1dcec66a9a88689e4afcf2ef57",
    "3qm1": "57a49c740ae45ae54b83562c6d97eb644c8541fec821fe98ae3d3be4989380ea",
    "4cr2": "67d9891b70b83094132ff7d60a0ce057a5d9aeed9b93cc42c8414a36f8609d5b",
    "4v4r": "5af35b14dd55bbab697e8eac3c239e8507188da2f3a98210c1c6b48de742d6d7",
    "4v4r_30S": "b9ab163c5c17cc9e5b272df1c8974e651b26b30f1d62efb0a7a6a7ede3128ded",
    "4v4r_50S": "047a4e0ab2e895a15110b1868f04161cdacb8e9e223c46c6624330448b66c150",
    "4v94": "34bb5b736dd111b270cfc3c94822a3d27c56357e1160afd17d0f3d8fa2102fde",
    "5mrc": "21a09db13875f92327d935b6f746cc97724e6c353633587663b62454c11acbf5",
    "6utj": "2ea7f68d090caa8cbd2db6cda749a562d6579e42f70fdfcc8f6bb2c84eeb985d",
}
OFFLINE_HINT = ("offline? point --templates (or $SASI_TEMPLATES) at a folder of <class>.mrc maps, e.g. a copy of "
                "github.com/anmartinezs/polnet data/templates/mrcs_10A")


def is_named_set(spec: str) -> bool:
    """``spec`` names a fetchable set (and is not a folder that happens to be called the same)."""
    return spec == POLNET and not Path(spec).is_dir()


def template_folder(spec: str, names: list[str] | None = None) -> str:
    """The folder to read ``spec``'s templates from: ``$SASI_TEMPLATES``, else the cache (fetching what is missing)."""
    if not is_named_set(spec):
        return spec
    return os.environ.get("SASI_TEMPLATES") or str(fetch_polnet(names))


def _copy_file_url(url: str, output_file, _pooch) -> None:
    """pooch downloader for ``file://`` mirrors."""
    source = unquote(urlparse(url).path)
    if hasattr(output_file, "write"):
        with open(source, "rb") as f:
            shutil.copyfileobj(f, output_file)
    else:
        shutil.copyfile(source, output_file)


def fetch_polnet(names: list[str] | None = None) -> Path:
    """Download (once) the polnet maps for ``names`` (default: all pinned) into the cache; return the folder."""
    import pooch

    names = list(names or POLNET_SHA256)
    unknown = [n for n in names if n not in POLNET_SHA256]
    if unknown:
        raise SasiError(f"no pinned polnet map for class(es) {unknown}; known: {sorted(POLNET_SHA256)}")
    base = os.environ.get("SASI_TEMPLATES_URL") or POLNET_URL
    cache = Path(os.environ["SASI_CACHE"]) if os.environ.get("SASI_CACHE") else pooch.os_cache("sasi")
    store = pooch.create(path=cache / POLNET, base_url=base.rstrip("/") + "/",
                         registry={f"{n}.mrc": f"sha256:{POLNET_SHA256[n]}" for n in names})
    folder = Path(store.abspath)
    missing = [n for n in names if not (folder / f"{n}.mrc").is_file()]
    if missing:
        print(f"sasi: fetching {len(missing)} polnet 10 Å template maps (Apache-2.0, github.com/anmartinezs/polnet) "
              f"into {folder} (first use only; --templates FOLDER uses your own)", file=sys.stderr, flush=True)
    pooch.get_logger().setLevel("WARNING")
    downloader = _copy_file_url if base.startswith("file:") else None
    for n in names:
        try:
            store.fetch(f"{n}.mrc", downloader=downloader)
        except ValueError as exc:  # pooch: SHA-256 mismatch
            raise SasiError(f"polnet map {n}.mrc from {base} does not match its pinned SHA-256 ({exc})") from None
        except Exception as exc:  # no network, HTTP error, missing mirror file
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SasiError(f"could not fetch the polnet templates ({type(exc).__name__}: {reason[:120]}); "
                            + OFFLINE_HINT) from None
    return folder
