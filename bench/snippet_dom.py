"""What the snippet costs a large page: swapping numbers on a 5,000-node landing page in Chromium.

The page is the third-party template of the browser tests (tests/fixtures/landing/index.html)
with a generated catalog appended until its body holds 5,000 nodes (elements and text): product
cards with sizes, prices and article numbers, every fourth with the site's number split across
two spans, a tel: link and a title.  The bench serves the page, the snippet and a stand-in for
the tracker's ``/v/start`` (a fixed answer of the real shape, with a CSS selector and two
numbers to replace: the DOM work is measured, not the API) and drives Debian's ``chromium``
through Playwright.

A page-side wrapper around ``fetch`` holds the snippet's answer back until the page has loaded
and settled, then hands it over when the bench says so; the snippet swaps in that same task.
Two steps are measured on each page:

* **initial**: the answer handed over, the whole page swapped;
* **later**: the page appends 40 more cards (about 1,100 nodes, a "show more" button); the
  snippet's MutationObserver swaps them in a task of its own.

For each step a Chromium performance trace (``browser.start_tracing``, Playwright's public API)
gives, on the page's main thread from the step's start until the snippet's follow-up and one
frame are done: the **CPU time** of every task (thread time, which the load of a shared machine
inflates far less than wall time), the **forced layouts and style recalculations** (Layout and
UpdateLayoutTree events that carry a JavaScript stack: what layout thrash is made of; ``by
snippet`` counts those whose stack is in v.js) and the **long tasks** (over 50 ms of CPU).  The
page's own clock gives the wall time until the swapping task ended (**swap**) and until the page
showed the result (**settled**).

Three variants run on the same page, alternated, ``--runs`` times each, medians printed: the
current snippet (**after**), the snippet before issue #20's matching (**before**, ``git show
REV:tracker/static/astertrack.js``) and **none** (no snippet: what the page costs by itself, so
after − none is what the snippet adds).  ``--throttle 4`` slows Chromium's CPU four times
(DevTools' "mid-tier mobile").

    python bench/snippet_dom.py                      # 5 runs each
    python bench/snippet_dom.py --throttle 4         # a slower phone
    python bench/snippet_dom.py --before-rev HEAD~3  # compare with another revision

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "tests" / "fixtures" / "landing" / "index.html"
SNIPPET = REPO / "tracker" / "static" / "astertrack.js"
BEFORE_REV = "9973e23~1"  # the snippet before issue #20's number matching
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline",
                    "disabled-by-default-devtools.timeline.stack", "blink.user_timing"]
TARGET_NODES = 5000
SHOWN = "8 (490) 003-00-00"
ANSWER = {"live": True, "sid": "bench-session", "kind": "pool", "number": "+74900030000", "display": SHOWN,
          "expires_at": None, "heartbeat": 0, "selectors": [".ask-phone"], "replace": ["+74951234567", "+78005553535"]}

CARD = """<article class="card" id="card-{i}">
  <h3 class="card-title">Окно REHAU Blitz {w}×{h} мм</h3>
  <p class="sku">Арт. {sku}</p>
  <p class="price"><span>от</span> <b>{price}</b> ₽</p>
  <ul class="specs"><li>Профиль 70 мм</li><li>Стеклопакет {glass}-камерный</li><li>Гарантия 10 лет</li></ul>
  {phone}
