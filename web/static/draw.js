// The page's drawing: the rules of ferstream.annotate.draw (the Tk app's and fer-annotate's renderer) on a
// canvas. Each face gets a box in its emotion's colour, a label "#N emotion P%" and, with charts on, a bar
// chart of its seven probabilities. Labels and charts go only where they cover no face box (their own
// face's included) and nothing placed before them: a label that fits nowhere in full shrinks to "#N"
// (inside its own box if need be), a chart that fits nowhere is left out. Sizes follow the drawn image's
// size as there: text scale 0.45 at a 640 px longer side, within 0.35..2; lines 1 px per 320 px.

const REFERENCE_SIDE = 640;
const REFERENCE_TEXT_SCALE = 0.45;
const TEXT_SCALE_BOUNDS = [0.35, 2.0];
// Hershey Simplex (OpenCV's font) at scale 1 is about 30 px from ascender to descender.
const PX_PER_TEXT_SCALE = 30;
const LABEL_SIDES = ["above", "below", "right", "left"];
const CHART_SIDES = ["below", "right", "left", "above"];

// A face to draw, from a FrameRecord face: the track's smoothed emotion and probabilities when the server
// sent them (a stream's face), else the frame's own; numbered by track id, else by place in the answer.
export function annotation(face, index, emotions) {
  const shown = face.track_probabilities || face.probabilities;
  const probabilities = emotions.map((name) => shown[name] || 0);
  let emotion = face.emotion;
  if (face.track_probabilities) {
    let best = 0;
    probabilities.forEach((p, i) => { if (p > probabilities[best]) best = i; });
    emotion = emotions[best];
  }
  const top = emotions.indexOf(emotion) >= 0 ? probabilities[emotions.indexOf(emotion)] : 0;
  const box = [face.box.x, face.box.y, face.box.width, face.box.height];
  return { box, emotion, probabilities, top, number: face.track_id || index + 1 };
}

function fontOf(scale) {
  return `${Math.max(1, Math.round(scale * PX_PER_TEXT_SCALE))}px sans-serif`;
}

function textSize(ctx, text, scale) {
  ctx.font = fontOf(scale);
  const m = ctx.measureText(text);
  return [Math.ceil(m.width), Math.ceil(m.fontBoundingBoxAscent), Math.ceil(m.fontBoundingBoxDescent)];
}

export function styleFor(ctx, width, height) {
  const side = Math.max(width, height);
  const [low, high] = TEXT_SCALE_BOUNDS;
  const textScale = Math.min(high, Math.max(low, REFERENCE_TEXT_SCALE * side / REFERENCE_SIDE));
  const chartTextScale = Math.max(low, 0.8 * textScale);
  const [nameWidth, nameAscent, nameDescent] = textSize(ctx, "sur", chartTextScale);
  const chartRow = nameAscent + nameDescent + 1;
  const line = Math.max(1, Math.round(side / 320));
  const pad = Math.max(2, Math.round(3 * textScale));
  return {
    textScale, chartTextScale, chartRow, line, pad,
    chartNameWidth: nameWidth + 4,
    chartWidth: nameWidth + 4 + 6 * chartRow,
    chartHeight: chartRow * 7 + 4,
    labelSize(text) {
      const [w, ascent, descent] = textSize(ctx, text, textScale);
      return [w + 2 * pad, ascent + descent + 2 * pad];
    },
  };
}

