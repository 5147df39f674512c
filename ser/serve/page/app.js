// ser serve's page: a file, a recording or the live microphone -> the model's emotions.
// Self-contained (no network beyond this server): Web Audio captures at the model's rate,
// a recording is encoded as 16-bit WAV here, live audio goes to /live as float32 chunks.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);
let info = null;   // GET /info's "model"
let key = "";
let capture = null; // {stream, context, node, chunks, mode, socket, ...} while recording

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function headers() {
  return key ? { "X-API-Key": key } : {};
}

async function loadInfo() {
  const response = await fetch("/info", { headers: headers() });
  if (response.status === 401) {
    $("keybox").hidden = false;
    setStatus("Enter the server's API key.", true);
    return;
  }
  info = (await response.json()).model;
  $("keybox").hidden = true;
  $("model").textContent = `${info.models.join(" + ")}: ${info.class_names.join(", ")} ` +
    `at ${info.sample_rate} Hz; at most ${info.limits.max_seconds} s a recording`;
  $("model").dataset.classes = info.class_names.join(",");
  setStatus("Choose a recording, record one, or go live.");
}

function options(name) {
  const query = new URLSearchParams({ per_window: "true", window: $("window").value,
    hop: $("hop").value, name });
  return query.toString();
}

async function predict(blob, name, source) {
  setStatus(`Scoring ${name}...`);
  try {
    const response = await fetch(`/predict?${options(name)}`, { method: "POST", body: blob,
      headers: headers() });
    const body = await response.json();
    if (!response.ok) {
      setStatus(`${response.status}: ${body.error}`, true);
      return;
    }
    show(body.probabilities, body.windows || [], `${source}: ${body.file}, ${body.duration} s`);
    setStatus(`Scored ${body.file}.`);
  } catch (err) {
    setStatus(`The server did not answer: ${err}`, true);
  }
}

function show(probabilities, windows, source) {
  const classes = info.class_names;
  const best = classes.reduce((a, c) => (probabilities[c] > probabilities[a] ? c : a), classes[0]);
  $("result").hidden = false;
  $("result").dataset.windows = String(windows.length);
  $("emotion").textContent = best;
  $("confidence").textContent = `${(100 * probabilities[best]).toFixed(1)}%`;
  $("source").textContent = source;
  $("bars").replaceChildren(...classes.map((c, i) => {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.cls = c;
    row.dataset.probability = String(probabilities[c]);
    row.innerHTML = `<span></span><div class="track"><div class="fill"></div></div>` +
      `<span class="value"></span>`;
    row.children[0].textContent = c;
    row.querySelector(".fill").style.width = `${100 * probabilities[c]}%`;
    row.querySelector(".fill").style.background = COLORS[i % COLORS.length];
    row.children[2].textContent = probabilities[c].toFixed(3);
    return row;
  }));
  $("legend").replaceChildren(...classes.map((c, i) => {
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${COLORS[i % COLORS.length]}"></i>`;
    item.append(c);
    return item;
  }));
  drawTimeline(windows);
}

function drawTimeline(windows) {
  // A strip of each window's top emotion, and each class's probability over time below it.
  const canvas = $("timeline");
  const g = canvas.getContext("2d");
  const classes = info.class_names;
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!windows.length) return;
  const t0 = Math.min(...windows.map((w) => w.start));
  const t1 = Math.max(...windows.map((w) => w.end));
  const x = (t) => 30 + ((t - t0) / Math.max(t1 - t0, 1e-6)) * (canvas.width - 40);
  const top = 24, bottom = canvas.height - 20;
  const y = (p) => bottom - p * (bottom - top);
  windows.forEach((w) => {
    const best = classes.reduce((a, c) => (w.probabilities[c] > w.probabilities[a] ? c : a));
    g.fillStyle = COLORS[classes.indexOf(best) % COLORS.length];
    g.fillRect(x(w.start), 4, Math.max(1, x(w.end) - x(w.start)), 12);
  });
  g.strokeStyle = "#ccc";
  g.beginPath(); g.moveTo(30, bottom); g.lineTo(canvas.width - 10, bottom); g.stroke();
  g.fillStyle = "#666";
  g.font = "11px sans-serif";
  g.fillText("1", 8, top + 4); g.fillText("0", 8, bottom);
  g.fillText(`${t0.toFixed(1)} s`, 30, canvas.height - 4);
  g.fillText(`${t1.toFixed(1)} s`, canvas.width - 50, canvas.height - 4);
  classes.forEach((c, i) => {
    g.strokeStyle = COLORS[i % COLORS.length];
    g.lineWidth = 2;
    g.beginPath();
    windows.forEach((w, k) => {
      const px = x((w.start + w.end) / 2), py = y(w.probabilities[c]);
      if (k) g.lineTo(px, py); else g.moveTo(px, py);
    });
    g.stroke();
  });
}

