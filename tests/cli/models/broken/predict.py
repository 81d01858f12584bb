from cog import BasePredictor


class Predictor(BasePredictor)  # a syntax error on purpose
    def predict(self) -> str:
        return "never"
