"""RL's Razor at CPU scale: RL and SFT on the same new task, forgetting measured along the way.

    .venv/bin/python experiments/razor.py                # both runs (~25 min on 2 quiet cores), table, fit, plot
    .venv/bin/python experiments/razor.py --analyse-only # redo the table and plot from the runs on disk

New task: one-digit +/- (recipes/add_sub.yaml) (bundled SmolLM2-135M-Instruct, LoRA r16). RL: the quickstart's GRPO
recipe. SFT: the same model, LoRA and task, trained on the task's reference replies (a worked line and "Answer:
<n>"), the offline labels an SFT user has. Both evaluate every few steps with the forgetting monitor on
(forget.*): retention = log-likelihood of held-out general text and accuracy on one-digit products (not trained
on), as deltas from step 0, and the forward KL from the base to the policy on the new task's prompts (base
samples drawn once). The script prints every evaluated point, fits forgetting against the forward KL over both
methods' points (linear, and quadratic as in the paper), and writes docs/razor.svg and docs/razor.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = [
    "forget.enabled=true",
    "eval.size=32",
    "eval.samples=2",
    "forget.tasks=[{name: 'reasoning_gym:products', options: {min_digits: 1, max_digits: 1}}]",
    "forget.task_size=16",
    "forget.kl_prompts=8",
    "forget.kl_samples=2",
    "log_rollouts_every=0",
    "save_every=1000",
    "output_dir=runs/razor",
]


def run_both(a: argparse.Namespace) -> None:
    from reasonrl.config import load_config
    from reasonrl.sft import sft
    from reasonrl.train import train

    recipe = ROOT / "recipes" / "add_sub.yaml"
    rl = load_config(recipe, COMMON + ["name=rl", f"steps={a.rl_steps}", f"eval.every={a.rl_every}"])
    train(rl, overwrite=True)
    sft_cfg = load_config(
        recipe,
        COMMON
        + [
            "name=sft",
            f"sft.steps={a.sft_steps}",
            f"eval.every={a.sft_every}",
            "sft.batch_tokens=1024",
            "sft.seq_len=256",
            f"sft.lr={a.sft_lr}",
        ],
    )
    sft(sft_cfg, overwrite=True)


def points(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out = []
    for r in rows:
        if "forget/kl_forward" in r and "eval/accuracy" in r:
            task_delta = next(
                (v for k, v in r.items() if k.startswith("forget/reasoning_gym") and k.endswith("/delta")), float("nan")
            )
            out.append(
                {
                    "step": r["step"],
                    "accuracy": r["eval/accuracy"],
                    "kl_forward": r["forget/kl_forward"],
                    "kl_reverse": r["forget/kl_reverse"],
                    "text_delta": r["forget/text/delta"],
                    "task_delta": task_delta,
                }
            )
    return out


def fit(xs: list[float], ys: list[float], degree: int) -> tuple[list[float], float]:
    """Least squares polynomial (coefficients, highest power first) and its R^2."""
    import numpy as np

    coef = np.polyfit(xs, ys, degree)
    pred = np.polyval(coef, xs)
    ss_res, ss_tot = float(((np.array(ys) - pred) ** 2).sum()), float(((np.array(ys) - np.mean(ys)) ** 2).sum())
    return [float(c) for c in coef], 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def svg(data: dict[str, list[dict]], fits: dict) -> str:
    """Two panels: text retention against new-task accuracy, and against the forward KL (with the fit)."""
    colours = {"rl": "#1f77b4", "sft": "#d62728"}
    panels = [("accuracy", "new-task accuracy"), ("kl_forward", "forward KL base->policy (nats/completion)")]
    w, h, pad = 420, 300, 50
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 30}" font-family="sans-serif" '
        f'font-size="11">'
    ]
    for i, (key, label) in enumerate(panels):
        x0 = i * w
        xs = [p[key] for pts in data.values() for p in pts]
        ys = [p["text_delta"] for pts in data.values() for p in pts]
        lo_x, hi_x = min(xs + [0.0]), max(xs) * 1.05 or 1.0
        lo_y, hi_y = min(ys) * 1.1 - 1e-3, max(ys + [0.0]) + 1e-3

        def sx(v, x0=x0, lo_x=lo_x, hi_x=hi_x):
            return x0 + pad + (v - lo_x) / (hi_x - lo_x) * (w - 2 * pad)

        def sy(v, lo_y=lo_y, hi_y=hi_y):
            return h - pad + 10 - (v - lo_y) / (hi_y - lo_y) * (h - 2 * pad)

        parts.append(
            f'<rect x="{x0 + pad}" y="{pad - 10}" width="{w - 2 * pad}" height="{h - 2 * pad + 20}" '
            'fill="none" stroke="#999"/>'
        )
        parts.append(f'<text x="{x0 + w / 2}" y="{h + 15}" text-anchor="middle">{label}</text>')
        parts.append(
            f'<text x="{x0 + 12}" y="{h / 2}" transform="rotate(-90 {x0 + 12} {h / 2})" '
            'text-anchor="middle">text log-lik. delta (nats/token)</text>'
        )
        for v in (lo_x, hi_x):
            parts.append(f'<text x="{sx(v)}" y="{h - pad + 25}" text-anchor="middle">{v:.2f}</text>')
        for v in (lo_y, hi_y):
            parts.append(f'<text x="{x0 + pad - 4}" y="{sy(v) + 4}" text-anchor="end">{v:.3f}</text>')
        for name, pts in data.items():
            path = " ".join(f"{sx(p[key]):.1f},{sy(p['text_delta']):.1f}" for p in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colours[name]}" stroke-opacity="0.5"/>')
            for p in pts:
                parts.append(
                    f'<circle cx="{sx(p[key]):.1f}" cy="{sy(p["text_delta"]):.1f}" r="3.5" '
                    f'fill="{colours[name]}"><title>{name} step {p["step"]}</title></circle>'
                )
            parts.append(
                f'<text x="{x0 + w - pad - 30}" y="{pad + 8 + 14 * list(data).index(name)}" '
                f'fill="{colours[name]}">{name.upper()}</text>'
            )
        if key == "kl_forward" and fits.get("quadratic"):
            import numpy as np

            grid = np.linspace(lo_x, max(xs), 40)
            curve = np.polyval(fits["quadratic"]["coef"], grid)
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(grid, curve) if lo_y <= y <= hi_y)
            parts.append(f'<polyline points="{path}" fill="none" stroke="#555" stroke-dasharray="4 3"/>')
            parts.append(
                f'<text x="{x0 + pad + 6}" y="{h - pad + 2}" fill="#555">quadratic fit, R2 = '
                f"{fits['quadratic']['r2']:.2f}</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts)


def analyse(out_dir: Path) -> None:
    data = {name: points(ROOT / "runs" / "razor" / name) for name in ("rl", "sft")}
    print(f"{'run':5}{'step':>6}{'accuracy':>10}{'KL fwd':>9}{'KL rev':>9}{'text delta':>12}{'products delta':>16}")
    for name, pts in data.items():
        for p in pts:
            print(
                f"{name:5}{p['step']:>6}{p['accuracy']:>10.3f}{p['kl_forward']:>9.3f}{p['kl_reverse']:>9.3f}"
                f"{p['text_delta']:>12.4f}{p['task_delta']:>16.3f}"
            )
    xs = [p["kl_forward"] for pts in data.values() for p in pts]
    ys = [p["text_delta"] for pts in data.values() for p in pts]
    fits = {}
    for name, degree in (("linear", 1), ("quadratic", 2)):
        coef, r2 = fit(xs, ys, degree)
        fits[name] = {"coef": coef, "r2": r2}
        print(
            f"{name} fit of text log-lik. delta on forward KL (both methods, {len(xs)} points): "
            f"coef {', '.join(f'{c:+.4g}' for c in coef)}  R2 {r2:.3f}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "razor.svg").write_text(svg(data, fits))
    (out_dir / "razor.json").write_text(json.dumps({"points": data, "fits": fits}, indent=1))
    print(f"wrote {out_dir / 'razor.svg'} and {out_dir / 'razor.json'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rl-steps", type=int, default=15)
    p.add_argument("--rl-every", type=int, default=5)
    p.add_argument("--sft-steps", type=int, default=9)
    p.add_argument("--sft-every", type=int, default=3)
    p.add_argument("--sft-lr", type=float, default=2e-4)
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument("--out", default=str(ROOT / "docs"))
    a = p.parse_args()
    if not a.analyse_only:
        run_both(a)
    analyse(Path(a.out))


if __name__ == "__main__":
    sys.exit(main())