function encodeWav(samples, rate) {
  // 16-bit PCM mono WAV: what /predict (libsndfile) reads.
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const v = new DataView(buffer);
  const text = (at, s) => [...s].forEach((ch, i) => v.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF"); v.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true);
  v.setUint16(34, 16, true); text(36, "data"); v.setUint32(40, 2 * samples.length, true);
  samples.forEach((s, i) => v.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, s)) * 0x7fff, true));
  return new Blob([buffer], { type: "audio/wav" });
}

async function startCapture(mode, onChunk) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const context = new AudioContext({ sampleRate: info.sample_rate });  // resampled by the browser
  const source = context.createMediaStreamSource(stream);
  const node = context.createScriptProcessor(4096, 1, 1);
  const state = { stream, context, node, mode, chunks: [] };
  node.onaudioprocess = (event) => {
    const chunk = new Float32Array(event.inputBuffer.getChannelData(0));
    state.chunks.push(chunk);
    if (onChunk) onChunk(chunk);
  };
  source.connect(node);
  node.connect(context.destination);  // a ScriptProcessor runs only when connected; it outputs 0
  return state;
}

function stopCapture() {
  const state = capture;
  capture = null;
  state.node.disconnect();
  state.stream.getTracks().forEach((t) => t.stop());
  state.context.close();
  $(state.mode).classList.remove("on");
  $(state.mode).textContent = state.mode === "record" ? "Record" : "Live";
  return state;
}

async function toggleRecord() {
  if (capture && capture.mode === "record") {
    const state = stopCapture();
    const n = state.chunks.reduce((a, c) => a + c.length, 0);
    const samples = new Float32Array(n);
    let at = 0;
    state.chunks.forEach((c) => { samples.set(c, at); at += c.length; });
    await predict(encodeWav(samples, info.sample_rate), "recording.wav", "microphone");
    return;
  }
  if (capture) stopCapture();
  try {
    capture = await startCapture("record");
  } catch (err) {
    setStatus(`No microphone: ${err}`, true);
    return;
  }
  $("record").classList.add("on");
  $("record").textContent = "Stop";
  setStatus("Recording... press Stop to score it.");
}

async function toggleLive() {
  if (capture && capture.mode === "live") {
    const state = stopCapture();
    if (state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify({ end: true }));
    setStatus(`Live stopped after ${state.windows.length} windows.`);
    return;
  }
  if (capture) stopCapture();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/live`);
  socket.binaryType = "arraybuffer";
  const sent = [];  // [samples sent so far, time] per chunk: when each window's audio ended
  let total = 0;
  const windows = [];
  socket.onopen = () => socket.send(JSON.stringify({ sample_rate: info.sample_rate,
    window: Number($("window").value), hop: Number($("hop").value), key }));
  socket.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (message.error) {
      setStatus(`live: ${message.error}`, true);
      if (capture && capture.mode === "live") stopCapture();
      return;
    }
    if (message.ready) {
      try {
        capture = await startCapture("live", (chunk) => {
          if (socket.readyState !== WebSocket.OPEN) return;
          socket.send(chunk.buffer);
          total += chunk.length;
          sent.push([total, performance.now()]);
        });
      } catch (err) {
        setStatus(`No microphone: ${err}`, true);
        socket.close();
        return;
      }
      capture.socket = socket;
      capture.windows = windows;
      $("live").classList.add("on");
      $("live").textContent = "Stop";
      setStatus("Live: an answer every hop.");
      return;
    }
    const byClass = (values) => Object.fromEntries(info.class_names.map((c, i) => [c, values[i]]));
    windows.push({ start: message.start, end: message.end,
      probabilities: byClass(message.probabilities) });
    const endSample = Math.round(message.end * info.sample_rate);
    const chunk = sent.find(([n]) => n >= endSample);
    const latency = chunk ? performance.now() - chunk[1] : NaN;
    show(byClass(message.running), windows.slice(-60), `live, ${windows.length} windows`);
    setStatus(`Live: window ${message.start.toFixed(1)}-${message.end.toFixed(1)} s answered ` +
      `${latency.toFixed(0)} ms after its audio was sent.`);
    $("status").dataset.latency = String(latency);
  };
  socket.onerror = () => setStatus("live: the connection failed", true);
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  $("file").value = "";  // so that choosing the same file again scores it again
  if (file) predict(file, file.name, "file");
});
$("record").addEventListener("click", toggleRecord);
$("live").addEventListener("click", toggleLive);
$("usekey").addEventListener("click", () => { key = $("key").value; loadInfo(); });
loadInfo().catch((err) => setStatus(`The server did not answer: ${err}`, true));