</article>
"""
PHONE = """<p class="ask">Уточнить наличие: <span class="ask-code">8 (495)</span> <span class="ask-phone">123-45-67</span></p>
  <a class="ask-call" href="tel:+74951234567" title="Позвонить 8 (495) 123-45-67">Позвонить</a>"""

# Runs before the page's scripts.  The snippet's /v/start answer is held back until
# __bench.release(), then handed over as a settled Response-like object, so the snippet starts
# swapping in the task that called release().  A step is swapped when the page's last number
# shows the new one (the footer's for the whole page, the last added card's call link for the
# later content), and settled one frame after that.
SHIM = """
(() => {
  const real = window.fetch.bind(window), b = window.__bench = { waiting: null };
  window.fetch = function (url, options) {
    if (!String(url).endsWith('/v/start')) return real(url, options);
    return real(url, options).then((r) => r.json()).then((answer) => new Promise((resolve) => {
      b.waiting = () => resolve({ ok: true, json: () => Promise.resolve(answer) });
    }));
  };
  function step(action, swapped) {
    return new Promise((done) => {
      performance.mark('bench-start');
      const t0 = performance.now();
      action();
      const poll = () => {
        if (window.__astertrack && !swapped() && performance.now() - t0 < 5000) return setTimeout(poll, 0);
        const swap = performance.now() - t0;
        requestAnimationFrame(() => setTimeout(() => {
          performance.mark('bench-end');
          done({ swap, settled: performance.now() - t0 });
        }, 0));
      };
      setTimeout(poll, 0);
    });
  }
  const last = (css) => [...document.querySelectorAll(css)].pop();
  b.release = () => step(() => { if (b.waiting) b.waiting(); },
                         () => last('#footer-tel').textContent !== '+7 (495) 123-45-67');
  b.more = (html) => step(() => document.getElementById('catalog-more').insertAdjacentHTML('beforeend', html),
                          () => last('.ask-call').getAttribute('href') !== 'tel:+74951234567');
  b.thrash = () => step(() => {   // the detector's control: a write then a layout read, 20 times
    const ps = document.querySelectorAll('.sku');
    for (let i = 0; i < 20; i++) { ps[i].textContent += ' '; document.body.offsetHeight; }
  }, () => true);
})();
"""
COUNT_NODES = """() => { let n = 0; const w = document.createTreeWalker(document.body, 0xFFFFFFFF);
                         while (w.nextNode()) n++; return n; }"""


def cards(start: int, count: int) -> str:
    return "".join(CARD.format(i=i, w=600 + 50 * (i % 20), h=1200 + 100 * (i % 6), sku=10234 + 7 * i,
                               price=f"{6990 + 500 * (i % 40):,}".replace(",", " "), glass=2 + i % 2,
                               phone=PHONE if i % 4 == 0 else "")
                   for i in range(start, start + count))


def build_page(card_count: int) -> str:
    page = TEMPLATE.read_text(encoding="utf-8")
    catalog = (f'<section class="container catalog" id="catalog-big"><h2>Каталог</h2>{cards(0, card_count)}'
               '<div id="catalog-more"></div></section>\n')
    page = page.replace('<footer class="site-footer">', catalog + '<footer class="site-footer">', 1)
    return page.replace("<!--astertrack-->", '<script async src="/ct/v.js?s={which}" data-key="bench"></script>')


def serve(pages: dict[str, str], snippets: dict[str, bytes]):
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    @Request.application
    def app(request: Request) -> Response:
        if request.path == "/ct/v.js":
            return Response(snippets.get(request.args.get("s", ""), b""), mimetype="application/javascript")
        if request.path == "/ct/v/start":
            return Response(json.dumps(ANSWER), mimetype="application/json")
        if request.path.startswith("/ct/v/"):
            return Response(status=204)
        if request.path != "/":
            return Response(status=404)
        return Response(pages["page"].replace("{which}", request.args.get("s", "none")), mimetype="text/html")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def trace_figures(raw: bytes) -> dict[str, float]:
    """Main-thread CPU, forced layouts and long tasks between the step's two marks."""
    events = json.loads(raw)
    events = events["traceEvents"] if isinstance(events, dict) else events
    start = next(e for e in events if e.get("name") == "bench-start")
    end = next(e for e in events if e.get("name") == "bench-end")
    thread = (start["pid"], start["tid"])
    window = [e for e in events if (e["pid"], e["tid"]) == thread and e.get("ph") == "X"
              and e["ts"] <= end["ts"] and e["ts"] + e.get("dur", 0) >= start["ts"]]
    tasks = [e for e in window if e["name"] == "RunTask"]
    first = next((t for t in tasks if t["ts"] <= start["ts"] <= t["ts"] + t["dur"]), None)
    forced = [e for e in window if e["name"] in ("Layout", "UpdateLayoutTree")
              and e.get("args", {}).get("beginData", {}).get("stackTrace")]
    by_snippet = [e for e in forced if any("v.js" in frame.get("url", "")
                                           for frame in e["args"]["beginData"]["stackTrace"])]
    return {
        "cpu_ms": sum(t.get("tdur", 0) for t in tasks) / 1000,
        "step_task_cpu_ms": (first.get("tdur", 0) / 1000) if first else 0.0,
        "forced_layouts": sum(1 for e in forced if e["name"] == "Layout"),
        "forced_style": sum(1 for e in forced if e["name"] == "UpdateLayoutTree"),
        "forced_by_snippet": len(by_snippet),
        "long_tasks": sum(1 for t in tasks if t.get("tdur", 0) > 50_000),
        "longest_task_cpu_ms": max((t.get("tdur", 0) for t in tasks), default=0) / 1000,
    }


