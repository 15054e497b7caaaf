"""Drives Debian's Chromium headless with Playwright (no downloaded browser) for tests/test_browser.py.

Run by the test with a Python that has Playwright (the main venv's, or the browser-test venv's; see that
test). Prints one JSON object of what it saw; the test makes the assertions. Usage::

    python _browser_driver.py mlflow SPEC_JSON      # MLflow UI: experiment page, parent + child runs, artifacts
    python _browser_driver.py report SPEC_JSON      # a `sasi report` HTML file
    python _browser_driver.py optuna SPEC_JSON      # optuna-dashboard lists the mirrored study
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOADED = "img => img.complete && img.naturalWidth > 0"


def _browser(p, spec):
    return p.chromium.launch(executable_path=spec.get("chromium", "/usr/bin/chromium"), args=ARGS, headless=True)


def _open_artifact(page, name: str, timeout: int) -> dict:
    """On a run page: the Artifacts tab, then ``name``; waits for the preview image to load."""
    page.get_by_role("tab", name="Artifacts").or_(page.get_by_text("Artifacts", exact=True)).first.click()
    page.get_by_text(name, exact=True).first.click(timeout=timeout)
    page.wait_for_function("""() => [...document.querySelectorAll('img')].some(i => i.src.startsWith('blob:')
                               && i.complete && i.naturalWidth > 0)""", timeout=timeout)
    shown = [i for i in page.locator("img").all() if (i.get_attribute("src") or "").startswith("blob:")]
    sizes = [i.evaluate("i => [i.naturalWidth, i.naturalHeight]") for i in shown]
    return {"name": name, "sizes": sizes, "path_shown": page.get_by_text(name).count() > 1}


def mlflow(spec: dict) -> dict:
    from playwright.sync_api import sync_playwright

    out: dict = {"steps": []}
    shots, timeout = Path(spec["screenshots"]), int(spec.get("timeout_ms", 60000))
    base = spec["url"].rstrip("/")
    experiment = f"{base}/#/experiments/{spec['experiment_id']}"
    with sync_playwright() as p:
        browser = _browser(p, spec)
        page = browser.new_page(viewport={"width": 1700, "height": 950})
        errors: list[str] = []
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        t0 = time.monotonic()
        # the experiment's runs list ("Model training" view; MLflow 3 opens experiments in its GenAI view)
        page.goto(f"{experiment}/runs?workflowType=machine_learning")
        page.get_by_text(spec["parent"], exact=True).first.wait_for(timeout=timeout)
        out["parent_listed"] = True
        page.screenshot(path=str(shots / "mlflow-experiment.png"))
        out["steps"].append(["experiment page", round(time.monotonic() - t0, 1)])
        # child runs sit under their parent: expand it
        row = page.locator(".ag-row", has_text=spec["parent"]).first
        row.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
        for child in spec["children"]:
            page.get_by_text(child, exact=True).first.wait_for(timeout=timeout)
        out["children_listed"] = list(spec["children"])
        page.screenshot(path=str(shots / "mlflow-runs.png"))
        out["steps"].append(["children expanded", round(time.monotonic() - t0, 1)])
        # a child run: its page, its PNG artifact
        child = spec["children"][0]
        page.get_by_text(child, exact=True).first.click()
        page.wait_for_url(f"**/runs/{spec['child_run_id']}**", timeout=timeout)
        page.get_by_text(spec["child_metric"], exact=True).first.wait_for(timeout=timeout)
        out["child_page"] = {"url": page.url, "metric_shown": True}
        page.screenshot(path=str(shots / "mlflow-child-run.png"))
        out["child_artifact"] = _open_artifact(page, spec["child_png"], timeout)
        page.screenshot(path=str(shots / "mlflow-child-artifact.png"))
        out["steps"].append(["child artifact", round(time.monotonic() - t0, 1)])
        # the parent run: its F1-vs-shots plot
        page.goto(f"{experiment}/runs/{spec['parent_run_id']}?workflowType=machine_learning")
        page.get_by_text(spec["parent"], exact=True).first.wait_for(timeout=timeout)
        out["parent_artifact"] = _open_artifact(page, spec["parent_png"], timeout)
        page.screenshot(path=str(shots / "mlflow-parent-artifact.png"))
        out["steps"].append(["parent artifact", round(time.monotonic() - t0, 1)])
        out["server_errors"] = errors
        browser.close()
    return out


def report(spec: dict) -> dict:
    from playwright.sync_api import sync_playwright

    shots = Path(spec["screenshots"])
    with sync_playwright() as p:
        browser = _browser(p, spec)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(Path(spec["file"]).resolve().as_uri(), wait_until="load")
        images = page.locator("img")
        info = [img.evaluate("i => ({figure: i.dataset.figure, loaded: i.complete && i.naturalWidth > 0, "
                             "width: i.naturalWidth, height: i.naturalHeight, inline: i.src.startsWith('data:image/png')})")
                for img in images.all()]
        out = {"title": page.title(), "h1": page.locator("h1").inner_text(),
               "sections": page.locator("section h2").all_inner_texts(),
               "tables": page.locator("table").count(), "images": info,
               "body_text": page.inner_text("body"),
               "external_requests": [u for u in requests if not u.startswith(("file:", "data:"))]}
        page.screenshot(path=str(shots / "report-top.png"))
        page.screenshot(path=str(shots / "report-full.png"), full_page=True)
        browser.close()
    return out


def optuna(spec: dict) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p, spec)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        timeout = int(spec.get("timeout_ms", 60000))
        page.goto(spec["url"])
        page.get_by_text(spec["study"]).first.wait_for(timeout=timeout)  # "1. <study>" in the studies list
        out = {"study_listed": True}
        page.screenshot(path=str(Path(spec["screenshots"]) / "optuna-studies.png"))
        page.get_by_text(spec["study"]).first.click()
        page.wait_for_url("**/studies/**", timeout=timeout)
        page.get_by_text("Best Trial").first.wait_for(timeout=timeout)
        page.wait_for_timeout(1000)  # let the plots draw
        out.update(study_url=page.url, body_text=page.inner_text("body"))
        page.screenshot(path=str(Path(spec["screenshots"]) / "optuna-study.png"))
        browser.close()
    return out


if __name__ == "__main__":
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps({"mlflow": mlflow, "report": report, "optuna": optuna}[mode](spec)))
