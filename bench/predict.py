"""POST /predict throughput and latency against two references, in one run.

For each model (a random forest of 100 trees of depth 12, and a logistic regression,
on 20 numeric features) it starts, all at once on this machine:
  - ModelOps' API (`python -m services.api.serve`, settings defaults) serving
    through ONNX Runtime, with prediction logging on and off, and serving through
    scikit-learn (MODELOPS_INFERENCE_RUNTIME=sklearn), logging on;
  - a naive server (bench/naive_server.py: Flask, gunicorn, 2 sync workers, the bare
    fitted estimator on a NumPy row: no pipeline, no validation, no logging);
and drives each with wrk at concurrency 1, 8 and 32, the runs interleaved (every
server once, then again in the reverse order), each ModelOps server's log written
before the next run starts (a log still writing would slow the next server), and
each figure the median of the repeats. It also times
the in-process reference: the pipeline's predict_proba on a one-row DataFrame.

Run: `make bench` or `.venv/bin/python -m bench.predict [--seconds S]`. Needs wrk
(Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import joblib
import pandas as pd
from sklearn.datasets import make_classification

from bench import alternating
from bench.soak import wait_written
from common.config import Settings
from common.data.datasets import Dataset
from common.models import registry
from common.models.lifecycle import train_version
from common.models.training import build_estimator
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.migrate import upgrade_database
from services.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 32)
MODELS = {
    "random_forest": {"n_estimators": 100, "max_depth": 12},
    "logistic_regression": {},
}
# (name, runtime, prediction logging); the naive server has no runtime setting.
VARIANTS = (
    ("modelops", "onnx", True),
    ("modelops, no logging", "onnx", False),
    ("modelops", "sklearn", True),
    ("naive", "sklearn", False),
)
LUA = """wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
"""


def make_model(
    home: Path, model_type: str, params: dict
) -> tuple[Settings, Path, dict]:
    X, y = make_classification(
        n_samples=5000, n_features=20, n_informative=10, random_state=0
    )
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(20)]).assign(target=y)
    settings = Settings(home=str(home))
    engine = make_engine(settings)
    upgrade_database(engine)
    with session_scope(make_session_factory(engine)) as session:
        trained = train_version(
            session,
            settings,
            Dataset("bench", frame, "target"),
            model_type=model_type,
            params=params,
            reason="bench",
        )
        artifact = Path(settings.artifact_dir) / trained.version.artifact_path
        row = frame.drop(columns="target").iloc[0].to_dict()
        champion = registry.get_champion(session, settings).model_version
        assert champion.version == 1
        if champion.runtime != "onnx":
            raise RuntimeError(f"not compiled: {champion.runtime_reason}")
    engine.dispose()
    # The naive server's model: the bare estimator, fitted on the same rows.
    bare = build_estimator(model_type, params, settings.random_state).fit(X, y)
    joblib.dump(bare, home / "bare.joblib")
    return settings, artifact, row


def in_process_ms(artifact: Path, row: dict, seconds: float) -> float:
    pipeline = joblib.load(artifact)["pipeline"]
    frame = pd.DataFrame([row])
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        pipeline.predict_proba(frame)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def start(argv: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return process
        except urllib.error.HTTPError:  # it answers (405 for GET /predict): up
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not start: {argv}")


def run_wrk(url: str, script: str, connections: int, seconds: float) -> str:
    """wrk's report of `script` (Lua) against `url`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    threads = min(connections, 2)
    try:
        return subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections),
             "-d", f"{max(int(seconds), 1)}s", "--latency", "-s", handle.name, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        Path(handle.name).unlink()


def wrk(
    url: str, body: dict, connections: int, seconds: float
) -> tuple[float, float, float]:
    """req/s, p50 and p99 of one run; raises on any failed request."""
    rate, p50, p99, errors = wrk_counting(url, body, connections, seconds)
    if errors:
        raise RuntimeError(f"{errors} errors under load at {url}")
    return rate, p50, p99


def wrk_counting(
    url: str, body: dict, connections: int, seconds: float
) -> tuple[float, float, float, int]:
    """req/s, p50, p99 and the requests that failed (non-2xx answers and socket
    errors): counted, not hidden, so a long run reports them instead of dying."""
    out = run_wrk(url, LUA.format(body=json.dumps(body)), connections, seconds)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                       r"timeout (\d+)", out)  # fmt: skip
    errors += sum(int(n) for n in socket.groups()) if socket else 0
    return rate, p50, p99, errors


