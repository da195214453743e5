// The page: a live source (the webcam, or a video file playing) sent frame by frame as JPEG over one
// WebSocket (one live-mode StreamAnnotate at the gateway), or a photo sent once to POST /v1/annotate; each
// answer is drawn on the canvas over the frame it answers, as the Tk app does, and its faces listed.
// window.ferWeb holds the last answer, where its overlays went and the frame counts (read by the tests).
import { annotation, render } from "/static/draw.js";

const JPEG_QUALITY = 0.85;
// Frames kept for drawing once answered; the gateway holds at most 3 of a page's (1 waiting, 2 at the
// server), so an older one will not be answered.
const KEPT_FRAMES = 8;
// Reconnection backoff after the stream failed, as the client library's: 0.5 s doubling to 5 s.
const RECONNECT_INITIAL_MS = 500;
const RECONNECT_MAX_MS = 5000;

const $ = (id) => document.getElementById(id);
const canvas = $("view"), video = $("source");
const state = {
  config: null, lastRecord: null, placements: [], counts: null, answered: 0, droppedBefore: 0,
  status: "idle", error: null, latencyMs: null, serverMs: null,
};
window.ferWeb = state;

let shown = null; // {image, width, height, faces}: what the canvas shows, redrawn on resize
let live = null; // the live source: {kind: "camera" | "video", stream?}
let socket = null, frames = new Map(), nextIndex = 0, encoding = false;
let reconnectMs = RECONNECT_INITIAL_MS, reconnectTimer = null;

function setStatus(text, error = false) {
  state.status = text;
  $("state").textContent = text;
  $("state").classList.toggle("error", error);
}

function showStats() {
  const c = state.counts;
  if (!c) { $("stats").textContent = ""; return; }
  const parts = [`answered ${state.answered}`, `dropped ${state.droppedBefore + c.dropped}`];
  if (state.latencyMs !== null) parts.push(`latency ${Math.round(state.latencyMs)} ms`);
  if (state.serverMs !== null) parts.push(`server ${Math.round(state.serverMs)} ms`);
  $("stats").textContent = parts.join(" · ");
}

function fitCanvas() {
  const box = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(box.width));
  canvas.height = Math.max(1, Math.round(box.height));
}

function draw() {
  if (!shown || !state.config) return;
  const faces = shown.faces.map((face, i) => annotation(face, i, state.config.emotions));
  state.placements = render(canvas, shown.image, shown.width, shown.height, faces, state.config, $("charts").checked);
  listFaces(faces);
}

function listFaces(faces) {
  const list = $("faces");
  list.replaceChildren(...faces.map((face) => {
    const item = document.createElement("li");
    item.style.background = state.config.colours[face.emotion] || state.config.unknown_colour;
    item.style.color = state.config.text_colours[face.emotion] || "#000";
    item.dataset.emotion = face.emotion;
    const name = document.createElement("span");
    name.textContent = `#${face.number} ${face.emotion}`;
    const percent = document.createElement("span");
    percent.textContent = `${Math.round(face.top * 100)}%`;
    item.append(name, percent);
    return item;
  }));
}

function show(image, width, height, record) {
  if (shown && shown.image !== image && shown.image.close) shown.image.close();
  shown = { image, width, height, faces: record ? record.faces : [] };
  $("hint").hidden = true;
  draw();
}

// ----- the live stream

