"""Rewrite the README's config reference table from reasonrl/config/ (run after adding or documenting a field).

    .venv/bin/python scripts/update_readme_config.py
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
table = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_reference.py")], capture_output=True,
                       text=True, check=True).stdout.strip()
readme = ROOT / "README.md"
text = readme.read_text()
start = text.index("| key | default | meaning |", text.index("## Config reference"))
end = text.find("\n\n", start)
readme.write_text(text[:start] + table + (text[end:] if end != -1 else "\n"))