// [x1, y1, x2, y2], x2 and y2 exclusive.
export function overlaps(a, b) {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

function scaledBox([x, y, w, h], scale) {
  return [Math.round(x * scale), Math.round(y * scale), Math.round((x + w) * scale), Math.round((y + h) * scale)];
}

function grow(r, by) { return [r[0] - by, r[1] - by, r[2] + by, r[3] + by]; }

function inside(r, width, height) { return r[0] >= 0 && r[1] >= 0 && r[2] <= width && r[3] <= height; }

function* outsideSpots(around, [w, h], width, height, sides) {
  const [x1, y1, x2, y2] = around;
  for (const side of sides) {
    if (side === "above" || side === "below") {
      const top = side === "above" ? y1 - h : y2;
      for (let left of [x1, x2 - w]) {
        left = Math.min(Math.max(left, 0), width - w);
        yield [left, top, left + w, top + h];
      }
    } else {
      const left = side === "right" ? x2 : x1 - w;
      for (let top of [y1, y2 - h]) {
        top = Math.min(Math.max(top, 0), height - h);
        yield [left, top, left + w, top + h];
      }
    }
  }
}

function placeLabel(face, box, guarded, others, taken, style, width, height) {
  const full = `#${face.number} ${face.emotion} ${Math.round(face.top * 100)}%`;
  for (const text of [full, `#${face.number}`]) {
    const size = style.labelSize(text);
    const innerLeft = box[0] + style.line, innerTop = box[1] + style.line;
    const ownBox = [innerLeft, innerTop, innerLeft + size[0], innerTop + size[1]];
    const fitsInside = ownBox[2] <= box[2] - style.line && ownBox[3] <= box[3] - style.line;
    const spots = [...outsideSpots(guarded, size, width, height, LABEL_SIDES)];
    if (fitsInside) spots.push(ownBox); // last resort: covers the forehead, but no other face
    for (const spot of spots) {
      const blocked = spot === ownBox ? [...others, ...taken] : [guarded, ...others, ...taken];
      if (inside(spot, width, height) && !blocked.some((other) => overlaps(spot, other))) return [spot, text];
    }
  }
  return [null, full];
}

// Where each face's box, label and chart go on a width x height drawing (faces scaled by scale).
export function layout(ctx, faces, width, height, scale, charts) {
  const style = styleFor(ctx, width, height);
  const boxes = faces.map((face) => scaledBox(face.box, scale));
  const guarded = boxes.map((box) => grow(box, style.line)); // the outline is centred on the box edge
  const taken = [];
  const labels = faces.map((face, i) => {
    const others = guarded.filter((_, j) => j !== i);
    const label = placeLabel(face, boxes[i], guarded[i], others, taken, style, width, height);
    if (label[0]) taken.push(label[0]);
    return label;
  });
  const placements = faces.map((face, i) => {
    let chart = null;
    if (charts) {
      for (const spot of outsideSpots(guarded[i], [style.chartWidth, style.chartHeight], width, height, CHART_SIDES)) {
        if (inside(spot, width, height) && ![...guarded, ...taken].some((other) => overlaps(spot, other))) {
          chart = spot;
          taken.push(chart);
          break;
        }
      }
    }
    return { number: face.number, emotion: face.emotion, box: boxes[i], label: labels[i][0], labelText: labels[i][1], chart };
  });
  return { style, placements };
}

// Draws image (an ImageBitmap or video frame of imageWidth x imageHeight) fitted into the canvas, and the
// faces on it; returns the placements in canvas pixels (with the picture's offset added).
export function render(canvas, image, imageWidth, imageHeight, faces, palette, charts) {
  const ctx = canvas.getContext("2d");
  const scale = Math.min(canvas.width / imageWidth, canvas.height / imageHeight);
  const width = Math.max(1, Math.round(imageWidth * scale)), height = Math.max(1, Math.round(imageHeight * scale));
  const offsetX = Math.floor((canvas.width - width) / 2), offsetY = Math.floor((canvas.height - height) / 2);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.save();
  ctx.translate(offsetX, offsetY);
  ctx.drawImage(image, 0, 0, width, height);
  const { style, placements } = layout(ctx, faces, width, height, scale, charts);
  const colour = (emotion) => palette.colours[emotion] || palette.unknown_colour;
  ctx.imageSmoothingEnabled = false;
  placements.forEach((p) => {
    // cv2.rectangle's outline of thickness t is centred on the edge; strokeRect's is too.
    ctx.strokeStyle = colour(p.emotion);
    ctx.lineWidth = style.line;
    const half = style.line % 2 ? 0.5 : 0;
    ctx.strokeRect(p.box[0] + half, p.box[1] + half, p.box[2] - p.box[0], p.box[3] - p.box[1]);
  });
  placements.forEach((p, i) => {
    if (p.label) drawLabel(ctx, p.label, p.labelText, colour(p.emotion), palette.text_colours[p.emotion] || "#000", style);
    if (p.chart) drawChart(ctx, p.chart, faces[i].probabilities, palette, style);
  });
  ctx.restore();
  const shift = (r) => r && [r[0] + offsetX, r[1] + offsetY, r[2] + offsetX, r[3] + offsetY];
  return placements.map((p) => ({ ...p, box: shift(p.box), label: shift(p.label), chart: shift(p.chart) }));
}

function drawLabel(ctx, [x1, y1, x2, y2], text, background, foreground, style) {
  ctx.fillStyle = background;
  ctx.fillRect(x1, y1, x2 - x1, y2 - y1);
  ctx.font = fontOf(style.textScale);
  ctx.textBaseline = "top";
  ctx.fillStyle = foreground;
  ctx.fillText(text, x1 + style.pad, y1 + style.pad);
}

function drawChart(ctx, [x1, y1, x2, y2], probabilities, palette, style) {
  // Darkens the picture under the chart to CHART_DIMMING of itself, so that white text keeps >= 7:1.
  ctx.fillStyle = `rgba(0, 0, 0, ${1 - palette.chart_dimming})`;
  ctx.fillRect(x1, y1, x2 - x1, y2 - y1);
  const barLeft = x1 + style.chartNameWidth, barSpan = x2 - 2 - barLeft;
  ctx.font = fontOf(style.chartTextScale);
  ctx.textBaseline = "bottom";
  palette.emotions.forEach((emotion, row) => {
    const top = y1 + 2 + row * style.chartRow;
    ctx.fillStyle = "#fff";
    ctx.fillText(emotion.slice(0, 3), x1 + 2, top + style.chartRow);
    const barEnd = barLeft + Math.max(1, Math.round(probabilities[row] * barSpan));
    ctx.fillStyle = palette.colours[emotion];
    ctx.fillRect(barLeft, top + 2, barEnd - barLeft, style.chartRow - 4);
  });
}
