from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, text: str = "x") -> str:
        print("about to fail")
        raise ValueError(f"cannot handle {text}")