def failed_statuses(url: str) -> dict[str, float]:
    """A ModelOps server's answers by status other than 200, from Prometheus."""
    try:
        with urllib.request.urlopen(f"{url}/metrics/prometheus", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    counts: dict[str, float] = {}
    pattern = r'modelops_http_requests_total\{[^}]*status="(\d+)"[^}]*\} ([\d.e+]+)'
    for status, value in re.findall(pattern, text):
        if status != "200":
            counts[status] = counts.get(status, 0) + float(value)
    return counts


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def server_commands(
    settings: Settings,
    artifact: Path,
    port: int,
    variant: str,
    runtime: str = "auto",
    logging: bool = True,
) -> tuple[list[str], dict[str, str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    url = f"http://127.0.0.1:{port}"
    if variant == "naive":
        env["NAIVE_MODEL_PATH"] = str(Path(settings.home) / "bare.joblib")
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--no-control-socket",
            "bench.naive_server:app",
        ]
        return argv, env, f"{url}/predict"
    env.update(
        MODELOPS_HOME=settings.home,
        MODELOPS_API_PORT=str(port),
        MODELOPS_LOG_LEVEL="WARNING",
        MODELOPS_PREDICTION_LOGGING="true" if logging else "false",
        MODELOPS_INFERENCE_RUNTIME=runtime,
    )
    return [sys.executable, "-m", "services.api.serve"], env, f"{url}/livez"


def run_servers(
    settings: Settings, artifact: Path, row: dict, seconds: float, repeats: int
) -> dict:
    """All servers up at once; wrk runs interleaved so drift hits each alike."""
    variants = [(name, runtime) for name, runtime, _ in VARIANTS]
    logging_on = {(name, runtime) for name, runtime, logging in VARIANTS if logging}
    servers = {}
    try:
        for index, (name, runtime, logging) in enumerate(VARIANTS):
            port = free_port()
            own = _own_home(settings, index)
            argv, env, ready = server_commands(own, artifact, port, name, runtime,
                                               logging)  # fmt: skip
            servers[(name, runtime)] = (start(argv, env, ready),
                                        f"http://127.0.0.1:{port}")  # fmt: skip
        body = {"features": row}
        for _, url in servers.values():
            wrk(f"{url}/predict", body, 8, 2)  # warm-up
        samples: dict[str, dict[int, list]] = {
            v: {c: [] for c in CONCURRENCY} for v in variants
        }
        for c in CONCURRENCY:
            for repeat in range(repeats):
                for variant, (_, url) in alternating(list(servers.items()), repeat):
                    samples[variant][c].append(
                        wrk_counting(f"{url}/predict", body, c, seconds))  # fmt: skip
                    if variant in logging_on:  # its log written before the next run
                        wait_written(url)
        for variant, (_, url) in servers.items():
            if any(run[3] for runs in samples[variant].values() for run in runs):
                sys.stdout.write(f"failed requests of {variant}: by status "
                                 f"{failed_statuses(url) or 'unknown'}\n")  # fmt: skip
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(60)
    return {
        variant: {
            c: (*(statistics.median(x[k] for x in runs) for k in range(3)),
                sum(x[3] for x in runs))
            for c, runs in by_c.items()
        }
        for variant, by_c in samples.items()
    }  # fmt: skip


def _own_home(settings: Settings, index: int) -> Settings:
    """A copy of the model's home for one server: its own database, so that one
    server's log neither grows nor locks another's."""
    home = Path(f"{settings.home}-{index}")
    shutil.copytree(settings.home, home)
    return settings.with_overrides(home=str(home))


def report(model: str, limit_ms: float, results: dict) -> list[str]:
    """Print the table for one model; return the target checks as lines."""
    out = sys.stdout
    out.write(f"\n{model}: in-process pipeline predict_proba, one-row DataFrame: "
              f"{limit_ms:.3f} ms\n")  # fmt: skip
    out.write(
        f"{'server':<22}{'runtime':<9}{'conc':>5}{'req/s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'vs naive':>10}{'failed':>8}\n"
    )
    naive = results[("naive", "sklearn")]
    for (name, runtime), rows in results.items():
        for c, (rate, p50, p99, failed) in rows.items():
            out.write(
                f"{name:<22}{runtime:<9}{c:>5}{rate:>9.0f}{p50:>9.2f}{p99:>9.2f}"
                f"{rate / naive[c][0]:>10.2f}{failed:>8}\n"
            )
    ours = results[("modelops", "onnx")]
    quiet = results[("modelops, no logging", "onnx")]
    rate_vs_naive = ours[32][0] / naive[32][0]
    checks = [
        (f"{model} c=1 p50 (onnx) vs in-process predict_proba p50", ours[1][1],
         f"< {limit_ms:.2f} ms", ours[1][1] < limit_ms),
        (f"{model} logging on / off req/s at c=32", ours[32][0] / quiet[32][0],
         ">= 0.9", ours[32][0] / quiet[32][0] >= 0.9),
    ]  # fmt: skip
    if model == "random_forest":
        p99_vs_naive = ours[32][2] / naive[32][2]
        checks += [
            ("random_forest c=32 req/s vs naive", rate_vs_naive, ">= 10",
             rate_vs_naive >= 10),
            ("random_forest c=32 p99 vs naive", p99_vs_naive, "<= 0.25",
             p99_vs_naive <= 0.25),
        ]  # fmt: skip
    else:
        checks.append(("logistic_regression c=32 req/s vs naive", rate_vs_naive,
                       ">= 1.5", rate_vs_naive >= 1.5))  # fmt: skip
    failed = sum(run[3] for rows in results.values() for run in rows.values())
    checks.append((f"{model} failed requests, every server", failed, "0", failed == 0))
    return [
        f"{'PASS' if ok else 'MISS'}  {name}: {value:.2f} (target {target})"
        for name, value, target, ok in checks
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="per wrk run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            settings, artifact, row = make_model(
                Path(tmp) / model, model, MODELS[model]
            )
            limit = in_process_ms(artifact, row, 3.0)
            results = run_servers(settings, artifact, row, args.seconds, args.repeats)
            lines += report(model, limit, results)
    sys.stdout.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
