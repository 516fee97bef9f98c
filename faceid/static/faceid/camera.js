/* faceid console: webcam capture for enrollment and the verify test page. Vanilla JS, no build step.
 *
 * Markup: <section data-camera="enroll|verify" data-url="..."> holding video.camera-video,
 * button.camera-start, button.camera-capture, select.camera-frames (optional), .camera-status and
 * .camera-results. Frames are JPEG blobs posted as multipart `image` fields with the CSRF token.
 */
(function () {
  "use strict";

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(typeof c === "string" ? document.createTextNode(c) : c));
    return node;
  }

  async function startCamera(video) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("This page has no camera access (it needs HTTPS or http://127.0.0.1 / localhost).");
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" }, audio: false,
    });
    video.srcObject = stream;
    video.muted = true;
    video.playsInline = true;
    await video.play();
    await playedFor(video, 0.2);
    return stream;
  }

  // A frame grabbed before the video has really played is black: wait for currentTime.
  function playedFor(video, seconds) {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      (function check() {
        if (video.currentTime >= seconds && video.videoWidth > 0) return resolve();
        if (Date.now() - started > 15000) return reject(new Error("The camera shows no picture."));
        setTimeout(check, 50);
      })();
    });
  }

  function grab(video) {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => canvas.toBlob((blob) => resolve({ blob, url: canvas.toDataURL("image/jpeg", 0.6) }),
                                                  "image/jpeg", 0.92));
  }

  async function burst(video, count, gapMs) {
    const frames = [];
    for (let i = 0; i < count; i++) {
      if (i) await new Promise((r) => setTimeout(r, gapMs));
      frames.push(await grab(video));
    }
    return frames;
  }

  async function post(url, frames, fields) {
    const body = new FormData();
    Object.entries(fields || {}).forEach(([k, v]) => body.append(k, v));
    frames.forEach((f, i) => body.append("image", f.blob, `frame${i}.jpg`));
    const response = await fetch(url, {
      method: "POST", body, credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() },
    });
    let data;
    try { data = await response.json(); } catch (e) { data = { reason: "error", detail: `HTTP ${response.status}` }; }
    return { status: response.status, data };
  }

  function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(0) + "%"; }
  function num(x, d) { return x === null || x === undefined ? "–" : Number(x).toFixed(d === undefined ? 3 : d); }

  // --- enrollment: per-frame feedback ---------------------------------------------------------------
  function renderEnroll(results, frames, answer) {
    const photos = (answer.data && answer.data.photos) || [];
    const box = el("div", { class: "frames" });
    const stored = photos.filter((p) => p.stored).length;
    box.appendChild(el("p", { class: "camera-summary", "data-stored": String(stored),
      text: answer.status === 201 || answer.status === 422
        ? `${stored} of ${frames.length} frame(s) enrolled.`
        : `Error ${answer.status}: ${answer.data.detail || answer.data.reason}` }));
    frames.forEach((frame, i) => {
      const p = photos[i];
      let text, ok = false;
      if (!p) text = answer.data.detail || "Not processed.";
      else if (p.stored) { ok = true; text = `Stored (${p.templates.length} templates) — quality ${num(p.quality && p.quality.score, 2)}`; }
      else text = `${p.detail || p.reason}` + (p.quality ? ` — quality ${num(p.quality.score, 2)}` : "");
      if (p && p.mask_probability !== null && p.mask_probability !== undefined) text += ` — mask ${pct(p.mask_probability)}`;
      box.appendChild(el("div", { class: "frame " + (ok ? "ok" : "bad"), "data-reason": p ? (p.reason || "stored") : "error" },
        [el("img", { src: frame.url, alt: `frame ${i}` }), el("span", { text })]));
    });
    results.replaceChildren(box);
  }

  // --- verify: decision, similarity against threshold ------------------------------------------------
  function renderVerify(results, answer) {
    const d = answer.data || {};
    const nodes = [];
    if (answer.status === 200) {
      nodes.push(el("div", { class: "decision " + (d.match ? "accept" : "reject"), id: "decision",
        "data-decision": d.match ? "accept" : "reject", text: d.match ? "ACCEPTED" : "REJECTED" }));
      const meter = el("div", { class: "meter" }, [
        el("div", { class: "fill", style: `width:${Math.max(0, Math.min(1, d.similarity)) * 100}%` }),
        el("div", { class: "mark", style: `left:${Math.max(0, Math.min(1, d.threshold)) * 100}%` },
           [el("span", { text: "threshold" })]),
      ]);
      nodes.push(el("p", { text: `Similarity ${num(d.similarity, 4)} against threshold ${num(d.threshold, 4)} ` +
        `(${d.masked ? "masked" : "unmasked"} threshold)` }), meter);
      nodes.push(el("p", { text: `Masked: ${d.masked ? "yes" : "no"} (mask probability ${pct(d.mask_probability)}) — ` +
        `person ${d.person ? d.person.external_id : ""} — attempt #${d.attempt_id} — ${num(d.latency_ms, 0)} ms` }));
      if (d.locked_out) nodes.push(el("p", { class: "badge bad", text: "This failure locked the person out." }));
    } else {
      nodes.push(el("div", { class: "decision refused", id: "decision", "data-decision": d.reason || "error",
        text: `${d.detail || d.reason || "Error"}` }));
      nodes.push(el("p", { class: "muted", text: `HTTP ${answer.status}, reason ${d.reason}` +
        (d.attempt_id ? `, attempt #${d.attempt_id}` : "") }));
    }
    results.replaceChildren(...nodes);
  }

  function setup(section) {
    const mode = section.dataset.camera;
    const url = section.dataset.url;
    const video = section.querySelector(".camera-video");
    const startBtn = section.querySelector(".camera-start");
    const captureBtn = section.querySelector(".camera-capture");
    const status = section.querySelector(".camera-status");
    const results = section.querySelector(".camera-results");
    const countSelect = section.querySelector(".camera-frames");
    const say = (text) => { status.textContent = text; };

    startBtn.addEventListener("click", async () => {
      startBtn.disabled = true;
      say("Starting the camera…");
      try {
        await startCamera(video);
        captureBtn.disabled = false;
        section.dataset.ready = "true";
        say("Camera on. Look at the camera" + (mode === "enroll" ? ", without a mask." : "."));
      } catch (err) {
        startBtn.disabled = false;
        say(`Camera unavailable: ${err.name || ""} ${err.message}`);
      }
    });

    captureBtn.addEventListener("click", async () => {
      const fields = {};
      if (mode === "verify") {
        const person = document.getElementById(section.dataset.personInput || "verify-person");
        if (!person || !person.value.trim()) { say("Choose the claimed person first."); return; }
        fields.person = person.value.trim();
      }
      captureBtn.disabled = true;
      const count = countSelect ? parseInt(countSelect.value, 10) : 3;
      say(`Capturing ${count} frame(s)…`);
      try {
        const frames = await burst(video, count, 250);
        say("Checking with the face pipeline…");
        const answer = await post(url, frames, fields);
        if (mode === "enroll") renderEnroll(results, frames, answer); else renderVerify(results, answer);
        section.dataset.lastStatus = String(answer.status);
        say("Done.");
      } catch (err) {
        say(`Failed: ${err.message}`);
      } finally {
        captureBtn.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-camera]").forEach(setup);
    document.querySelectorAll("select[data-autosubmit]").forEach((s) =>
      s.addEventListener("change", () => s.form.submit()));
  });

  window.FaceIDCamera = { startCamera, grab, burst, post };
})();
