"""Exceptions that predictors see or raise."""


class CancelationException(BaseException):
    """Raised inside a running prediction when it is canceled.

    It derives from BaseException so that a predictor's `except Exception`
    does not swallow the cancelation by accident.
    """


class ExperimentalFeatureWarning(FutureWarning):
    """Kept so that models which filter this warning still import cleanly."""


class PredictorError(Exception):
    """The predictor cannot be loaded or its signature is not supported.

    The message is one sentence naming the file, class or parameter at fault.
    """
