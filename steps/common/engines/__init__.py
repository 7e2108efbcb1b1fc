"""Generation engines behind one interface; `make_engine` picks one from settings (imports stay lazy)."""

from steps.common.contract import RuntimeContext
from steps.common.engines.base import Engine, EngineSettings, GenerationRequest, GenerationResult

__all__ = ["Engine", "EngineSettings", "GenerationRequest", "GenerationResult", "make_engine"]


def make_engine(settings: EngineSettings, context: RuntimeContext) -> Engine:
    """The engine `settings.kind` names, ready to generate; the caller closes it."""
    if settings.kind == "transformers":
        from steps.common.engines.transformers_engine import TransformersEngine
        from steps.common.models import resolve_model_dir

        return TransformersEngine(settings, resolve_model_dir(settings.model, context))
    if settings.kind == "vllm":
        from steps.common.engines.vllm_engine import VLLMEngine
        from steps.common.models import resolve_model_dir

        return VLLMEngine(settings, resolve_model_dir(settings.model, context), context.scratch())
    from steps.common.engines.openai_engine import OpenAIEngine

    return OpenAIEngine(settings.openai, context.residency, temperature=settings.temperature, seed=settings.seed)
