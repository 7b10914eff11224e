"""Rewrite the config reference table in docs/config.md from reasonrl/config/ (run after adding or documenting a
field; tests/unit/test_hygiene.py fails while a key is missing).

    .venv/bin/python scripts/update_config_docs.py
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
table = subprocess.run(
    [sys.executable, str(ROOT / "scripts" / "config_reference.py")], capture_output=True, text=True, check=True
).stdout.strip()
page = ROOT / "docs" / "config.md"
text = page.read_text()
start = text.index("| key | default | meaning |")
end = text.find("\n\n", start)
page.write_text(text[:start] + table + (text[end:] if end != -1 else "\n"))
