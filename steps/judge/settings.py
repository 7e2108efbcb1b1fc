from pydantic import BaseModel


class JudgeSettings(BaseModel):
    model_config = {"extra": "forbid"}
