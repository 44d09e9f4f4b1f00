// The page's only script: send the upload to this server, show its answer, follow the heatmap job.
// Every text comes from the server (the answer itself, or the page's data block), and is placed with
// textContent, never as HTML. No other origin is ever contacted.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const T = data.texts;
  const $ = (id) => document.getElementById(id);
  const form = $("analyse");
  const input = $("files");
  const drop = $("drop");
  const EXPLAIN_DEADLINE_MS = 5 * 60 * 1000;
  let run = 0; // a newer upload makes older polls stop
  let sent = null; // the form of the upload shown: the DICOM SR is asked for with the same files

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function setStatus(text, busy) {
    $("status").textContent = text || "";
    $("progress").hidden = !busy;
  }

  function showError(message) {
    setStatus("");
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function chosen() {
    const n = input.files ? input.files.length : 0;
    $("chosen").textContent = n ? fill(T.files_chosen, { n: n }) : "";
  }

  input.addEventListener("change", chosen);
  ["dragenter", "dragover"].forEach((type) =>
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((type) =>
    drop.addEventListener(type, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      chosen();
    }
  });

  function renderAnswer(view) {
    const box = $("answer");
    box.replaceChildren();
    if (!view.diagnosis) {
      const refusal = el("div", "refusal");
      refusal.setAttribute("role", "alert");
      refusal.append(el("p", "refusal-title", view.refusal.title), el("p", null, view.refusal.message));
      box.append(refusal);
    } else {
      box.append(el("p", "conclusion", view.title));
      const chart = el("div", "bars");
      chart.setAttribute("role", "table");
      chart.setAttribute("aria-label", view.probabilities_heading);
      box.append(el("h3", null, view.probabilities_heading), chart);
      view.probabilities.forEach((row) => {
        const line = el("div", row.top ? "bar top" : "bar");
        line.setAttribute("role", "row");
        const track = el("div", "track");
        const fillBar = el("div", "fill");
        // The width is the probability itself; at least a sliver, so a small class is still drawn.
        fillBar.style.width = Math.max(0.5, row.share * 100).toFixed(1) + "%";
        track.append(fillBar);
        const name = el("span", "name", row.name);
        const pct = el("span", "pct", row.percent);
        [name, track, pct].forEach((c) => c.setAttribute("role", "cell"));
        line.append(name, track, pct);
        chart.append(line);
      });
      if (view.screening) box.append(el("p", "screening", view.screening));
    }
    if (view.notes && view.notes.length) {
      const notes = el("ul", "notes");
      view.notes.forEach((n) => notes.append(el("li", null, n)));
      box.append(notes);
    }
    if (view.files) {
      const details = el("details", "files");
      details.append(el("summary", null, view.slices_heading + " (" + view.files.length + ")"));
      const list = el("ol");
      view.files.forEach((f) => list.append(el("li", f.note ? "left-out" : null,
        f.note ? f.name + " (" + f.note + ")" : f.name)));
      details.append(list);
      box.append(details);
    }
    box.append(el("p", "meta", view.task), el("p", "meta model", view.model), el("p", "notice-short", view.notice));
    // DICOM uploads: the answer as a DICOM SR on request; anything else: why there is none.
    $("dicom-sr").hidden = !view.sr;
    $("sr-status").textContent = "";
    if (view.sr) {
      $("download-sr").textContent = view.sr.text;
      $("download-sr").dataset.url = view.sr.url;
      $("download-sr-hint").textContent = view.sr.hint;
    }
    $("sr-note").hidden = !view.sr_note;
    $("sr-note").textContent = view.sr_note || "";
    $("result").hidden = false;
  }

  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const link = el("a");
    link.href = url;
    link.download = filename;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60 * 1000);
  }

  $("download-sr").addEventListener("click", async () => {
    if (!sent) return;
    const button = $("download-sr");
    const myRun = run;
    button.disabled = true;
    $("sr-status").textContent = T.sr_preparing;
    try {
      const response = await fetch(button.dataset.url, { method: "POST", body: sent });
      if (myRun !== run) return;
      if (!response.ok) {
        let message = T.sr_failed;
        try {
          const body = await response.json();
          message = (body.error && body.error.message) || message;
        } catch (err) { /* not JSON: the general words */ }
        $("sr-status").textContent = message;
        return;
      }
      saveBlob(await response.blob(), "diseaseid-sr.dcm");
      $("sr-status").textContent = "";
    } catch (err) {
      if (myRun === run) $("sr-status").textContent = T.network_error;
    } finally {
      button.disabled = false;
    }
  });

  function setExplainStatus(text, busy) {
    $("explain-status").textContent = text || "";
    $("explain-progress").hidden = !busy;
  }

  function renderMaps(view) {
    const maps = $("maps");
    maps.replaceChildren();
    view.images.forEach((image) => {
      const figure = el("figure");
      const img = el("img");
      img.src = image.url;
      img.alt = image.caption;
      img.width = 224;
      img.height = 224;
      img.dataset.method = image.name;
      figure.append(img, el("figcaption", null, image.caption));
      maps.append(figure);
    });
    const link = $("download");
    link.href = view.panel_url;
    link.textContent = view.download;
    link.hidden = false;
    const dicom = $("maps-dicom");
    dicom.replaceChildren();
    dicom.hidden = !view.dicom;
    if (view.dicom) {
      dicom.append(el("span", null, view.dicom.heading));
      view.dicom.links.forEach((item) => {
        const a = el("a", null, item.text);
        a.href = item.url;
        a.download = item.filename;
        a.dataset.name = item.name;
        dicom.append(a);
      });
    }
  }

  async function followExplain(explain, myRun) {
    const section = $("heatmaps");
    section.hidden = false;
    $("maps").replaceChildren();
    $("download").hidden = true;
    $("maps-dicom").hidden = true;
    $("key-slice").hidden = !explain.key_slice;
    $("key-slice").textContent = explain.key_slice || "";
    if (explain.error || !explain.job_id) {
      setExplainStatus(explain.error || T.explain_failed, false);
      return;
    }
    setExplainStatus(explain.text || T.explain_queued, true);
    const started = Date.now();
    while (myRun === run) {
      let view;
      try {
        const response = await fetch("api/explain/" + encodeURIComponent(explain.job_id) + "?lang=" + data.lang,
                                     { headers: { Accept: "application/json" } });
        const body = await response.json();
        if (!response.ok) {
          setExplainStatus((body.error && body.error.message) || T.explain_failed, false);
          return;
        }
        view = body;
      } catch (err) {
        setExplainStatus(T.network_error, false);
        return;
      }
      if (myRun !== run) return;
      if (view.status === "finished") {
        setExplainStatus("", false);
        renderMaps(view);
        return;
      }
      if (view.status === "failed" || view.status === "refused") {
        setExplainStatus(view.text || T.explain_failed, false);
        return;
      }
      setExplainStatus(view.text, true);
      if (Date.now() - started > EXPLAIN_DEADLINE_MS) {
        setExplainStatus(T.explain_failed, false);
        return;
      }
      // The server already waited for the job (a long poll); a short pause keeps a fast failure loop gentle.
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }

  function send(formData, myRun) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      xhr.responseType = "json";
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (e) => {
        if (myRun !== run) return;
        if (e.lengthComputable && e.loaded < e.total) {
          setStatus(fill(T.uploading, { p: Math.floor((100 * e.loaded) / e.total) }), true);
        } else {
          setStatus(T.analysing, true);
        }
      });
      xhr.upload.addEventListener("load", () => { if (myRun === run) setStatus(T.analysing, true); });
      xhr.addEventListener("load", () => resolve({ status: xhr.status, body: xhr.response }));
      xhr.addEventListener("error", () => resolve({ status: 0, body: null }));
      xhr.send(formData);
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const myRun = ++run;
    showError("");
    $("result").hidden = true;
    $("heatmaps").hidden = true;
    const files = Array.from(input.files || []);
    if (!files.length) {
      showError(T.error_no_files);
      return;
    }
    const bytes = files.reduce((sum, f) => sum + f.size, 0);
    if (bytes > data.maxBytes) {
      showError(fill(T.error_upload_too_large, { limit: Math.round(data.maxBytes / 1048576) }));
      return;
    }
    const formData = new FormData(form);
    sent = null;
    $("submit").disabled = true;
    setStatus(T.analysing, true);
    const { status, body } = await send(formData, myRun);
    $("submit").disabled = false;
    if (myRun !== run) return;
    setStatus("", false);
    if (status === 0) {
      showError(T.network_error);
      return;
    }
    if (status < 200 || status >= 300 || !body || body.error) {
      showError((body && body.error && body.error.message) || T.network_error);
      return;
    }
    sent = formData;
    renderAnswer(body);
    if (body.diagnosis && body.explain) followExplain(body.explain, myRun);
  });
})();
