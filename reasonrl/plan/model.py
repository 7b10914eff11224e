"""The memory plan itself: every part of a run's memory on a device, phase by phase, and its table."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig
from reasonrl.plan.arch import Arch, resolve_arch

GiB = 2**30
CPU_RUNTIME = int(0.40 * GiB)
"""The trainer process before any model: Python, torch, transformers, peft, the tokenizer and the task (0.30 GiB
after the imports, 0.40 GiB for a whole step of the tiny model: bench/plan_grid.py). Reward workers are
processes of their own, not counted."""
CUDA_CONTEXT = int(0.6 * GiB)
"""The CUDA context and kernels of one process, outside torch's allocator (not in max_memory_allocated)."""
VLLM_CPU_RUNTIME = int(1.5 * GiB)
"""vLLM's CPU engine process besides its weights and KV cache (not measured here: an estimate)."""
HEAP_KEPT = 0.45
"""CPU (glibc): the share of one micro-batch's memory that the next one does not reuse, so an update of several
micro-batches peaks higher than one (bundled model, 2 x 16 rows: 2.34 -> 3.36 GiB above the static parts);
keep_freed_memory=false maps large blocks on their own instead (reasonrl/utils/host.py)."""
ASSUMED_PROMPT = 256
"""Prompt tokens planned for when the model's tokenizer is not on this machine."""
ADAMW_LORA_BYTES = 16
"""A float32 trainable parameter: its value, its gradient, AdamW's two moments."""


@dataclass(frozen=True)
class Device:
    kind: str  # cpu | cuda
    capacity: int  # bytes the run may use
    label: str


@dataclass(frozen=True)
class Part:
    name: str
    bytes: int
    phase: str  # static | generate | update | eval
    note: str = ""


@dataclass(frozen=True)
class Plan:
    arch: Arch
    device: Device
    parts: list[Part]
    lengths: dict[str, int]

    def phase_peak(self, phase: str) -> int:
        return sum(p.bytes for p in self.parts if p.phase in ("static", phase))

    @property
    def phases(self) -> list[str]:
        return [p for p in ("generate", "update", "eval") if any(x.phase == p for x in self.parts)]

    @property
    def peak(self) -> int:
        return max(self.phase_peak(p) for p in self.phases)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phase_peak)

    @property
    def fits(self) -> bool:
        return self.peak <= self.device.capacity


def gb(n: float) -> str:
    return f"{n / GiB:.2f}"


