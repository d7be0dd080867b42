// The search page: plain DOM, no build step. Talks only to this server's /api.
"use strict";

const $ = (id) => document.getElementById(id);
const thumbnails = new Map(); // item id -> object URL (fetched with the token, kept)

function headers() {
  const token = $("token").value.trim() || localStorage.getItem("crossmodal-token") || "";
  if ($("token").value.trim()) localStorage.setItem("crossmodal-token", token);
  return token ? { Authorization: "Bearer " + token } : {};
}

function target() {
  return document.querySelector("input[name=target]:checked").value;
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function call(path, options) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || response.status + " " + response.statusText);
  return body;
}

async function thumbnail(itemId, img) {
  if (!thumbnails.has(itemId)) {
    const url = "/api/thumbnails/" + itemId.split("/").map(encodeURIComponent).join("/");
    const response = await fetch(url, { headers: headers() });
    if (!response.ok) return;
    thumbnails.set(itemId, URL.createObjectURL(await response.blob()));
  }
  img.src = thumbnails.get(itemId);
}

function show(result, label) {
  const grid = $("results");
  grid.replaceChildren();
  setStatus(`${result.hits.length} ${result.target} for ${label} (${result.took_ms.toFixed(1)} ms)`);
  for (const hit of result.hits) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.id = hit.id;
    card.title = "Search by this " + hit.kind;
    const img = document.createElement("img");
    img.alt = hit.item_id;
    thumbnail(hit.item_id, img);
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = `#${hit.rank}  ${hit.score.toFixed(3)}`;
    const caption = document.createElement("p");
    caption.className = "caption";
    caption.textContent = hit.kind === "text" ? hit.text : (hit.captions[0] || "");
    const id = document.createElement("div");
    id.className = "id";
    id.textContent = hit.id;
    card.append(img, score, caption, id);
    card.addEventListener("click", () => searchLike(hit.id));
    grid.append(card);
  }
}

async function run(label, request) {
  setStatus("searching…");
  try {
    show(await request(), label);
  } catch (error) {
    $("results").replaceChildren();
    setStatus(error.message, true);
  }
}

function searchText() {
  const query = $("query").value.trim();
  if (!query) return setStatus("type something to search for", true);
  run(`“${query}”`, () => call("/api/search/text", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, k: 24, target: target() }),
  }));
}

function searchImage(file) {
  const form = new FormData();
  form.append("file", file);
  form.append("k", "24");
  form.append("target", target());
  run(file.name || "the image", () => call("/api/search/image", { method: "POST", body: form }));
}

function searchLike(id) {
  run(id, () => call("/api/search/like", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id, k: 24, target: target() }),
  }));
}

async function showStats() {
  try {
    const s = await call("/api/stats", {});
    $("stats").textContent = `${s.items} images, ${s.texts} captions · ${s.model}`;
  } catch (error) {
    $("stats").textContent = error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("text-form").addEventListener("submit", (event) => { event.preventDefault(); searchText(); });
  $("image-input").addEventListener("change", () => {
    if ($("image-input").files.length) searchImage($("image-input").files[0]);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) searchImage(event.dataTransfer.files[0]);
  });
  for (const radio of document.querySelectorAll("input[name=target]")) {
    radio.addEventListener("change", () => { if ($("query").value.trim()) searchText(); });
  }
  $("token").addEventListener("change", showStats);
  showStats();
});
