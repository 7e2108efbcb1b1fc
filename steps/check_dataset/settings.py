from pydantic import BaseModel


class CheckDatasetSettings(BaseModel):
    model_config = {"extra": "forbid"}
    # Nightly runs skip fine-tuning when the QA dataset equals the one the champion was trained on.
    skip_unchanged: bool = True
