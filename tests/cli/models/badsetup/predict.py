from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        raise RuntimeError("weights are missing")

    def predict(self, text: str = "x") -> str:
        return text
