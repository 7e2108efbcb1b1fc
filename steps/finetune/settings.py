"""Settings of the finetune step: LoRA profile, quantisation, batching and the training budget."""

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


class LoraProfile(BaseModel):
    model_config = {"extra": "forbid"}
    r: int = Field(8, ge=1, le=64)  # vLLM serves ranks up to its --max-lora-rank (manifests/serving: 64)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1)


# Built-in named profiles, selectable as `lora: <name>`; a config adds or redefines profiles under
# `lora_profiles`. Module names follow the Llama/Qwen/SmolLM layout.
LORA_PROFILES: dict[str, LoraProfile] = {
    # Every linear layer of the blocks (the default): facts live largely in the MLPs. Measured on the embedded
    # model, 16 invented QA pairs, 20 steps at lr 2e-3: loss 2.07 -> 0.16 and 10/16 answers right, against
    # 2.07 -> 0.75 and 1/16 with attention only, for ~10% more time per step.
    "all-linear": LoraProfile(
        r=16, alpha=32,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ),
    # Attention only: the smallest adapter; adapts style and format more than it stores facts.
    "attention": LoraProfile(),
}


class FinetuneSettings(BaseModel):
    model_config = {"extra": "forbid"}

    # Profiles defined by the config (r, alpha, dropout, target modules), next to and over the built-in ones.
    lora_profiles: dict[str, LoraProfile] = Field(default_factory=dict)
    lora: LoraProfile = Field(default_factory=lambda: LORA_PROFILES["all-linear"].model_copy(),
                              description="a profile name (from lora_profiles or built in: "
                                          f"{', '.join(LORA_PROFILES)}) or an explicit profile")
    # auto: nf4 (QLoRA) when a CUDA GPU is present, plain LoRA otherwise. 4-bit is refused on CPU: bitsandbytes
    # loads and trains there, but silently diverges once the model has generated (FACTS).
    quantization: Literal["auto", "none", "nf4"] = "auto"
    # length_grouped: batches of similar lengths, padded to the longest (cheap padding, works everywhere).
    # packed: padding-free best-fit packing into rows of at most max_seq_len tokens, sequences kept apart by
    # their position ids (transformers builds a block-diagonal mask; FlashAttention uses cu_seq_lens). There
    # batch_size counts packed rows, each holding as many QA pairs as fit: fewer, fuller steps (GPU).
    batching: Literal["length_grouped", "packed"] = "length_grouped"
    # Train on the question alone (default): the judge and users ask without the chunk, so the adapter has to
    # learn the corpus itself. With the chunk in the prompt it would learn to read context instead.
    include_context: bool = False
    seed: int = 42
    # The default fits the local demo's budget: 3-8 s/step on 2 cores (measured 8 s/step on a shared, loaded
    # machine); 20 steps already teach 16 QA pairs (see all-linear above).
    max_steps: int | None = Field(40, ge=1, description="stop after this many optimizer steps; None: run `epochs`")
    epochs: float = Field(3.0, gt=0)
    # LoRA wants ~10x the learning rate of full fine-tuning; 1e-3 suits the small embedded model.
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(4, ge=1)
    grad_accumulation: int = Field(1, ge=1)
    max_seq_len: int = Field(512, ge=16, description="longer examples are dropped and counted, never truncated")
    gradient_checkpointing: bool = True
    # Training checkpoints (adapter, optimizer, scheduler, RNG states, data position) published to the artifact
    # store so that a retried pod (a preempted spot node) resumes; also at once on SIGTERM. None turns one
    # trigger off. Each costs a save and an upload (the optimizer state is ~2x the adapter): every 200 steps or
    # 30 minutes bounds the lost work on a GPU without spending much of the run on uploads.
    checkpoint_every_steps: int | None = Field(200, ge=1)
    checkpoint_every_minutes: float | None = Field(30.0, gt=0, le=24 * 60)

    @model_validator(mode="before")
    @classmethod
    def _named_profile(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("lora"), str):
            return data
        name = data["lora"]
        defined = data.get("lora_profiles") or {}
        if name in defined:
            return {**data, "lora": defined[name]}
        if name in LORA_PROFILES:
            return {**data, "lora": LORA_PROFILES[name].model_copy()}
        raise ValueError(f"lora: unknown LoRA profile {name!r}; define it under lora_profiles, or use one of "
                         f"{sorted({*defined, *LORA_PROFILES})}")
