"""How MLflow 3's UI shows xferlab's experiments: in its model-training mode, by direct links.

MLflow 3's UI has two modes, GenAI (traces, token usage) and model training (the runs table).
The experiment tag `mlflow.experimentKind` says which an experiment is
(`custom_model_development` is model training); the UI of MLflow 3.17 decides the mode by the
URL's `workflowType` (`machine_learning` or `genai`), else by the browser's last choice, GenAI
at first; its links keep the parameter. So xferlab tags every experiment it creates and prints
links that carry the parameter. Pure string work: no MLflow import.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# (key, value) of the experiment tag MLflow reads as "a model-training experiment"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
MODE = "workflowType=machine_learning"  # the UI's model-training mode, as a URL parameter
UI_URL = "http://127.0.0.1:5000"  # where `xferlab ui` serves by default


def ui_url(uri: str, host: str = "127.0.0.1", port: int = 5000) -> str:
    """The UI's address for a store: a tracking server serves its own (credentials left out);
    a local store is served by `xferlab ui` on `host`:`port`."""
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)
        netloc = parts.hostname or ""
        netloc = f"[{netloc}]" if ":" in netloc else netloc
        if parts.port is not None:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
    if host in ("0.0.0.0", "::", ""):  # every interface: this machine reaches it on loopback
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def runs_link(ui: str, experiment_id: str) -> str:
    """The experiment's runs table."""
    return f"{ui}/#/experiments/{experiment_id}/runs?{MODE}"


def run_link(ui: str, experiment_id: str, run_id: str) -> str:
    """One run's page (a sweep's parent run too)."""
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}?{MODE}"


def links(ui: str, experiment_id: str, run_id: str, parent_run_id: str | None = None
          ) -> dict[str, str]:
    """What a run's summary links to: the run, its sweep's parent (if any), its experiment."""
    found = {"run": run_link(ui, experiment_id, run_id)}
    if parent_run_id:
        found["sweep"] = run_link(ui, experiment_id, parent_run_id)
    found["runs"] = runs_link(ui, experiment_id)
    return found