function openSocket() {
  clearTimeout(reconnectTimer);
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/v1/live`;
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  frames.forEach((frame) => frame.bitmap.close());
  frames = new Map();
  nextIndex = 0;
  setStatus("connecting");
  socket.onopen = () => setStatus(`streaming (${live ? live.kind : "idle"})`);
  socket.onmessage = (event) => answer(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (state.counts) state.droppedBefore += state.counts.dropped;
    state.counts = null;
    socket = null;
    if (!live) return;
    setStatus(`${state.error ? state.error + "; " : ""}reconnecting in ${(reconnectMs / 1000).toFixed(1)} s`, true);
    reconnectTimer = setTimeout(openSocket, reconnectMs);
    reconnectMs = Math.min(RECONNECT_MAX_MS, reconnectMs * 2);
  };
}

function answer(message) {
  if (message.type === "error") {
    state.error = `${message.code}: ${message.error}`;
    setStatus(state.error, true);
    return;
  }
  const record = message.record;
  state.counts = message.counts;
  state.answered += 1;
  state.serverMs = message.timing.total_ms;
  reconnectMs = RECONNECT_INITIAL_MS;
  const frame = frames.get(record.frame);
  for (const [index, kept] of frames) { // this frame and older ones are done
    if (index > record.frame) break;
    if (kept !== frame) kept.bitmap.close();
    frames.delete(index);
  }
  if (record.error) {
    state.error = record.error;
    setStatus(`frame ${record.frame}: ${record.error}`, true);
  } else {
    state.error = null;
    setStatus(`streaming (${live ? live.kind : "idle"})`);
  }
  if (frame) {
    state.latencyMs = performance.now() - frame.sentAt;
    state.lastRecord = record;
    show(frame.bitmap, frame.width, frame.height, record);
  }
  showStats();
}

async function sendFrame() {
  if (!live || encoding || !socket || socket.readyState !== WebSocket.OPEN || socket.bufferedAmount > 0) return;
  const width = video.videoWidth, height = video.videoHeight;
  if (!width || !height) return;
  encoding = true;
  try {
    const bitmap = await createImageBitmap(video);
    const grab = new OffscreenCanvas(width, height);
    grab.getContext("2d").drawImage(bitmap, 0, 0);
    const blob = await grab.convertToBlob({ type: "image/jpeg", quality: JPEG_QUALITY });
    if (!socket || socket.readyState !== WebSocket.OPEN) { bitmap.close(); return; }
    const index = nextIndex++;
    frames.set(index, { bitmap, width, height, sentAt: performance.now() });
    while (frames.size > KEPT_FRAMES) {
      const [oldest, kept] = frames.entries().next().value;
      kept.bitmap.close();
      frames.delete(oldest);
    }
    socket.send(await blob.arrayBuffer());
  } finally {
    encoding = false;
  }
}

function pump() {
  if (!live) return;
  sendFrame();
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(pump);
  else requestAnimationFrame(pump);
}

async function startLive(kind, setup) {
  stopLive();
  live = { kind };
  state.error = null;
  try {
    await setup(live);
  } catch (error) {
    live = null;
    setStatus(`cannot start the ${kind}: ${error.message}`, true);
    return;
  }
  $("stop").disabled = false;
  openSocket();
  pump();
}

function stopLive() {
  if (!live) return;
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  if (live.url) URL.revokeObjectURL(live.url);
  video.pause();
  video.removeAttribute("src");
  video.srcObject = null;
  live = null;
  clearTimeout(reconnectTimer);
  if (socket) socket.close();
  $("stop").disabled = true;
  setStatus("stopped");
}

function startCamera() {
  return startLive("camera", async (source) => {
    source.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.srcObject = source.stream;
    await video.play();
  });
}

function startVideo(file) {
  return startLive("video", async (source) => {
    source.url = URL.createObjectURL(file);
    video.src = source.url;
    video.onended = () => { if (live === source) { stopLive(); setStatus("video ended"); } };
    await video.play();
  });
}

// ----- a photo: one POST /v1/annotate

async function annotatePhoto(file) {
  stopLive();
  setStatus(`annotating ${file.name}`);
  let reply;
  try {
    const model = encodeURIComponent(document.getElementById("model").value);
    const response = await fetch(`/v1/annotate?model=${model}`, { method: "POST", body: file,
      headers: { "content-type": file.type || "application/octet-stream" } });
    reply = await response.json();
    if (!response.ok) throw new Error(`${reply.code}: ${reply.error}`);
  } catch (error) {
    state.error = error.message;
    setStatus(`${file.name}: ${error.message}`, true);
    return;
  }
  const bitmap = await createImageBitmap(file); // turned as its EXIF orientation says, as the server turns it
  state.error = null;
  state.lastRecord = reply;
  state.answered += 1;
  show(bitmap, bitmap.width, bitmap.height, reply);
  setStatus(`${file.name}: ${reply.faces.length} face(s)`);
}

function openFile(file) {
  if (!file) return;
  if (file.type.startsWith("video/")) startVideo(file);
  else annotatePhoto(file);
}

// ----- wiring

async function main() {
  state.config = await (await fetch("/v1/config")).json();
  fitCanvas();
  new ResizeObserver(() => { fitCanvas(); draw(); }).observe(canvas);
  $("camera").onclick = startCamera;
  $("stop").onclick = stopLive;
  $("charts").onchange = draw;
  $("file").onchange = (event) => openFile(event.target.files[0]);
  const drop = $("drop");
  drop.ondragover = (event) => { event.preventDefault(); drop.classList.add("dragging"); };
  drop.ondragleave = () => drop.classList.remove("dragging");
  drop.ondrop = (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    openFile(event.dataTransfer.files[0]);
  };
  state.ready = true;
}

main();
