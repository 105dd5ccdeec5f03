"""The reference a user would write first: Flask under gunicorn (2 sync workers),
the same joblib artifact, no validation, no logging, no batching.

Run by bench/predict.py: `gunicorn -w 2 bench.naive_server:app` with
NAIVE_MODEL_PATH set to the artifact.
"""

from __future__ import annotations

import os

import joblib
import pandas as pd
from flask import Flask, request

app = Flask(__name__)
pipeline = joblib.load(os.environ["NAIVE_MODEL_PATH"])["pipeline"]


@app.post("/predict")
def predict() -> dict[str, object]:
    features = request.get_json()["features"]
    probabilities = pipeline.predict_proba(pd.DataFrame([features]))[0]
    best = int(probabilities.argmax())
    return {
        "prediction": str(pipeline.classes_[best]),
        "confidence": float(probabilities[best]),
        "probabilities": {
            str(c): float(p)
            for c, p in zip(pipeline.classes_, probabilities, strict=True)
        },
    }
