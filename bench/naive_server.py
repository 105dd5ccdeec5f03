"""The reference a user would write first: Flask under gunicorn (2 sync workers),
the bare fitted estimator (no pipeline) on a NumPy row, no validation, no logging,
no batching.

Run by bench/predict.py: `gunicorn -w 2 bench.naive_server:app` with
NAIVE_MODEL_PATH set to the joblib file of the estimator.
"""

from __future__ import annotations

import os

import joblib
import numpy as np
from flask import Flask, request

app = Flask(__name__)
model = joblib.load(os.environ["NAIVE_MODEL_PATH"])


@app.post("/predict")
def predict() -> dict[str, object]:
    features = request.get_json()["features"]
    probabilities = model.predict_proba(np.array([list(features.values())]))[0]
    best = int(probabilities.argmax())
    return {
        "prediction": str(model.classes_[best]),
        "confidence": float(probabilities[best]),
        "probabilities": {
            str(c): float(p) for c, p in zip(model.classes_, probabilities, strict=True)
        },
    }
