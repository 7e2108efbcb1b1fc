from pydantic import BaseModel


class FinetuneSettings(BaseModel):
    model_config = {"extra": "forbid"}
