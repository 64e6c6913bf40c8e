// The imagegate page: choose a model, add images or URLs, classify them through the public API.
// Every model kind's answer has its view: classes (the best, or every label above a multi-label model's
// threshold), an embedding (its dimension and first values), detections (boxes, labels and keypoints drawn
// over the uploaded image, and listed as text) or raw output tensors.
//
// Security: everything the server or the user supplies (labels, file names, URLs, error
// messages) reaches the page through textContent and createElement only, never as HTML.
// Remote URLs are never loaded by the page itself; only the server fetches them.
"use strict";

(() => {
  const MAX_IN_FLIGHT = 4; // requests at a time; each upload is its own request
  const URLS_PER_REQUEST = 4; // small groups, so results arrive steadily
  const MAX_RETRIES = 2; // for 503 answers that carry Retry-After
  const MAX_RETRY_WAIT_S = 10;
  const MAX_NAMES_SHOWN = 4;
  const EMBEDDING_VALUES_SHOWN = 8;
  // Detection marks keep their size on screen whatever the image's display scale (CSS pixels).
  const MARK = { labelPx: 12, keypointPx: 3.5, labelGapPx: 3 };
  const BOX_COLOURS = 6; // .class-0 … .class-5 in style.css, by class id; the label text says the class
  const SVG = "http://www.w3.org/2000/svg";

  const ui = {
    form: document.getElementById("predict-form"),
    model: document.getElementById("model"),
    modelStatus: document.getElementById("model-status"),
    dropZone: document.getElementById("drop-zone"),
    dropHint: document.getElementById("drop-hint"),
    files: document.getElementById("files"),
    camera: document.getElementById("camera"),
    fileSummary: document.getElementById("file-summary"),
    clearFiles: document.getElementById("clear-files"),
    urls: document.getElementById("urls"),
    classify: document.getElementById("classify"),
    formMessage: document.getElementById("form-message"),
    progressCount: document.getElementById("progress-count"),
    progressFailed: document.getElementById("progress-failed"),
    progressLatest: document.getElementById("progress-latest"),
    results: document.getElementById("results"),
  };

  const state = { models: new Map(), files: [], running: false, objectUrls: [] };
  // The server's own limits, as GET /v1/models tells them; the page assumes none of its own.
  const limits = { maxUploadBytes: null, maxImagesPerRequest: null };

  // ---- small DOM helpers (text only) ----

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatBytes(n) {
    if (n >= 1024 * 1024) return `${Number((n / (1024 * 1024)).toFixed(1))} MiB`;
    if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
    return `${n} bytes`;
  }

  function formatPercent(score) {
    if (typeof score !== "number" || !Number.isFinite(score)) return "n/a";
    const pct = score * 100;
    if (pct > 0 && pct < 0.05) return "<0.1%";
    return `${pct.toFixed(1)}%`;
  }

  function formatMs(ms) {
    if (typeof ms !== "number" || !Number.isFinite(ms)) return "";
    // No-break spaces keep "123 ms" together when the line wraps.
    return ms >= 1000 ? `${(ms / 1000).toFixed(1)}\u00a0s` : `${Math.round(ms)}\u00a0ms`;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- talking to the API ----

  function apiError(code, message) {
    return { code: String(code), message: String(message) };
  }

  function errorFromBody(response, body) {
    const error = body && typeof body === "object" ? body.error : null;
    if (error && typeof error === "object" && typeof error.message === "string") {
      return apiError(error.code || `http_${response.status}`, error.message);
    }
    const reason = `${response.status} ${response.statusText || ""}`.trim();
    return apiError(`http_${response.status}`, `The server answered ${reason}.`);
  }

  async function requestJson(url, init) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", cache: "no-store", ...init });
    } catch {
      throw apiError("network_error", "Could not reach the server. Check the connection and try again.");
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    return { response, body };
  }

  function retryAfterSeconds(response) {
    const value = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    return Number.isFinite(value) && value >= 0 ? Math.min(value, MAX_RETRY_WAIT_S) : null;
  }

  function predictUrl(model) {
    return `v1/models/${encodeURIComponent(model)}:predict`;
  }

  function uploadRequest(file) {
    const form = new FormData();
    form.append("image", file, file.name || "pasted-image");
    return { method: "POST", body: form };
  }

  function urlRequest(urls) {
    return {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ instances: urls.map((url) => ({ url })) }),
    };
  }

  // ---- the model list ----

  async function loadModels() {
    let models;
    try {
      const { response, body } = await requestJson("v1/models");
      if (!response.ok) throw errorFromBody(response, body);
      const list = body && Array.isArray(body.models) ? body.models : [];
      readLimits(body && body.limits);
      models = list.filter((m) => m && typeof m.name === "string" && m.name);
    } catch (error) {
      showNoModels(`Could not load the list of models: ${error.message || error} Reload the page to try again.`);
      return;
    }
    if (models.length === 0) {
      showNoModels(
        "This server has no models configured, so there is nothing to classify with. " +
          "Ask its operator to add a model to the configuration.",
      );
      return;
    }
    ui.model.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
    models.forEach((m) => state.models.set(m.name, m));
    ui.model.disabled = false;
    ui.classify.disabled = false;
    describeModel();
  }

  function readLimits(given) {
    const positive = (value) => (Number.isSafeInteger(value) && value > 0 ? value : null);
    limits.maxUploadBytes = positive(given && given.max_upload_bytes);
    limits.maxImagesPerRequest = positive(given && given.max_images_per_request);
    if (limits.maxUploadBytes !== null) {
      ui.dropHint.textContent = `Up to ${formatBytes(limits.maxUploadBytes)} per image. ${ui.dropHint.textContent}`;
    }
  }

  function showNoModels(text) {
    ui.model.replaceChildren(new Option("No models available", ""));
    ui.model.disabled = true;
    ui.classify.disabled = true;
    ui.modelStatus.textContent = text;
    ui.modelStatus.classList.add("problem");
  }

  const KIND_NAMES = {
    classification: "Classifier",
    multi_label: "Multi-label classifier",
    embedding: "Embeddings (vectors for similarity search)",
    detection: "Detector (draws boxes, labels and keypoints on the image)",
  };

  function describeModel() {
    const model = state.models.get(ui.model.value);
    if (!model) return;
    const parts = [];
    const kind = model.output && model.output.kind;
    const multiLabel = kind === "classification" && typeof model.threshold === "number";
    if (kind) parts.push(KIND_NAMES[multiLabel ? "multi_label" : kind] || `Output: ${kind}`);
    const input = model.input || {};
    const shape = Array.isArray(input.shape) ? input.shape : [];
    if (input.encoding === "bytes") parts.push("decodes the images itself");
    else if (shape.length >= 3) parts.push(`input ${shape[1]}×${shape[2]}`);
    if (multiLabel) {
      const cap = model.top_k ? `, at most ${model.top_k}` : "";
      parts.push(`shows every label scoring above ${model.threshold}${cap}`);
    } else if (kind === "classification" && model.top_k) {
      parts.push(`shows the top ${model.top_k} classes`);
    }
    ui.modelStatus.textContent = parts.length ? `${parts.join(", ")}.` : "";
  }

  // ---- choosing images ----

  function addFiles(fileList) {
    ui.formMessage.textContent = "";
    const known = new Set(state.files.map(fileKey));
    for (const file of fileList) {
      if (!known.has(fileKey(file))) {
        state.files.push(file);
        known.add(fileKey(file));
      }
    }
    showSelection();
  }

  function fileKey(file) {
    return `${file.name}\u0000${file.size}\u0000${file.lastModified}`;
  }

  function showSelection() {
    const n = state.files.length;
    ui.clearFiles.hidden = n === 0;
    if (n === 0) {
      ui.fileSummary.textContent = "No images chosen.";
      return;
    }
    const names = state.files.slice(0, MAX_NAMES_SHOWN).map((f) => f.name || "pasted image");
    const more = n > MAX_NAMES_SHOWN ? ` and ${n - MAX_NAMES_SHOWN} more` : "";
    ui.fileSummary.textContent = `${n} ${n === 1 ? "image" : "images"} chosen: ${names.join(", ")}${more}.`;
  }

  function clearSelection() {
    state.files = [];
    showSelection();
    ui.dropZone.focus();
  }

  function addDroppedUrls(text) {
    const urls = text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith("#"));
    if (urls.length === 0) return;
    const current = ui.urls.value.trim();
    ui.urls.value = (current ? `${current}\n` : "") + urls.join("\n");
  }

  function parseUrls(text) {
    return text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter(Boolean);
  }

  // ---- progress ----

  class Run {
    constructor(total) {
      this.total = total;
      this.finished = 0;
      this.failed = 0;
      this.update("");
    }

    itemDone(ok, summary) {
      this.finished += 1;
      if (!ok) this.failed += 1;
      this.update(summary);
    }

    update(summary) {
      ui.progressCount.textContent = `${this.finished} of ${this.total} done`;
      ui.progressFailed.textContent = this.failed ? `, ${this.failed} failed` : "";
      ui.progressLatest.textContent = summary ? `. Latest: ${summary}` : "";
    }
  }

  // ---- one card per image ----

  class Card {
    constructor(run, { file = null, url = null, whole = false }) {
      this.run = run;
      this.file = file;
      this.url = url;
      this.name = file ? file.name || "pasted image" : url;
      this.finished = false;
      this.image = null; // the upload's thumbnail, once it shows
      this.root = element("li", "card");
      this.root.dataset.state = "waiting";
      this.root.setAttribute("aria-busy", "true");
      this.root.append(this.thumbnail(whole));
      this.body = element("div", "card-body");
      this.title = element("h3", "card-title");
      setBreakableText(this.title, this.name);
      this.status = element("p", "card-status", "Waiting…");
      this.body.append(this.title, this.status);
      this.root.append(this.body);
      ui.results.append(this.root);
    }

    thumbnail(whole) {
      if (!this.file) return placeholder("Fetched by the server");
      // A detector's boxes may be anywhere on the image: show all of it from the start, not a cropped cover.
      const image = element("img", whole ? "thumb whole" : "thumb");
      const objectUrl = URL.createObjectURL(this.file);
      state.objectUrls.push(objectUrl);
      image.alt = this.name;
      image.decoding = "async";
      image.addEventListener("error", () => image.replaceWith(placeholder("No preview")), { once: true });
      image.src = objectUrl;
      this.image = image;
      return image;
    }

    setStatus(text) {
      if (this.finished) return;
      this.root.dataset.state = "working";
      this.status.textContent = text;
    }

    show(prediction, answer) {
      if (this.finished) return;
      this.useSource(prediction);
      let summary;
      if (Array.isArray(prediction.classes)) {
        this.status.replaceWith(classList(prediction.classes, state.models.get(answer.name)));
        const best = prediction.classes[0];
        summary = best ? `${this.name}: ${labelOf(best)}, ${formatPercent(best.score)}` : `${this.name}: no classes`;
      } else if (Array.isArray(prediction.detections)) {
        const detections = prediction.detections.filter(isDetection);
        this.status.replaceWith(detectionList(detections));
        if (this.image && hasPixelBoxes(state.models.get(answer.name))) drawDetections(this.image, detections);
        summary = `${this.name}: ${detectionSummary(detections)}`;
      } else if (prediction.embedding !== undefined) {
        const values = embeddingValues(prediction);
        this.status.replaceWith(embeddingView(values));
        summary = `${this.name}: embedding of ${values.length} dimensions`;
      } else if (prediction.outputs && typeof prediction.outputs === "object") {
        this.status.replaceWith(outputList(prediction.outputs));
        summary = `${this.name}: raw outputs`;
      } else {
        this.status.replaceWith(element("p", "card-status", "The server sent no classes for this image."));
        summary = `${this.name}: no classes`;
      }
      this.body.append(metaLine(answer));
      this.finish("done", true, summary);
    }

    fail(error, answer = null, prediction = null) {
      if (this.finished) return;
      if (prediction) this.useSource(prediction);
      const box = element("div", "card-error");
      box.append(element("p", "error-message", error.message || "Something went wrong."));
      const code = element("p", "error-code", "Code: ");
      code.append(element("code", "", error.code || "error"));
      box.append(code);
      this.status.replaceWith(box);
      if (answer) this.body.append(metaLine(answer));
      this.finish("error", false, `${this.name}: failed, ${error.message}`);
    }

    useSource(prediction) {
      if (typeof prediction.source === "string" && prediction.source) {
        this.name = prediction.source;
        setBreakableText(this.title, prediction.source);
      }
    }

    finish(stateName, ok, summary) {
      this.finished = true;
      this.root.dataset.state = stateName;
      this.root.removeAttribute("aria-busy");
      this.run.itemDone(ok, summary);
    }
  }

  function setBreakableText(node, text) {
    // Long URLs may wrap after a slash; <wbr> elements between text nodes, still no HTML parsing.
    const pieces = text.split(/(?<=\/)/);
    node.replaceChildren();
    pieces.forEach((piece, i) => {
      if (i > 0) node.append(document.createElement("wbr"));
      node.append(document.createTextNode(piece));
    });
  }

  function placeholder(text) {
    const box = element("div", "thumb placeholder", text);
    box.setAttribute("aria-hidden", "true");
    return box;
  }

  function labelOf(item) {
    if (typeof item.label === "string" && item.label) return item.label;
    return `class ${item.class_id}`;
  }

  function classList(classes, model) {
    const list = element("ol", "classes");
    if (classes.length === 0) {
      const threshold = model && typeof model.threshold === "number" ? model.threshold : null;
      const text = threshold !== null ? `No label scores above ${threshold}.` : "No classes returned.";
      list.append(element("li", "class-row", text));
    }
    const labels = classes.map(labelOf);
    classes.forEach((item, rank) => {
      const row = element("li", rank === 0 ? "class-row best" : "class-row");
      const label = element("span", "class-label", labels[rank]);
      if (labels.indexOf(labels[rank]) !== labels.lastIndexOf(labels[rank])) {
        label.append(element("span", "class-id", ` #${item.class_id}`)); // two classes share this name
      }
      row.append(label, element("span", "class-score", formatPercent(item.score)));
      const bar = element("span", "bar");
      bar.setAttribute("aria-hidden", "true");
      const fill = element("span", "bar-fill");
      const pct = typeof item.score === "number" ? Math.max(0, Math.min(1, item.score)) * 100 : 0;
      fill.style.width = `${pct}%`; // CSSOM, which the style-src policy allows; no style attribute
      bar.append(fill);
      row.append(bar);
      list.append(row);
    });
    return list;
  }

  // ---- detections: a text list, and marks drawn over the image ----

  function isDetection(item) {
    const box = item && item.box;
    return box && ["x", "y", "width", "height"].every((k) => Number.isFinite(box[k]));
  }

  function hasPixelBoxes(model) {
    // A model that decodes images itself gets no resize from the tier, which then answers its normalised
    // boxes as they are: those are listed, not drawn.
    return !(model && model.input && model.input.encoding === "bytes");
  }

  function detectionSummary(detections) {
    if (detections.length === 0) return "nothing detected";
    const best = detections[0];
    const count = `${detections.length} ${detections.length === 1 ? "detection" : "detections"}`;
    return `${count}, best ${labelOf(best)} ${formatPercent(best.score)}`;
  }

  function detectionList(detections) {
    const list = element("ol", "detections");
    if (detections.length === 0) list.append(element("li", "detection-row", "Nothing detected above the threshold."));
    detections.forEach((item, i) => {
      const row = element("li", "detection-row");
      row.append(element("span", "detection-label", `${i + 1}. ${labelOf(item)}`));
      row.append(element("span", "class-score", formatPercent(item.score)));
      const { x, y, width, height } = item.box;
      const where = `at x ${Math.round(x)}, y ${Math.round(y)}, ${Math.round(width)}\u00d7${Math.round(height)} px`;
      const points = Array.isArray(item.keypoints) ? item.keypoints.length : 0;
      row.append(element("span", "detection-where", points ? `${where}, ${points} keypoints` : where));
      list.append(row);
    });
    return list;
  }

  function svgElement(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    return node;
  }

  function drawDetections(image, detections) {
    // The overlay's viewBox is the image's own pixels (EXIF-upright, as the answer's are) and it scales as the
    // image does (object-fit: contain = preserveAspectRatio meet), so every box sits where the answer says.
    const view = element("figure", "detection-view");
    image.replaceWith(view);
    image.classList.add("whole"); // already, when the model list said the model is a detector
    const overlay = svgElement("svg", { class: "overlay", preserveAspectRatio: "xMidYMid meet" });
    overlay.setAttribute("aria-hidden", "true"); // the card's list says the same in words
    view.append(image, overlay);
    const draw = () => {
      overlay.setAttribute("viewBox", `0 0 ${image.naturalWidth} ${image.naturalHeight}`);
      overlay.replaceChildren(...detections.map((item, i) => detectionMarks(item, i)));
      new ResizeObserver(() => sizeMarks(image, overlay)).observe(image);
    };
    if (image.complete && image.naturalWidth) draw();
    else image.addEventListener("load", draw, { once: true });
  }

  function detectionMarks(item, index) {
    const classId = Number.isSafeInteger(item.class_id) ? item.class_id : 0;
    const group = svgElement("g", { class: `detection class-${Math.abs(classId) % BOX_COLOURS}` });
    group.dataset.index = String(index);
    const { x, y, width, height } = item.box;
    for (const part of ["box-halo", "box"]) {
      group.append(svgElement("rect", { class: part, x, y, width, height, "vector-effect": "non-scaling-stroke" }));
    }
    const points = Array.isArray(item.keypoints) ? item.keypoints : [];
    for (const point of points.filter((p) => Array.isArray(p) && p.every(Number.isFinite))) {
      group.append(svgElement("circle", { class: "keypoint", cx: point[0], cy: point[1], r: 0 }));
    }
    const label = svgElement("text", { class: "box-label", x, y });
    label.textContent = `${index + 1}. ${labelOf(item)} ${formatPercent(item.score)}`;
    group.append(label);
    return group;
  }

  function sizeMarks(image, overlay) {
    // Marks are in the image's pixels; their sizes are wanted in CSS pixels, so they follow the display scale.
    const scale = Math.min(image.clientWidth / image.naturalWidth, image.clientHeight / image.naturalHeight);
    if (!(scale > 0)) return;
    const px = (n) => n / scale;
    for (const label of overlay.querySelectorAll(".box-label")) {
      label.setAttribute("font-size", px(MARK.labelPx));
      const rect = label.parentNode.querySelector(".box");
      const top = Number(rect.getAttribute("y"));
      // Above the box when there is room, else just inside its top edge.
      const above = top - px(MARK.labelGapPx);
      const inside = top + px(MARK.labelGapPx + MARK.labelPx);
      label.setAttribute("y", above - px(MARK.labelPx) >= 0 ? above : inside);
      label.setAttribute("x", Number(rect.getAttribute("x")) + px(MARK.labelGapPx));
    }
    for (const point of overlay.querySelectorAll(".keypoint")) point.setAttribute("r", px(MARK.keypointPx));
  }

  function embeddingValues(prediction) {
    // A JSON list, or (when a client asks for it) base64 of little-endian float32.
    if (Array.isArray(prediction.embedding)) return prediction.embedding.map(Number);
    if (typeof prediction.embedding !== "string") return [];
    const bytes = Uint8Array.from(atob(prediction.embedding), (c) => c.charCodeAt(0));
    const view = new DataView(bytes.buffer);
    return Array.from({ length: Math.floor(bytes.length / 4) }, (_, i) => view.getFloat32(4 * i, true));
  }

  function embeddingView(values) {
    const box = element("div", "embedding");
    box.append(element("p", "embedding-dimension", `Embedding: ${values.length} dimensions`));
    const shown = values.slice(0, EMBEDDING_VALUES_SHOWN).map((v) => Number(v.toPrecision(4)));
    const rest = values.length > shown.length ? ", …" : "";
    box.append(element("code", "embedding-values", `[${shown.join(", ")}${rest}]`));
    return box;
  }

  function outputList(outputs) {
    const list = element("dl", "outputs");
    for (const [name, value] of Object.entries(outputs)) {
      list.append(element("dt", "", name), element("dd", "", compactNumbers(value)));
    }
    return list;
  }

  function compactNumbers(value) {
    const flat = [value].flat(Infinity);
    const shown = flat.slice(0, 8).map((v) => (typeof v === "number" ? Number(v.toPrecision(4)) : String(v)));
    const rest = flat.length > shown.length ? `, … (${flat.length} values)` : "";
    return `[${shown.join(", ")}${rest}]`;
  }

  function metaLine(answer) {
    const parts = [];
    if (answer.name) parts.push(answer.version != null ? `${answer.name} v${answer.version}` : answer.name);
    const server = formatMs(answer.serverMs);
    if (server) parts.push(`server\u00a0${server}`);
    const total = formatMs(answer.totalMs);
    if (total) parts.push(`total\u00a0${total}`);
    return element("p", "card-meta", parts.join(" · "));
  }

  // ---- a run: cards, requests, answers ----

  function answerInfo(body, totalMs) {
    const model = body && typeof body.model === "object" && body.model ? body.model : {};
    return {
      name: typeof model.name === "string" ? model.name : "",
      version: typeof model.version === "number" ? model.version : null,
      serverMs: body ? body.timing_ms : null,
      totalMs,
    };
  }

  function applyAnswer(cards, body, totalMs) {
    const predictions = body && Array.isArray(body.predictions) ? body.predictions : [];
    const answer = answerInfo(body, totalMs);
    cards.forEach((card, i) => {
      const prediction = predictions[i];
      if (!prediction || typeof prediction !== "object") {
        card.fail(apiError("missing_answer", "The server sent no answer for this image."), answer);
      } else if (prediction.error) {
        const e = prediction.error;
        card.fail(apiError(e.code || "item_failed", e.message || "This image failed."), answer, prediction);
      } else {
        card.show(prediction, answer);
      }
    });
  }

  async function sendJob(model, cards) {
    const init = cards[0].file ? uploadRequest(cards[0].file) : urlRequest(cards.map((c) => c.url));
    const started = performance.now();
    for (let attempt = 0; ; attempt += 1) {
      cards.forEach((c) => c.setStatus("Classifying…"));
      let result;
      try {
        result = await requestJson(predictUrl(model), init);
      } catch (error) {
        cards.forEach((c) => c.fail(error));
        return;
      }
      const { response, body } = result;
      if (response.ok) {
        applyAnswer(cards, body, performance.now() - started);
        return;
      }
      const wait = retryAfterSeconds(response);
      if (response.status === 503 && wait !== null && attempt < MAX_RETRIES) {
        cards.forEach((c) => c.setStatus(`The server is busy; trying again in ${wait} s…`));
        await sleep(wait * 1000);
        continue;
      }
      const error = errorFromBody(response, body);
      cards.forEach((c) => c.fail(error));
      return;
    }
  }

  async function runPool(jobs, limit, work) {
    let next = 0;
    async function worker() {
      while (next < jobs.length) {
        const job = jobs[next];
        next += 1;
        await work(job);
      }
    }
    await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  }

  function clearResults() {
    state.objectUrls.forEach((u) => URL.revokeObjectURL(u));
    state.objectUrls = [];
    ui.results.replaceChildren();
  }

  function planJobs(run, model) {
    const chosen = state.models.get(model);
    const whole = Boolean(chosen && chosen.output && chosen.output.kind === "detection");
    const jobs = [];
    for (const file of state.files) {
      const card = new Card(run, { file, whole });
      if (limits.maxUploadBytes !== null && file.size > limits.maxUploadBytes) {
        const sizes = `${formatBytes(file.size)}; the limit is ${formatBytes(limits.maxUploadBytes)} per image`;
        card.fail(apiError("too_large", `Too large: ${sizes}. Not sent.`));
      } else {
        jobs.push([card]);
      }
    }
    const urlCards = parseUrls(ui.urls.value).map((url) => new Card(run, { url }));
    const perRequest = Math.min(URLS_PER_REQUEST, limits.maxImagesPerRequest || URLS_PER_REQUEST);
    for (let i = 0; i < urlCards.length; i += perRequest) {
      jobs.push(urlCards.slice(i, i + perRequest));
    }
    return jobs;
  }

  function setRunning(running) {
    state.running = running;
    ui.classify.setAttribute("aria-disabled", String(running));
    ui.classify.textContent = running ? "Classifying…" : "Classify";
    ui.results.setAttribute("aria-busy", String(running));
  }

  async function onSubmit(event) {
    event.preventDefault();
    if (state.running || ui.classify.disabled) return;
    const model = ui.model.value;
    const total = state.files.length + parseUrls(ui.urls.value).length;
    if (!model) return;
    if (total === 0) {
      ui.formMessage.textContent = "Add an image or paste an image URL first.";
      return;
    }
    ui.formMessage.textContent = "";
    clearResults();
    const run = new Run(total);
    const jobs = planJobs(run, model);
    setRunning(true);
    try {
      await runPool(jobs, MAX_IN_FLIGHT, (cards) => sendJob(model, cards));
    } finally {
      setRunning(false);
    }
  }

  // ---- wiring ----

  function hasFiles(event) {
    return event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  }

  function isTextDropOnUrlBox(event) {
    return event.target === ui.urls && !hasFiles(event); // dropping text into the URL box works as usual
  }

  function onDrop(event) {
    if (isTextDropOnUrlBox(event)) return;
    event.preventDefault();
    ui.dropZone.classList.remove("dragging");
    const transfer = event.dataTransfer;
    if (!transfer) return;
    if (transfer.files && transfer.files.length) {
      addFiles(transfer.files);
    } else {
      addDroppedUrls(transfer.getData("text/uri-list") || transfer.getData("text/plain") || "");
    }
  }

  function offerCamera() {
    // Desktop browsers ignore `capture`, so the button only appears where there is a touch screen.
    const touch = navigator.maxTouchPoints > 0 || window.matchMedia("(any-pointer: coarse)").matches;
    document.getElementById("camera-choice").hidden = !touch;
  }

  function wire() {
    ui.form.addEventListener("submit", onSubmit);
    ui.model.addEventListener("change", describeModel);
    ui.dropZone.addEventListener("click", () => ui.files.click());
    ui.dropZone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        ui.files.click();
      }
    });
    for (const input of [ui.files, ui.camera]) {
      input.addEventListener("change", () => {
        addFiles(input.files);
        input.value = ""; // choosing the same file again fires change again
      });
    }
    ui.clearFiles.addEventListener("click", clearSelection);
    ui.urls.addEventListener("input", () => {
      ui.formMessage.textContent = "";
    });
    // The whole page accepts drops, so a near miss does not navigate away to the file.
    window.addEventListener("dragover", (event) => {
      if (isTextDropOnUrlBox(event)) return;
      event.preventDefault();
      if (hasFiles(event)) ui.dropZone.classList.add("dragging");
    });
    window.addEventListener("dragleave", (event) => {
      if (!event.relatedTarget) ui.dropZone.classList.remove("dragging");
    });
    window.addEventListener("drop", onDrop);
    document.addEventListener("paste", (event) => {
      const files = event.clipboardData ? Array.from(event.clipboardData.files) : [];
      if (files.length) {
        event.preventDefault();
        addFiles(files);
      }
    });
  }

  wire();
  offerCamera();
  loadModels();
})();