def one_run(browser, url: str, which: str, throttle: float, more_html: str, control: bool = False) -> dict:
    context = browser.new_context()
    context.add_init_script(SHIM)
    page = context.new_page()
    if throttle > 1:
        context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": throttle})
    page.goto(f"{url}/?s={which}", wait_until="load")
    if which != "none":
        page.wait_for_function("window.__bench.waiting !== null")
    nodes = page.evaluate(COUNT_NODES)
    page.wait_for_timeout(300)  # the load's own work done
    figures: dict = {"nodes": nodes}
    steps = [("initial", "() => window.__bench.release()", None),
             ("later", "(html) => window.__bench.more(html)", more_html)]
    if control:
        steps.append(("control", "() => window.__bench.thrash()", None))
    for step, script, arg in steps:
        browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
        timing = page.evaluate(script, arg) if arg is not None else page.evaluate(script)
        figures[step] = {**timing, **trace_figures(browser.stop_tracing())}
        page.wait_for_timeout(200)
    figures["header"] = " ".join(page.text_content("#hdr-phone").split())
    figures["asks_right"] = page.evaluate(f"""() => [...document.querySelectorAll('.ask')]
        .filter(p => p.textContent === 'Уточнить наличие: {SHOWN}').length""")
    figures["asks"] = page.evaluate("() => document.querySelectorAll('.ask').length")
    context.close()
    return figures


def size_catalog(browser, url: str, pages: dict[str, str]) -> int:
    """How many catalog cards bring the page's body to TARGET_NODES."""
    counts = []
    for card_count in (0, 20):
        pages["page"] = build_page(card_count)
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/?s=none")
        counts.append(page.evaluate(COUNT_NODES))
        context.close()
    return max(1, round((TARGET_NODES - counts[0]) / ((counts[1] - counts[0]) / 20)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--throttle", type=float, default=1.0, help="Chromium CPU slow-down factor (1 = none)")
    parser.add_argument("--before-rev", default=BEFORE_REV, help="git revision of the 'before' snippet")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    snippets = {"after": SNIPPET.read_bytes()}
    try:
        snippets["before"] = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{args.before_rev}:tracker/static/astertrack.js"],
            check=True, capture_output=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        print(f"no 'before' snippet at {args.before_rev}: measuring the current one only", flush=True)
    variants = [*snippets, "none"]
    pages: dict[str, str] = {}
    server = serve(pages, snippets)
    url = f"http://127.0.0.1:{server.server_port}"
    results: dict[str, list] = {name: [] for name in variants}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            card_count = size_catalog(browser, url, pages)
            pages["page"] = build_page(card_count)
            more_html = cards(card_count, 40)
            control = one_run(browser, url, "after", args.throttle, more_html, control=True)["control"]
            for _ in range(args.runs):
                for name in variants:
                    results[name].append(one_run(browser, url, name, args.throttle, more_html))
            browser.close()
    finally:
        server.shutdown()
        server.server_close()

    nodes = results["after"][0]["nodes"]
    print(f"page: {nodes} nodes in <body> ({card_count} catalog cards; 'later' adds 40 cards), "
          f"CPU throttling {args.throttle:g}x, {args.runs} runs of each variant, medians")
    print(f"detector control (20 writes each followed by a layout read): {control['forced_layouts']} forced layouts, "
          f"{control['forced_style']} forced style recalcs")
    summary: dict[str, object] = {"nodes": nodes, "throttle": args.throttle, "runs": args.runs,
                                  "control_forced_layouts": control["forced_layouts"]}
    keys = ("step_task_cpu_ms", "cpu_ms", "swap", "settled", "longest_task_cpu_ms", "long_tasks", "forced_layouts",
            "forced_style", "forced_by_snippet")
    columns = [(step, name) for step in ("initial", "later") for name in variants]
    print(f"{'median':22}" + "".join(f"{name + ' ' + step:>17}" for step, name in columns))
    for key in keys:
        row = ""
        for step, name in columns:
            value = statistics.median(run[step][key] for run in results[name])
            summary[f"{name}_{step}_{key}"] = round(value, 2)
            row += f"{value:17.1f}"
        print(f"{key:22}" + row)
    for name in snippets:
        last = results[name][-1]
        print(f"{name}: header shows {last['header']!r}; {last['asks_right']} of {last['asks']} catalog numbers "
              f"split across two spans read 'Уточнить наличие: {SHOWN}'")
        summary[f"{name}_split_swapped"] = last["asks_right"]
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
