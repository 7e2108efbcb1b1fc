from pydantic import BaseModel


class GenerateQASettings(BaseModel):
    model_config = {"extra": "forbid"}