def dtype_bytes(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else 4


def parse_device(spec: str | None, cfg: RunConfig) -> Device:
    """cpu (this machine's available memory), cpu:24GB, cuda (the visible GPU) or cuda:80GB (GB read as GiB,
    as torch and nvidia-smi count them)."""
    spec = spec or ("cuda" if cfg.model.device.startswith("cuda") else "cpu")
    match = re.fullmatch(r"(cpu|cuda)(?::(\d+(?:\.\d+)?)\s*(?:GB|GiB|G)?)?", spec.strip(), flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"--device {spec!r}: expected cpu, cuda, or a size such as cpu:24GB or cuda:80GB")
    kind, size = match.group(1).lower(), match.group(2)
    if size is not None:
        return Device(kind, int(float(size) * GiB), f"{kind} with {float(size):g} GiB")
    if kind == "cpu":
        available = available_memory()
        return Device("cpu", available, f"this machine's available memory ({gb(available)} GiB)")
    import torch

    if not torch.cuda.is_available():
        raise ValueError("--device cuda: no GPU is visible here; give its size, e.g. --device cuda:80GB")
    total = torch.cuda.get_device_properties(0).total_memory
    return Device("cuda", total, f"{torch.cuda.get_device_name(0)} ({gb(total)} GiB)")


def available_memory() -> int:
    """MemAvailable of /proc/meminfo (Linux), else the total physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def prompt_tokens(cfg: RunConfig) -> int:
    """The longest prompt of the task's first 64 train problems in the model's chat template; 256 when the
    tokenizer is not on this machine (a model planned from the table)."""
    from reasonrl.model import BUNDLED, TINY
    from reasonrl.model_files import BYTE_TOKENIZER_FILE

    path = Path(cfg.model.path).expanduser()
    try:
        if cfg.model.path == TINY or (path / BYTE_TOKENIZER_FILE).is_file():
            from reasonrl.tokenizer import ByteTokenizer

            tokenizer: Any = ByteTokenizer()
        elif cfg.model.path == BUNDLED or (path / "config.json").is_file():
            from transformers import AutoTokenizer

            from reasonrl.model import model_dir

            tokenizer = AutoTokenizer.from_pretrained(model_dir(cfg.model))
        else:
            return ASSUMED_PROMPT
        from reasonrl.tasks import load_task
        from reasonrl.tokenizer import encode_chat

        small = dataclasses.replace(cfg.task, train_size=min(64, cfg.task.train_size), eval_size=8)  # a sample

        return max(len(encode_chat(tokenizer, list(e.prompt))) for e in load_task(small).train)
    except (ValueError, OSError):
        return ASSUMED_PROMPT


def make_plan(cfg: RunConfig, device: Device, arch: Arch, prompt: int) -> Plan:
    """Every part of the run's memory on `device`, from the config and the model's shape."""
    from reasonrl.algos.advantages import needs_critic
    from reasonrl.algos.advantages import ADVANTAGES

    b = dtype_bytes(cfg.model.dtype)
    n_params = arch.params()
    lora = cfg.lora.rank if cfg.lora.enabled else None
    gpu = device.kind == "cuda"
    vllm = cfg.engine.name == "vllm"
    parts = [
        Part(
            "process",
            CUDA_CONTEXT if gpu else CPU_RUNTIME,
            "static",
            "CUDA context" if gpu else "Python, torch, transformers",
        ),
        Part("base weights", n_params * b, "static", f"{n_params / 1e6:,.0f}M parameters in {cfg.model.dtype}"),
    ]
    if lora is not None:
        n_lora = arch.lora_params(lora, cfg.lora.target_modules)
        parts.append(
            Part("LoRA + grads + AdamW", n_lora * ADAMW_LORA_BYTES, "static", f"{n_lora / 1e6:.1f}M at rank {lora}")
        )
    else:
        parts.append(Part("grads + AdamW", n_params * 3 * b, "static", f"full fine-tuning in {cfg.model.dtype}"))
    if not vllm and lora is not None and cfg.engine.hf.merge_lora:
        copy = n_params * b + arch.lora_params(lora, cfg.lora.target_modules) * 4
        if not gpu and b == 4:  # the copy's linear layers are transposed for CPU decoding; the untransposed
            copy += arch.linear_params() * b  # originals are freed to the heap and stay in the process
        parts.append(Part("engine: merged copy", copy, "static", "engine.hf.merge_lora"))
    if needs_critic(ADVANTAGES.get(cfg.algo.advantage)):
        n_lora = arch.lora_params(cfg.lora.rank, cfg.lora.target_modules)
        critic = n_params * b + n_lora * ADAMW_LORA_BYTES
        parts.append(Part("critic", critic, "static", "a second base with its own LoRA and value head"))
    parts += generation_parts(cfg, arch, device, prompt)
    parts += update_parts(cfg, arch, prompt)
    micro_batches = -(-cfg.batch_size // update_rows(cfg, prompt + cfg.sampling.max_new_tokens))
    if not gpu and cfg.keeps_freed_memory and micro_batches > 1:
        transient = sum(p.bytes for p in parts if p.phase == "update")
        parts.append(Part("heap kept between micro-batches", int(HEAP_KEPT * transient), "update", "keep_freed_memory"))
    if vllm and gpu:
        share = int(cfg.engine.vllm.gpu_memory_utilization * device.capacity)
        parts.append(Part("vLLM (weights + KV cache)", share, "generate", "engine.vllm.gpu_memory_utilization"))
        parts.append(Part("vLLM (weights + KV cache)", share, "eval", "engine.vllm.gpu_memory_utilization"))
        if not cfg.engine.vllm.sleep_mode:
            parts.append(Part("vLLM, awake", share, "update", "engine.vllm.sleep_mode=false"))
    elif vllm:
        engine = n_params * b + cfg.engine.vllm.kv_cache_gb * GiB + VLLM_CPU_RUNTIME
        parts.append(Part("vLLM process", engine, "static", "weights + engine.vllm.kv_cache_gb + its runtime"))
    lengths = {"prompt": prompt, "completion": cfg.sampling.max_new_tokens, "measured": prompt != ASSUMED_PROMPT}
    return Plan(arch, device, parts, lengths)


def generation_parts(cfg: RunConfig, arch: Arch, device: Device, prompt: int) -> list[Part]:
    """The hf engine's KV cache and sampling buffers for the training batch and for evaluation (vLLM holds its
    own, counted as its share)."""
    if cfg.engine.name == "vllm":
        return []
    b = dtype_bytes(cfg.model.dtype)
    out = []
    for phase, n, new in (
        ("generate", cfg.samples_per_prompt, cfg.sampling.max_new_tokens),
        ("eval", max(cfg.eval.samples, 1), cfg.eval.max_new_tokens or cfg.sampling.max_new_tokens),
    ):
        per_chunk = max(1, cfg.engine.batch_size // n)  # prompts decoded together (reasonrl/engine/hf.py)
        prompts = min(per_chunk, cfg.prompts_per_step) if phase == "generate" else per_chunk
        rows = prompts * n
        kv = arch.kv_cache(rows * (prompt + new) + prompts * prompt, b)  # + the prompts' cache before the copy
        sampling = rows * arch.vocab * 4 * 3  # float32 logits, probabilities, the sampler's work
        note = f"{rows} sequences x {prompt + new} tokens (engine.batch_size={cfg.engine.batch_size})"
        out.append(Part("KV cache + sampling", kv + sampling, phase, note))
    return out


def update_rows(cfg: RunConfig, length: int) -> int:
    """Sequences per micro-batch: optim.micro_batch_size, fewer when optim.micro_batch_tokens caps rows x length."""
    rows = min(cfg.optim.micro_batch_size, cfg.batch_size)
    if cfg.optim.micro_batch_tokens:
        rows = max(1, min(rows, cfg.optim.micro_batch_tokens // length))
    return rows


def saved_bytes(
    arch: Arch, b: int, rank: int | None, rows: int, prompt: int, completion: int, group: int, path: str
) -> tuple[int, int]:
    """(bytes autograd keeps for one micro-batch's backward, positions whose logits it keeps) for rows of
    prompt + completion tokens, on one of the three paths of reasonrl/model.py: shared (a group of `group` rows
    runs its prompt once, then the completions attend to it through a mask: keys and values per head),
    plain (one causal pass over every token) or checkpointed (each layer keeps its input and the backward
    recomputes one layer at a time). rank None: full fine-tuning."""
    inputs = prompt + completion - 1  # a row's positions that run through the model (the last token is a target)
    per_token = arch.saved_per_token(b, rank)
    full_extra = 3 * arch.hidden * b if rank is None else 0  # the final norm's and the head's inputs
    if path == "checkpointed":
        tokens = rows * inputs
        return tokens * (arch.hidden * b * (arch.layers + 1) + per_token + 2 * arch.kv * b + full_extra), tokens
    if path == "plain":
        tokens = rows * inputs
        return tokens * (arch.layers * (per_token + 2 * arch.kv * b) + full_extra), tokens
    groups = -(-rows // group)
    later = rows * (completion - 1)  # completion positions after the first (scored by the prompt's last)
    saved = arch.layers * (
        later * per_token
        + groups * prompt * (per_token + 2 * arch.kv * b)
        + rows * inputs * 2 * arch.q * b  # keys and values repeated per head (SDPA with a mask)
        + later * inputs * b  # the mask
    )
    return saved + later * full_extra, rows * completion


def update_parts(cfg: RunConfig, arch: Arch, prompt: int) -> list[Part]:
    """One micro-batch's saved activations, the logits and their gradient, the float32 chunks of the log-prob."""
    b = dtype_bytes(cfg.model.dtype)
    completion = cfg.sampling.max_new_tokens
    rows = update_rows(cfg, prompt + completion)
    gc = cfg.model.gradient_checkpointing
    path = "checkpointed" if gc else "shared" if cfg.env.name == "single_turn" else "plain"
    rank = cfg.lora.rank if cfg.lora.enabled else None
    saved, scored = saved_bytes(arch, b, rank, rows, prompt, completion, cfg.samples_per_prompt, path)
    if path == "shared":  # the cache object holding every layer's keys and values (not saved, but alive), and
        saved += arch.kv_cache(rows * (prompt + completion), b)  # float32 attention scores per layer: not among the
        saved += arch.layers * rows * arch.heads * (completion - 1) * (prompt + completion - 1) * 4  # saved
        # tensors, but measured: without them the grid fell 11-14% short at 128-256 completion tokens
    logits = scored * arch.vocab * b
    entropy = scored * arch.vocab * 4 if cfg.algo.entropy_coef > 0 else 0
    # float32 chunks of 64 positions (reasonrl/model.py: TokenLogprobs): the forward's logsumexp work, and in the
    # backward a copy when the logits are not float32 or are tempered, and a work buffer when not float32
    copies = max(1, (b != 4 or cfg.sampling.temperature != 1.0) + (b != 4))
    chunks = copies * rows * 64 * arch.vocab * 4
    note = f"{rows} rows x {prompt + completion} tokens, {path}"
    return [
        Part("activations", saved + entropy, "update", note),
        Part("logits + their grad", 2 * logits + chunks, "update", f"vocabulary {arch.vocab:,}"),
    ]


def format_plan(plan: Plan, cfg: RunConfig) -> str:
    arch = plan.arch
    lines = [
        f"memory plan: {arch.name} ({arch.params() / 1e6:,.0f}M parameters, {arch.layers} layers), "
        f"{cfg.model.dtype}, {'LoRA rank ' + str(cfg.lora.rank) if cfg.lora.enabled else 'full fine-tuning'}, "
        f"engine {cfg.engine.name}, on {plan.device.label}",
        f"sequences: prompt {plan.lengths['prompt']}"
        f"{'' if plan.lengths['measured'] else ' (assumed: no tokenizer here; --prompt-tokens)'}"
        f" + completion {plan.lengths['completion']} tokens; "
        f"{cfg.prompts_per_step} x {cfg.samples_per_prompt} per step",
        "",
        f"{'part':32}{'phase':>10}{'GiB':>9}  note",
    ]
    lines += [f"{p.name:32}{p.phase:>10}{gb(p.bytes):>9}  {p.note}" for p in plan.parts]
    lines.append("")
    for phase in plan.phases:
        lines.append(f"{'peak in ' + phase:42}{gb(plan.phase_peak(phase)):>9}")
    verdict = "fits" if plan.fits else "does NOT fit"
    lines.append(
        f"peak {gb(plan.peak)} GiB ({plan.peak_phase}) of {gb(plan.device.capacity)} GiB: {verdict} "
        f"({plan.peak / plan.device.capacity:.0%})"
    )
    return "\n".join(lines)


def plan_for(cfg: RunConfig, device: str | None = None, arch: str | None = None, prompt: int | None = None) -> Plan:
    shape = resolve_arch(cfg, arch)
    return make_plan(cfg, parse_device(device, cfg), shape, prompt if prompt is not None else prompt_tokens(cfg))
