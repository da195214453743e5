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
// The caller's token, when the gateway wants one: asked once, kept for this tab only (sessionStorage).
const TOKEN_KEY = "ferstream.token";
// The subprotocol the gateway selects; a token travels beside it as "bearer." + base64url(token), since a
// browser's WebSocket cannot send an Authorization header (ferstream.web.guard).
const LIVE_SUBPROTOCOL = "ferstream";
// What a failed stream's gRPC code means for someone watching the page; the server's own words go in the
// status bar's tooltip.
const PLAIN_ERRORS = {
  UNAVAILABLE: "the server cannot be reached",
  DEADLINE_EXCEEDED: "the server did not answer in time",
  UNAUTHENTICATED: "the server refused the token",
  PERMISSION_DENIED: "the server refused this caller",
  RESOURCE_EXHAUSTED: "the server is busy",
  CANCELLED: "the stream was cancelled",
  INTERNAL: "the server failed",
  UNKNOWN: "the server failed",
};

const $ = (id) => document.getElementById(id);
const canvas = $("view"), video = $("source");
const state = {
  config: null, lastRecord: null, placements: [], counts: null, answered: 0, droppedBefore: 0,
  status: "idle", error: null, latencyMs: null, serverMs: null, needsToken: false,
};
window.ferWeb = state;

let shown = null; // {image, width, height, faces}: what the canvas shows, redrawn on resize
let live = null; // the live source: {kind: "camera" | "video", stream?}
let socket = null, frames = new Map(), nextIndex = 0, encoding = false;
let reconnectMs = RECONNECT_INITIAL_MS, reconnectTimer = null;

function setStatus(text, error = false, detail = "") {
  state.status = text;
  $("state").textContent = text;
  $("state").title = detail;
  $("state").classList.toggle("error", error);
}

// One line for people from an error answer {code, error}: plain words and the code, never the raw
// multi-part gRPC message (kept for the tooltip).
function readable(message) {
  const plain = PLAIN_ERRORS[message.code];
  return plain ? `${plain} (${message.code})` : `${message.code}: ${message.error}`;
}

// ----- the caller's token

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders() {
  const t = token();
  return t ? { authorization: `Bearer ${t}` } : {};
}

function tokenSubprotocol(t) {
  const bytes = new TextEncoder().encode(t);
  const base64 = btoa(String.fromCharCode(...bytes));
  return `bearer.${base64.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "")}`;
}

function askToken(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  state.needsToken = true;
  $("login").hidden = false;
  $("login-why").textContent = why;
  $("token").focus();
  setStatus("this gateway needs a token", true);
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

function clearFaces() {
  state.lastRecord = null;
  if (shown) shown.faces = [];
  draw();
}

function show(image, width, height, record) {
  if (shown && shown.image !== image && shown.image.close) shown.image.close();
  shown = { image, width, height, faces: record ? record.faces : [] };
  state.shownSize = [width, height];
  $("hint").hidden = true;
  draw();
}

// ----- the live stream

function openSocket() {
  clearTimeout(reconnectTimer);
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/v1/live`;
  const t = token();
  socket = new WebSocket(url, t ? [LIVE_SUBPROTOCOL, tokenSubprotocol(t)] : [LIVE_SUBPROTOCOL]);
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
    clearFaces(); // the boxes of a stream that ended describe no frame to come
    setStatus(`${state.error ? state.error + "; " : ""}reconnecting in ${(reconnectMs / 1000).toFixed(1)} s`, true,
              $("state").title);
    reconnectTimer = setTimeout(openSocket, reconnectMs);
    reconnectMs = Math.min(RECONNECT_MAX_MS, reconnectMs * 2);
  };
}

function answer(message) {
  if (message.type === "error") {
    state.error = readable(message);
    if (message.ends_stream) clearFaces();
    setStatus(state.error, true, message.error);
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

// The EXIF orientation (1-8) of a WebP file, 1 when it has none: Chromium turns JPEG and PNG photos as
// their tag says, but draws WebP ones as stored, while the server decodes them upright (cv2.imdecode).
function webpOrientation(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = (at, n) => String.fromCharCode(...bytes.subarray(at, at + n));
  if (bytes.length < 16 || text(0, 4) !== "RIFF" || text(8, 4) !== "WEBP") return 1;
  for (let at = 12; at + 8 <= bytes.length;) {
    const size = view.getUint32(at + 4, true);
    if (text(at, 4) === "EXIF") {
      let tiff = at + 8;
      if (text(tiff, 6) === "Exif\0\0") tiff += 6;
      const little = text(tiff, 2) === "II";
      const ifd = tiff + view.getUint32(tiff + 4, little);
      const entries = view.getUint16(ifd, little);
      for (let i = 0; i < entries; i++) {
        const entry = ifd + 2 + 12 * i;
        if (view.getUint16(entry, little) === 0x0112) return view.getUint16(entry + 8, little);
      }
      return 1;
    }
    at += 8 + size + (size % 2);
  }
  return 1;
}

// The bitmap turned as EXIF orientation says (the canvas transforms of the EXIF specification's 8 cases).
function turned(bitmap, orientation) {
  const w = bitmap.width, h = bitmap.height, sideways = orientation >= 5;
  const canvas = new OffscreenCanvas(sideways ? h : w, sideways ? w : h);
  const ctx = canvas.getContext("2d");
  const transforms = { 2: [-1, 0, 0, 1, w, 0], 3: [-1, 0, 0, -1, w, h], 4: [1, 0, 0, -1, 0, h], 5: [0, 1, 1, 0, 0, 0],
                       6: [0, 1, -1, 0, h, 0], 7: [0, -1, -1, 0, h, w], 8: [0, -1, 1, 0, 0, w] };
  ctx.transform(...transforms[orientation]);
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return canvas.transferToImageBitmap();
}

// The photo as the server saw it: upright, so that the answer's boxes fall on their faces.
async function uprightBitmap(file, reply) {
  const bitmap = await createImageBitmap(file);
  const orientation = webpOrientation(new Uint8Array(await file.arrayBuffer()));
  if (orientation <= 1 || orientation > 8) return bitmap;
  // A browser that turned it already shows the answer's size for a sideways turn.
  if (orientation >= 5 && bitmap.width === reply.width && bitmap.height === reply.height) return bitmap;
  return turned(bitmap, orientation);
}

async function annotatePhoto(file) {
  stopLive();
  setStatus(`annotating ${file.name}`);
  let reply;
  try {
    const model = encodeURIComponent(document.getElementById("model").value);
    const response = await fetch(`/v1/annotate?model=${model}`, { method: "POST", body: file,
      headers: { "content-type": file.type || "application/octet-stream", ...authHeaders() } });
    reply = await response.json();
    if (response.status === 401) { askToken(reply.error); return; }
    if (!response.ok) throw new Error(readable(reply));
  } catch (error) {
    state.error = error.message;
    setStatus(`${file.name}: ${error.message}`, true);
    return;
  }
  const bitmap = await uprightBitmap(file, reply);
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

// The page's configuration, which also tells whether the token (if any) is accepted: false after asking
// for one.
async function loadConfig() {
  const response = await fetch("/v1/config", { headers: authHeaders() });
  const body = await response.json();
  if (response.status === 401) {
    askToken(body.error);
    return false;
  }
  state.config = body;
  state.needsToken = false;
  $("login").hidden = true;
  return true;
}

async function main() {
  $("login").onsubmit = async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    if (await loadConfig()) {
      setStatus("idle");
      state.ready = true;
      draw();
    }
  };
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
  if (await loadConfig()) state.ready = true;
}

main();
