import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("loading weights slowly", flush=True)
        time.sleep(60)

    def predict(self, text: str = "x") -> str:
        return text
