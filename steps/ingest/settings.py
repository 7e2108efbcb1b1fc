from pydantic import BaseModel


class IngestSettings(BaseModel):
    model_config = {"extra": "forbid"}
