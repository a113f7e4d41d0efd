// bark-serve playground: GET /voices fills the picker; Speak opens WS /ws/synthesize, sends the
// /synthesize JSON, plays each binary PCM frame (s16le, 24 kHz, mono) as soon as it arrives by
// scheduling Web Audio buffers back to back, and builds a WAV from the same bytes for download.
// No framework, no build step. The page's state is mirrored on <main id="app"> as data-*
// attributes (data-state, data-bytes, data-chunks, data-voices) for people and tests alike.
"use strict";

(() => {
  const SAMPLE_RATE = 24000;
  const MAX_CHARS = 4096;
  const PEAK_BLOCK = 240; // samples per waveform column before scaling (10 ms)
  const KEY_STORAGE = "bark-serve.api-key";
  const PREFS_STORAGE = "bark-serve.prefs";
  const ACTIVE = new Set(["connecting", "queued", "generating", "streaming", "cancelling"]);

  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const form = $("form");
  const text = $("text");
  const count = $("count");
  const voice = $("voice");
  const seed = $("seed");
  const speakBtn = $("speak");
  const cancelBtn = $("cancel");
  const replayBtn = $("replay");
  const download = $("download");
  const statusEl = $("status");
  const errorEl = $("error");
  const progress = $("progress");
  const wave = $("wave");
  const chunkList = $("chunks");
  const keyInput = $("api-key");

  // --- small storage helpers (localStorage may be disabled: the page still works) ----------

  const store = {
    get(name) {
      try { return window.localStorage.getItem(name); } catch { return null; }
    },
    set(name, value) {
      try {
        if (value === null || value === "") window.localStorage.removeItem(name);
        else window.localStorage.setItem(name, value);
      } catch { /* private mode: keep it for this page only */ }
    },
  };

  const apiKey = () => (keyInput.value || "").trim();
  const authHeaders = () => (apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {});

  function savePrefs() {
    const prefs = {
      voice: voice.value,
      text_temp: $("text_temp").value,
      waveform_temp: $("waveform_temp").value,
      max_duration_s: $("max_duration_s").value,
      min_eos_p: $("min_eos_p").value,
      continuity: $("continuity").value,
    };
    store.set(PREFS_STORAGE, JSON.stringify(prefs));
  }

  function loadPrefs() {
    try { return JSON.parse(store.get(PREFS_STORAGE) || "{}") || {}; } catch { return {}; }
  }

  // --- errors: the service's {"error": {message, type, param, code}} into words ------------

  const FIELD_NAMES = {
    text: "Text", voice: "Voice", seed: "Seed", text_temp: "Text temperature",
    waveform_temp: "Waveform temperature", max_duration_s: "Max seconds per sentence",
    min_eos_p: "Stop probability", continuity: "Voice across chunks",
  };

  function describeError(err) {
    const e = err && typeof err === "object" ? err : {};
    const message = String(e.message || "unknown error");
    const code = Number(e.code) || 0;
    const param = e.param ? String(e.param).replace(/^body\./, "") : null;
    let title;
    if (code === 401) {
      title = apiKey() ? "The server refused this API key." : "This server needs an API key.";
    } else if (code === 403) {
      title = param === "origin"
        ? "The server does not accept websockets from this page's origin (see BARK_WS_ORIGINS)."
        : "Not allowed.";
    } else if (e.type === "unknown_voice") {
      title = `Unknown voice${voice.value ? ` “${voice.value}”` : ""}: pick another from the list.`;
    } else if (code === 422 || code === 400) {
      title = param && FIELD_NAMES[param] ? `Check “${FIELD_NAMES[param]}”.` : "The request was not valid.";
    } else if (code === 413) {
      title = "The request is too large.";
    } else if (code === 429) {
      title = "The queue is full. Try again in a few seconds.";
    } else if (code === 499 || e.type === "cancelled") {
      title = "Cancelled.";
    } else if (code === 503) {
      title = "The service is unavailable right now (no worker ready, or Redis down).";
    } else if (code === 504) {
      title = "Synthesis took longer than the server's deadline.";
    } else if (code >= 500) {
      title = "Generation failed on the server.";
    } else {
      title = "Something went wrong.";
    }
    const meta = [e.type, code ? `code ${code}` : null, param ? `param ${param}` : null]
      .filter(Boolean).join(" · ");
    return { title, message, meta, param, code };
  }

  function showError(err) {
    const d = describeError(err);
    errorEl.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = d.title;
    const detail = document.createElement("span");
    detail.textContent = ` ${d.message}`;
    errorEl.append(strong, detail);
    if (d.meta) {
      const small = document.createElement("small");
      small.textContent = d.meta;
      errorEl.append(small);
    }
    errorEl.hidden = false;
    const field = d.param && FIELD_NAMES[d.param] ? $(d.param) : null;
    if (field) {
      field.setAttribute("aria-invalid", "true");
      if (field.closest("details")) field.closest("details").open = true;
    }
    if (d.code === 401) $("settings").open = true;
    return d;
  }

  function clearError() {
    errorEl.hidden = true;
    errorEl.replaceChildren();
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }

  async function readError(res) {
    try {
      const body = await res.json();
      if (body && body.error) return body.error;
    } catch { /* not JSON */ }
    return { message: `${res.status} ${res.statusText}`, type: "http_error", param: null, code: res.status };
  }

  // --- voices -------------------------------------------------------------------------------

  async function loadVoices() {
    app.dataset.voices = "loading";
    const loadError = $("load-error");
    loadError.hidden = true;
    let res;
    try {
      res = await fetch("voices", { headers: authHeaders(), cache: "no-store" });
    } catch (exc) {
      loadError.textContent = `Cannot reach the server to list voices (${exc.message}).`;
      loadError.hidden = false;
      app.dataset.voices = "error";
      return;
    }
    if (!res.ok) {
      const d = describeError(await readError(res));
      loadError.textContent = `Voices: ${d.title} ${d.message}`;
      loadError.hidden = false;
      app.dataset.voices = "error";
      if (d.code === 401) { $("settings").open = true; keyInput.focus(); }
      fillVoices([]);
      return;
    }
    const body = await res.json();
    $("model-name").textContent = `model: ${body.model || "no worker yet"}`;
    const banner = $("demo-banner");
    banner.hidden = !body.demo;
    if (body.demo) {
      const warning = String(body.warning || "The audio is noise.");
      $("demo-text").textContent = warning.charAt(0).toUpperCase() + warning.slice(1);
    }
    app.dataset.demo = body.demo ? "true" : "false";
    fillVoices(Array.isArray(body.data) ? body.data : []);
    app.dataset.voices = "loaded";
  }

  function fillVoices(voices) {
    const wanted = loadPrefs().voice ?? voice.value;
    const groups = new Map();
    for (const v of voices) {
      const group = v.source === "uploaded" ? "Uploaded"
        : v.language_name || (v.language ? v.language.toUpperCase() : "Other");
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(v);
    }
    const order = [...groups.keys()].sort((a, b) => {
      const rank = (g) => (g === "English" ? 0 : g === "Uploaded" ? 2 : 1);
      return rank(a) - rank(b) || a.localeCompare(b);
    });
    voice.replaceChildren(new Option("Default voice (server's choice)", ""));
    for (const name of order) {
      const og = document.createElement("optgroup");
      og.label = name;
      for (const v of groups.get(name).sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }))) {
        og.append(new Option(v.id.replace(/^v2\//, ""), v.id));
      }
      voice.append(og);
    }
    voice.value = [...voice.options].some((o) => o.value === wanted) ? wanted : "";
    voice.disabled = false;
    app.dataset.voiceCount = String(voices.length);
  }

  // --- the character count ------------------------------------------------------------------

  function updateCount() {
    const n = [...text.value.trim()].length; // code points, as the server counts them
    count.textContent = `${n} / ${MAX_CHARS}`;
    const over = n > MAX_CHARS;
    count.classList.toggle("over", over);
    text.toggleAttribute("aria-invalid", over || n === 0);
    if (!isActive()) speakBtn.disabled = n === 0 || over;
  }

  // --- audio: playback, waveform, WAV -------------------------------------------------------

  const audio = {
    ctx: null,
    next: 0, // context time where the next chunk starts
    segments: [], // {at, duration} per scheduled buffer, for the playhead
    sources: [],
    raf: 0,
  };

  function ensureAudio() {
    if (!audio.ctx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      try { audio.ctx = new Ctx(); } catch { return null; }
    }
    if (audio.ctx.state === "suspended") audio.ctx.resume().catch(() => {});
    return audio.ctx;
  }

  function stopPlayback() {
    for (const src of audio.sources) {
      try { src.stop(); } catch { /* already stopped */ }
    }
    audio.sources = [];
    audio.segments = [];
    audio.next = 0;
    cancelAnimationFrame(audio.raf);
    audio.raf = 0;
    app.dataset.playback = "stopped";
    drawWave();
  }

  function schedule(samples) {
    const ctx = audio.ctx;
    if (!ctx || samples.length === 0) return;
    const floats = new Float32Array(samples.length);
    for (let i = 0; i < samples.length; i++) floats[i] = samples[i] / 32768;
    const buffer = ctx.createBuffer(1, floats.length, SAMPLE_RATE); // the context resamples
    buffer.copyToChannel(floats, 0);
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(ctx.destination);
    const at = Math.max(audio.next, ctx.currentTime + 0.05); // back to back, or now after a gap
    src.start(at);
    audio.next = at + buffer.duration;
    audio.segments.push({ at, duration: buffer.duration });
    audio.sources.push(src);
    src.onended = () => {
      audio.sources = audio.sources.filter((s) => s !== src);
      if (audio.sources.length === 0 && !isActive()) app.dataset.playback = "ended";
    };
    app.dataset.playback = "playing";
    if (!audio.raf) audio.raf = requestAnimationFrame(tick);
  }

  function playedSeconds() {
    const ctx = audio.ctx;
    if (!ctx) return 0;
    let played = 0;
    for (const s of audio.segments) played += Math.min(Math.max(ctx.currentTime - s.at, 0), s.duration);
    return played;
  }

  function tick() {
    drawWave();
    audio.raf = audio.sources.length || isActive() ? requestAnimationFrame(tick) : 0;
  }

  function replay() {
    if (!job || job.bytes < 2) return;
    stopPlayback();
    if (!ensureAudio()) return;
    schedule(job.samples());
  }

  function wavBlob(pcmParts, bytes) {
    const header = new ArrayBuffer(44);
    const v = new DataView(header);
    const ascii = (off, s) => { for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i)); };
    ascii(0, "RIFF"); v.setUint32(4, 36 + bytes, true); ascii(8, "WAVE");
    ascii(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, SAMPLE_RATE, true); v.setUint32(28, SAMPLE_RATE * 2, true);
    v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    ascii(36, "data"); v.setUint32(40, bytes, true);
    return new Blob([header, ...pcmParts], { type: "audio/wav" });
  }

  function drawWave() {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(wave.clientWidth * dpr));
    const height = Math.max(1, Math.round(wave.clientHeight * dpr));
    if (wave.width !== width || wave.height !== height) { wave.width = width; wave.height = height; }
    const g = wave.getContext("2d");
    const style = getComputedStyle(wave);
    g.clearRect(0, 0, width, height);
    g.fillStyle = style.getPropertyValue("--wave-axis").trim() || "#ccc";
    g.fillRect(0, Math.floor(height / 2), width, Math.max(1, dpr));
    const peaks = job ? job.peaks : [];
    if (peaks.length === 0) return;
    const mid = height / 2;
    // Scale to the loudest peak so far (at most 10x, so near-silence stays flat).
    let loudest = 0;
    for (const [lo, hi] of peaks) loudest = Math.max(loudest, -lo, hi);
    const gain = 0.95 * Math.min(10, 1 / Math.max(loudest, 1e-6));
    const played = playedSeconds() * SAMPLE_RATE / PEAK_BLOCK;
    const perColumn = peaks.length / width;
    const fg = style.getPropertyValue("--wave-fg").trim() || "#2563eb";
    const done = style.getPropertyValue("--wave-played").trim() || "#1e3a8a";
    for (let x = 0; x < width; x++) {
      const from = Math.floor(x * perColumn);
      const to = Math.max(from + 1, Math.floor((x + 1) * perColumn));
      let lo = 0, hi = 0;
      for (let i = from; i < to && i < peaks.length; i += 1) {
        lo = Math.min(lo, peaks[i][0]); hi = Math.max(hi, peaks[i][1]);
      }
      if (from >= peaks.length) break;
      g.fillStyle = from < played ? done : fg;
      const top = mid - hi * mid * gain;
      g.fillRect(x, top, 1, Math.max(1, (hi - lo) * mid * gain));
    }
  }

  // --- one synthesis job --------------------------------------------------------------------

  class Job {
    constructor(request) {
      this.request = request;
      this.parts = []; // Uint8Array per binary frame, as received
      this.bytes = 0;
      this.carry = null; // an odd trailing byte, joined to the next frame
      this.peaks = []; // [min, max] per PEAK_BLOCK samples, in -1..1
      this.chunks = 0;
      this.nChunks = null;
      this.seed = null;
      this.received = false; // any message at all
      this.terminal = false;
      this.cancelled = false;
      this.t0 = performance.now();
      this.ws = null;
      this.url = null;
    }

    samples() {
      const all = new Uint8Array(this.bytes - (this.bytes % 2));
      let off = 0;
      for (const p of this.parts) { all.set(p.subarray(0, Math.min(p.length, all.length - off)), off); off += p.length; }
      return new Int16Array(all.buffer, 0, all.length / 2);
    }

    addAudio(buf) {
      let bytes = new Uint8Array(buf);
      this.parts.push(bytes);
      this.bytes += bytes.length;
      if (this.carry) {
        const joined = new Uint8Array(this.carry.length + bytes.length);
        joined.set(this.carry); joined.set(bytes, this.carry.length);
        bytes = joined;
        this.carry = null;
      }
      if (bytes.length % 2) { this.carry = bytes.slice(-1); bytes = bytes.subarray(0, bytes.length - 1); }
      const aligned = bytes.byteOffset % 2 ? bytes.slice() : bytes;
      const samples = new Int16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2);
      for (let i = 0; i < samples.length; i += PEAK_BLOCK) {
        let lo = 0, hi = 0;
        for (let j = i; j < Math.min(i + PEAK_BLOCK, samples.length); j++) {
          const s = samples[j] / 32768;
          if (s < lo) lo = s; if (s > hi) hi = s;
        }
        this.peaks.push([lo, hi]);
      }
      return samples;
    }

    seconds() { return Math.floor(this.bytes / 2) / SAMPLE_RATE; }
  }

  let job = null;
  let timer = 0;
  let objectUrl = null;

  const isActive = () => ACTIVE.has(app.dataset.state);

  function setState(state, message) {
    app.dataset.state = state;
    if (message !== undefined) statusEl.textContent = message;
    const active = ACTIVE.has(state);
    speakBtn.disabled = active;
    speakBtn.setAttribute("aria-busy", String(active));
    cancelBtn.disabled = !active || state === "cancelling";
    if (!active) {
      clearInterval(timer);
      timer = 0;
      if (job) $("stat-elapsed").textContent = `${((performance.now() - job.t0) / 1000).toFixed(1)} s`;
      if (!progress.hasAttribute("value")) progress.value = 0; // no longer indeterminate
      updateCount();
      finishDownload();
    }
  }

  function buildRequest() {
    const num = (id) => {
      const raw = $(id).value.trim();
      return raw === "" ? null : Number(raw);
    };
    const body = {
      text: text.value.trim(),
      voice: voice.value || null,
      seed: num("seed"),
      text_temp: Number($("text_temp").value),
      waveform_temp: Number($("waveform_temp").value),
      continuity: $("continuity").value || null,
    };
    const eos = num("min_eos_p");
    if (eos !== null) body.min_eos_p = eos;
    const cap = num("max_duration_s");
    if (cap !== null) body.max_duration_s = cap;
    return body;
  }

  // "Copy job link": the job's status URL (issue 17), so it can be polled or its audio fetched
  // again after this page is gone. The API key is never put in the link.
  function showJobLink(jobId) {
    const btn = $("copy-job");
    if (!jobId) return;
    btn.dataset.url = new URL(`/jobs/${encodeURIComponent(jobId)}`, location.href).href;
    btn.hidden = false;
  }

  $("copy-job").addEventListener("click", async () => {
    const url = $("copy-job").dataset.url;
    try {
      await navigator.clipboard.writeText(url);
      statusEl.textContent = `Copied ${url}`;
    } catch {
      window.prompt("Job link", url); // no clipboard permission (e.g. plain http): show it
    }
  });

  function resetOutput() {
    clearError();
    stopPlayback();
    chunkList.replaceChildren();
    progress.removeAttribute("value"); // indeterminate until the first chunk says how many
    $("stat-audio").textContent = "0.00 s";
    $("stat-chunks").textContent = "0";
    $("stat-elapsed").textContent = "0.0 s";
    $("stat-rtf").textContent = "–";
    $("stat-seed").textContent = "–";
    $("reuse-seed").hidden = true;
    $("copy-job").hidden = true;
    replayBtn.disabled = true;
    setDownload(null);
    app.dataset.bytes = "0";
    app.dataset.chunks = "0";
  }

  function setDownload(url, name) {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = url;
    if (url) {
      download.href = url;
      download.download = name;
      download.setAttribute("aria-disabled", "false");
      download.removeAttribute("tabindex");
    } else {
      download.removeAttribute("href");
      download.setAttribute("aria-disabled", "true");
      download.setAttribute("tabindex", "-1");
    }
  }

  function finishDownload() {
    if (!job || job.bytes < 2 || objectUrl) return;
    const partial = app.dataset.state !== "done" ? "-partial" : "";
    const name = `bark-${job.seed ?? "random"}${partial}.wav`;
    setDownload(URL.createObjectURL(wavBlob(job.parts, job.bytes - (job.bytes % 2))), name);
    download.textContent = partial ? "Download partial WAV" : "Download WAV";
    replayBtn.disabled = false;
  }

  function wsUrl() {
    const url = new URL("ws/synthesize", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (apiKey()) url.searchParams.set("api_key", apiKey()); // browsers cannot set WS headers
    return url.toString();
  }

  function speak() {
    if (isActive()) return;
    const body = buildRequest();
    const n = [...body.text].length;
    if (n === 0 || n > MAX_CHARS) {
      resetOutput();
      showError({ message: n === 0 ? "Type something to say." : `${n} characters; the limit is ${MAX_CHARS}.`,
        type: "invalid_request_error", param: "text", code: 422 });
      text.focus();
      return;
    }
    savePrefs();
    const ctx = ensureAudio(); // inside the click: browsers only start audio on a user gesture
    resetOutput();
    job = new Job(body);
    const current = job;
    setState("connecting", "Connecting…");
    timer = setInterval(() => {
      $("stat-elapsed").textContent = `${((performance.now() - current.t0) / 1000).toFixed(1)} s`;
    }, 100);
    if (!ctx) statusEl.textContent = "Connecting… (this browser cannot play audio; download still works)";

    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (exc) {
      setState("error", "Failed.");
      showError({ message: exc.message, type: "connection_error", param: null, code: 0 });
      return;
    }
    current.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(JSON.stringify(body));
    ws.onmessage = (ev) => {
      if (job !== current) return;
      current.received = true;
      if (typeof ev.data === "string") {
        let event;
        try { event = JSON.parse(ev.data); } catch { return; }
        onEvent(current, event);
      } else {
        onAudio(current, ev.data);
      }
    };
    ws.onclose = (ev) => { if (job === current) onClose(current, ev); };
  }

  function onEvent(j, event) {
    switch (event.type) {
      case "queued": {
        j.seed = event.seed;
        showJobLink(event.job_id);
        $("stat-seed").textContent = String(event.seed);
        $("reuse-seed").hidden = false;
        app.dataset.position = String(event.position);
        const ahead = event.position === 1 ? "1 job ahead" : `${event.position} jobs ahead`;
        setState("queued", event.position > 0 ? `Queued: ${ahead}, waiting for a worker.`
          : "Queued: next in line, waiting for a worker.");
        break;
      }
      case "started":
        setState("generating", "Generating the first sentence…");
        break;
      case "chunk": {
        j.nChunks = event.n_chunks ?? j.nChunks;
        const li = document.createElement("li");
        li.textContent = event.text || `chunk ${event.seq}`;
        if (event.duration_s) {
          const estimate = event.estimate_s == null ? "" : `estimated ${event.estimate_s.toFixed(1)} s, `;
          const timing = document.createElement("small");
          timing.className = "chunk-timing";
          timing.textContent = ` (${estimate}got ${event.duration_s.toFixed(1)} s)`;
          li.append(timing);
        }
        if (event.attempts > 1) {
          const failed = (event.checks || []).filter((c) => !c.passed).map((c) => c.kind);
          const retried = document.createElement("small");
          retried.className = "chunk-retried";
          retried.textContent = ` [${event.attempts} attempts: failed ${[...new Set(failed)].join(", ")}`
            + `${event.all_failed ? "; every attempt failed, best sent" : ""}]`;
          li.append(retried);
        }
        chunkList.append(li);
        break;
      }
      case "done": {
        j.terminal = true;
        progress.max = 1; progress.value = 1;
        $("stat-rtf").textContent = event.rtf == null ? "–" : Number(event.rtf).toFixed(2);
        setState("done", `Done: ${Number(event.duration_s).toFixed(2)} s of audio in ${event.chunks} `
          + `chunk${event.chunks === 1 ? "" : "s"}.`);
        drawWave();
        break;
      }
      case "error": {
        j.terminal = true;
        const d = showError(event.error);
        if (d.code === 499 || (event.error && event.error.type === "cancelled")) {
          errorEl.hidden = true;
          setState("cancelled", "Cancelled.");
        } else {
          setState("error", "Failed.");
        }
        break;
      }
      default:
        break; // newer servers may add events: ignore what we do not know
    }
  }

  function onAudio(j, data) {
    const samples = j.addAudio(data);
    j.chunks += 1;
    app.dataset.bytes = String(j.bytes);
    app.dataset.chunks = String(j.chunks);
    $("stat-audio").textContent = `${j.seconds().toFixed(2)} s`;
    $("stat-chunks").textContent = j.nChunks ? `${j.chunks} / ${j.nChunks}` : String(j.chunks);
    if (j.nChunks) { progress.max = j.nChunks; progress.value = j.chunks; }
    if (app.dataset.state !== "cancelling") {
      const more = j.nChunks && j.chunks < j.nChunks ? ` Generating sentence ${j.chunks + 1} of ${j.nChunks}…` : "";
      setState("streaming", `Playing.${more}`);
      schedule(samples);
    }
    drawWave();
  }

  async function onClose(j, ev) {
    if (j.terminal) return;
    j.terminal = true;
    if (j.cancelled) { setState("cancelled", "Cancelled."); return; }
    if (!j.received) {
      // The handshake was refused (the browser hides why): ask the HTTP side, which says.
      setState("error", "Failed.");
      showError(await diagnose(ev));
      return;
    }
    setState("error", "Failed.");
    showError({ message: `The connection closed before the end (close code ${ev.code}${ev.reason ? `: ${ev.reason}` : ""}).`,
      type: "connection_error", param: null, code: 0 });
  }

  async function diagnose(ev) {
    try {
      const res = await fetch("voices", { headers: authHeaders(), cache: "no-store" });
      if (!res.ok) return await readError(res);
      const ready = await fetch("readyz", { cache: "no-store" });
      if (!ready.ok) return await readError(ready);
    } catch (exc) {
      return { message: `Cannot reach the server (${exc.message}).`, type: "connection_error", param: null, code: 0 };
    }
    return { message: `The websocket closed at once (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ""}). `
      + "A proxy may not pass websockets, or the server refused this page's origin.",
    type: "connection_error", param: null, code: 0 };
  }

  function cancel() {
    if (!job || !isActive()) return;
    const j = job;
    j.cancelled = true;
    stopPlayback();
    setState("cancelling", "Cancelling…");
    if (j.ws && j.ws.readyState === WebSocket.OPEN) {
      j.ws.send(JSON.stringify({ type: "cancel" }));
      setTimeout(() => { if (!j.terminal) j.ws.close(1000, "cancelled"); }, 3000);
    } else if (j.ws) {
      j.ws.close(1000, "cancelled");
    }
  }

  // --- wiring ------------------------------------------------------------------------------

  function bindRange(id) {
    const input = $(id);
    const out = $(`${id}-out`);
    const show = () => { out.textContent = Number(input.value).toFixed(2); };
    input.addEventListener("input", show);
    return show;
  }

  function init() {
    const prefs = loadPrefs();
    for (const id of ["text_temp", "waveform_temp", "max_duration_s", "min_eos_p", "continuity"]) {
      if (prefs[id] != null) $(id).value = prefs[id];
    }
    bindRange("text_temp")();
    bindRange("waveform_temp")();

    keyInput.value = store.get(KEY_STORAGE) || "";
    const saveKey = () => { store.set(KEY_STORAGE, apiKey()); loadVoices(); };
    keyInput.addEventListener("change", saveKey);
    $("key-form").addEventListener("submit", (e) => { e.preventDefault(); saveKey(); });
    if (keyInput.value) $("settings").open = false;
    $("key-show").addEventListener("click", (e) => {
      const show = keyInput.type === "password";
      keyInput.type = show ? "text" : "password";
      e.currentTarget.textContent = show ? "Hide" : "Show";
      e.currentTarget.setAttribute("aria-pressed", String(show));
    });
    $("key-clear").addEventListener("click", () => {
      keyInput.value = "";
      store.set(KEY_STORAGE, null);
      loadVoices();
    });

    text.addEventListener("input", () => { updateCount(); if (!isActive()) clearError(); });
    text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); speak(); }
    });
    form.addEventListener("submit", (e) => { e.preventDefault(); speak(); });
    form.addEventListener("change", savePrefs);
    cancelBtn.addEventListener("click", cancel);
    replayBtn.addEventListener("click", replay);
    download.addEventListener("click", (e) => { if (!objectUrl) e.preventDefault(); });
    $("seed-random").addEventListener("click", () => {
      seed.value = String(Math.floor(Math.random() * 2 ** 32));
    });
    $("reuse-seed").addEventListener("click", () => {
      if (job && job.seed != null) seed.value = String(job.seed);
    });
    window.addEventListener("resize", drawWave);
    window.addEventListener("beforeunload", () => { if (job && job.ws && isActive()) job.ws.close(); });

    updateCount();
    drawWave();
    loadVoices();
  }

  init();
})();
