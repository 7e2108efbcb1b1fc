"""Where the MLflow tracking server and model registry live (shared by finetune, judge, promote, canary)."""

from pydantic import BaseModel, Field


class RegistrySettings(BaseModel):
    model_config = {"extra": "forbid"}
    # Locally a SQLite file (sqlite:////abs/path/mlflow.db); on a cluster an EU MLflow server URL.
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "eurolora"
    # Where a new experiment stores run artifacts (logged adapters). Empty: the server's default
    # (`--artifacts-destination`); locally a folder under the runs directory, not ./mlruns.
    artifact_location: str = ""
    model_name: str = "eurolora-adapter"  # registered model name; aliases champion/challenger/previous
    timeout_s: float = Field(30.0, gt=0)  # every registry call is bounded
    max_retries: int = Field(2, ge=0, le=10)  # HTTP retries with backoff inside one call
