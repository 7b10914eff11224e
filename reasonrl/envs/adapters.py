"""Other people's text environments, run here unchanged: Gymnasium environments whose observations and actions
are strings ("gymnasium"), and skyrl-gym environments ("skyrl_gym", PyPI skyrl-gym).

    env.name=gymnasium env.options={id: MyText-v0, kwargs: {...}}          # a registered Gymnasium id
    env.name=gymnasium env.options={id: my_pkg.envs:GuessEnv}             # or a "module:Class" entry point
    task.name=gymnasium:my_pkg.envs:GuessEnv env.name=gymnasium             # episodes = seeds; see tasks/text_gym.py
    env.name=skyrl_gym env.options={id: gsm8k, success_threshold: 1.0}      # any task with answers

gymnasium: reset(seed, options) -> (observation, info); step(action) -> (observation, reward, terminated,
truncated, info). The episode's seed and reset options come from example.metadata["gymnasium"] (the
gymnasium task writes them; otherwise the seed is derived from the example id), the first observation is the
user message (after example.prompt), every later observation is the next user message, and the step reward is
the environment's. state_key() is a hash of the last observation.

skyrl_gym: Env(env_config, extras); init(prompt) -> (messages, info); step(action) -> {observations, reward,
done, metadata}. extras hold reward_spec = {method: rule, ground_truth: example.answer}, extra_info =
example.metadata, max_turns = env.max_turns only when the config sets it (else the environment keeps its own
limit), then env.options.extras and example.metadata["skyrl_extras"] (later ones win). A postprocessed_action
is recorded in info but not applied: the sampled tokens are what is trained.

Both: reward part "correct" (what eval accuracy counts) is info["is_success"] at the end of a Gymnasium episode
when the environment reports it, else (with env.options.success_threshold set) 1 when the episode's return
reaches the threshold.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

from reasonrl.envs import ENVS, BaseEnv, EnvContext
from reasonrl.types import Example, Message, StepResult


def entry_point(spec: str) -> Any | None:
    """The callable that "module:attribute" names, or None when spec names no importable attribute (then it is
    an id for the library's own registry)."""
    module, sep, attr = spec.rpartition(":")
    if not sep or not module or not attr.isidentifier():
        return None
    try:
        target = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    return target if callable(target) else None


def gymnasium_creator(spec: str) -> Any:
    """What makes the Gymnasium environment spec names: a "module:Class" entry point, or gymnasium.make bound to
    a registered id ("module:Name-v0" imports the module first, as gymnasium.make does). Raises ValueError when
    spec is neither."""
    target = entry_point(spec)
    if target is not None:
        return target
    try:
        import gymnasium
    except ImportError as e:
        raise ValueError(
            f"env.options.id={spec!r} is not a 'module:Class' entry point and gymnasium is not "
            "installed (pip install gymnasium) to look it up as a registered id"
        ) from e
    module, sep, name = spec.rpartition(":")
    try:
        if sep:
            importlib.import_module(module)
        gymnasium.spec(name if sep else spec)
    except (ImportError, gymnasium.error.Error) as e:
        raise ValueError(f"env.options.id={spec!r}: {e}; give a registered Gymnasium id or 'module:Class'") from e
    return lambda **kwargs: gymnasium.make(name if sep else spec, **kwargs)


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def episode_seed(example: Example) -> int:
    """A stable seed per example id (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(example.id.encode()).digest()[:4], "big") >> 1


def success_part(info: dict[str, Any], episode_return: float, threshold: float | None) -> dict[str, float | None]:
    """The 'correct' reward part at the end of an episode (empty when nothing says what success is)."""
    for key in ("is_success", "success"):
        if key in info:
            return {"correct": float(bool(info[key]))}
    return {} if threshold is None else {"correct": float(episode_return >= threshold)}


def as_text(observation: Any, where: str) -> str:
    if not isinstance(observation, str):
        raise ValueError(
            f"env gymnasium: {where} returned a {type(observation).__name__} observation; only "
            "environments whose observations are strings run here (wrap it to render text)"
        )
    return observation


def registered_spec(spec: str, field: str) -> Any:
    """A field of a registered Gymnasium id's spec (max_episode_steps, reward_threshold); None otherwise."""
    if entry_point(spec) is not None:
        return None
    try:
        import gymnasium

        return getattr(gymnasium.spec(spec), field, None)
    except Exception:  # not installed, not registered: the creator reports it
        return None


@ENVS.register("gymnasium")
class GymnasiumEnv(BaseEnv):
    """A Gymnasium environment with text observations and text actions, one instance per episode. Unless the
    config sets them, env.max_turns is the registered spec's max_episode_steps and success_threshold its
    reward_threshold (else 10 turns, and success only from info["is_success"])."""

    default_max_turns = 10

    @staticmethod
    def own_max_turns(options: dict[str, Any]) -> int | None:
        spec = options.get("id")
        return registered_spec(spec, "max_episode_steps") if isinstance(spec, str) else None

    def __init__(
        self,
        ctx: EnvContext,
        id: str | None = None,
        kwargs: dict[str, Any] | None = None,
        success_threshold: float | None = None,
    ) -> None:
        super().__init__(ctx)
        if id is not None and (not isinstance(id, str) or not id):
            raise ValueError(f"env.options.id={id!r} must be a registered Gymnasium id or 'module:Class'")
        if success_threshold is None and id is not None:
            success_threshold = registered_spec(id, "reward_threshold")  # the environment's own, if registered
        self.spec, self.kwargs, self.threshold = id, dict(kwargs or {}), success_threshold
        self.creator = gymnasium_creator(id) if id is not None else None  # a bad id fails at start-up
        self.env: Any = None
        self.last, self.episode_return = "", 0.0

    def reset(self, example: Example) -> list[Message]:
        meta = dict(example.metadata.get("gymnasium") or {})
        spec = self.spec or meta.get("id")
        if not spec:
            raise ValueError(
                f"env gymnasium: no environment for example {example.id!r}; set env.options.id or "
                "use task.name=gymnasium:<id>"
            )
        creator = self.creator or gymnasium_creator(spec)
        self.env = creator(**(self.kwargs if self.spec else dict(meta.get("kwargs") or {})))
        observation, _ = self.env.reset(seed=meta.get("seed", episode_seed(example)), options=meta.get("reset_options"))
        self.last, self.example, self.episode_return = as_text(observation, "reset()"), example, 0.0
        if "observation" in meta:  # the gymnasium task already put this first observation in the prompt
            if meta["observation"] != self.last:
                raise ValueError(
                    f"env gymnasium {spec!r}: reset(seed={meta.get('seed')}) gave a different first "
                    f"observation than when example {example.id!r} was made; it must be seeded"
                )
            self.messages = list(example.prompt)
        else:
            self.messages = list(example.prompt) + [{"role": "user", "content": self.last}]
        return list(self.messages)

    def state_key(self) -> str:
        return text_hash(self.last)

    def step(self, action: str) -> StepResult:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.last = as_text(observation, "step()")
        self.episode_return += float(reward)
        parts: dict[str, float | None] = {"env_reward": float(reward)}
        if terminated or truncated:
            parts |= success_part(info, self.episode_return, self.threshold)
            return StepResult(
                observation=None,
                reward=float(reward),
                done=True,
                reward_parts=parts,
                info={"truncated_by_env": bool(truncated)},
            )
        message: list[Message] = [{"role": "user", "content": self.last}]
        self.messages += [Message(role="assistant", content=action)] + message
        return StepResult(observation=message, reward=float(reward), done=False, reward_parts=parts)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


def skyrl_creator(spec: str) -> Any:
    """What makes the skyrl-gym environment spec names: a "module:Class" entry point, or skyrl_gym.make bound to
    a registered id. Raises ValueError when spec is neither."""
    target = entry_point(spec)
    if target is not None:
        return target
    try:
        import skyrl_gym
    except ImportError as e:
        raise ValueError(
            f"env.options.id={spec!r} is not a 'module:Class' entry point and skyrl-gym is not "
            "installed (pip install skyrl-gym) to look it up as a registered id"
        ) from e
    if spec not in skyrl_gym.registry:
        raise ValueError(
            f"env.options.id={spec!r} is not a registered skyrl-gym environment (known: "
            f"{', '.join(sorted(skyrl_gym.registry))}) nor a 'module:Class' entry point"
        )
    return lambda **kwargs: skyrl_gym.make(spec, **kwargs)


@ENVS.register("skyrl_gym")
class SkyRLGymEnv(BaseEnv):
    """A skyrl-gym text environment (init/step on chat messages), one instance per episode."""

    default_max_turns = 10

    def __init__(
        self,
        ctx: EnvContext,
        id: str = "",
        env_config: dict[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
        success_threshold: float | None = None,
    ) -> None:
        super().__init__(ctx)
        if not isinstance(id, str) or not id:
            raise ValueError(
                "env skyrl_gym needs env.options.id: a registered skyrl-gym id (e.g. gsm8k) or 'module:Class'"
            )
        self.spec, self.env_config, self.extras = id, dict(env_config or {}), dict(extras or {})
        self.creator = skyrl_creator(id)  # an unknown id fails at start-up
        self.threshold = success_threshold
        self.env: Any = None
        self.episode_return = 0.0

    def episode_extras(self, example: Example) -> dict[str, Any]:
        extras: dict[str, Any] = {
            "reward_spec": {"method": "rule", "ground_truth": example.answer},
            "extra_info": dict(example.metadata),
        }
        if self.ctx.max_turns_set:  # else the environment keeps its own limit (gsm8k_multi_turn: 5)
            extras["max_turns"] = self.ctx.max_turns
        return extras | self.extras | dict(example.metadata.get("skyrl_extras") or {})

    def reset(self, example: Example) -> list[Message]:
        self.env = self.creator(env_config=self.env_config, extras=self.episode_extras(example))
        messages, _ = self.env.init(list(example.prompt))
        self.example, self.messages, self.episode_return = example, [dict(m) for m in messages], 0.0  # type: ignore[misc]
        return list(self.messages)

    def state_key(self) -> str:
        return text_hash(self.messages[-1]["content"] if self.messages else "")

    def step(self, action: str) -> StepResult:
        out = self.env.step(action)
        reward, done = float(out["reward"]), bool(out["done"])
        self.episode_return += reward
        info: dict[str, Any] = {}
        if out.get("postprocessed_action") is not None:
            info["postprocessed_action"] = out["postprocessed_action"]
        parts: dict[str, float | None] = {"env_reward": reward}
        if done:
            parts |= success_part({}, self.episode_return, self.threshold)
            metrics = getattr(self.env, "get_metrics", None)
            info["env_metrics"] = metrics() if callable(metrics) else {}
            return StepResult(observation=None, reward=reward, done=True, reward_parts=parts, info=info)
        observation: list[Message] = [{"role": m["role"], "content": m["content"]} for m in out["observations"]]
        self.messages += [Message(role="assistant", content=action)] + observation
        return StepResult(observation=observation, reward=reward, done=False, reward_parts=parts, info=info)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
