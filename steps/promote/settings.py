from pydantic import BaseModel


class PromoteSettings(BaseModel):
    model_config = {"extra": "forbid"}
