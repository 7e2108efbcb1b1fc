"""The adapters a pipeline config's model registry has in service, for `eurolora serve --registry`.

The `champion` and `challenger` versions are served under the names the canary step gives them
(`<family>-v<N>`), from their published adapter folder (the `eurolora.adapter_uri` tag promote writes; an
s3:// adapter is downloaded and verified into `cache_dir`). Reads the registry only: nothing is created.
"""

from pathlib import Path

from pipelines.config import PipelineConfig


class RegistryAdaptersError(ValueError):
    """The registry cannot say which adapters to serve (missing, or a version without its adapter)."""


def registry_adapters(config: PipelineConfig, cache_dir: Path) -> dict[str, str]:
    """Served name -> local adapter folder for the champion and the challenger (either may be absent)."""
    from steps.canary.serving import adapter_name
    from steps.common.registry import CHALLENGER, CHAMPION, Registry
    from steps.common.tags import ADAPTER_URI_TAG
    from steps.common.storage import ArtifactStore

    uri = config.registry.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise RegistryAdaptersError(f"registry.tracking_uri {uri}: no such database here (run `eurolora run` "
                                    "first, from the directory it ran in)")
    registry = Registry(config.registry, config.residency)
    store = ArtifactStore(config.storage, config.residency)
    adapters: dict[str, str] = {}
    for alias in (CHAMPION, CHALLENGER):
        version = registry.alias_version(alias)
        if version is None:
            continue
        name = adapter_name(config.adapter_family, version.version)
        if name in adapters:  # champion and challenger are one version right after a promotion
            continue
        published = version.tags.get(ADAPTER_URI_TAG)
        if not published:
            raise RegistryAdaptersError(f"{alias} (version {version.version} of {registry.model_name!r}) has no "
                                        f"{ADAPTER_URI_TAG} tag: it was not registered by the promote step")
        adapters[name] = str(store.materialize(published, cache_dir / name).resolve())
    return adapters
