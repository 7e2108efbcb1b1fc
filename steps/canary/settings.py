from pydantic import BaseModel


class CanarySettings(BaseModel):
    model_config = {"extra": "forbid"}
