// The search page: plain DOM, no build step. Talks only to this server's /api.
// The current search lives in the URL (?q= or ?like=, target, k, mode, min_score, sort, where): a search can be shared and
// reloaded, and Back/Forward move between searches. A query photo cannot live in a URL: it is
// kept for this page's history entries only.
"use strict";

const $ = (id) => document.getElementById(id);
const DEFAULT_K = 24;
const MAX_K = 100;
const thumbnails = new Map(); // item id -> object URL (fetched with the token, kept)
const photos = new Map(); // history key -> {file, url}: the query photos of this page
const pageId = Math.random().toString(36).slice(2); // photo keys of an earlier load never match
let photoCount = 0;
let current = null; // {kind: "text" | "like" | "image", q, like, photo, name, target, k, mode, minScore, sort, where}
const MODES = ["vector", "keyword", "hybrid"];
const SORTS = ["relevance", "taken", "taken:desc"];
let latest = 0; // the newest search: an older answer arriving late is dropped

function headers() {
  const token = $("token").value.trim() || localStorage.getItem("crossmodal-token") || "";
  if ($("token").value.trim()) localStorage.setItem("crossmodal-token", token);
  return token ? { Authorization: "Bearer " + token } : {};
}

function chosenTarget() {
  return document.querySelector("input[name=target]:checked").value;
}

// The mode, the cut-off, the order and the filter, as the controls hold them ("" for the
// server's default / none).
function chosenOptions() {
  return { mode: $("mode").value, minScore: $("min-score").value.trim(), sort: $("sort").value, where: $("where").value.trim() };
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

function setNote(text) {
  $("note").textContent = text || "";
  $("note").hidden = !text;
}

async function call(path, options) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || response.status + " " + response.statusText);
  return body;
}

function idPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

async function blobUrl(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.detail || response.status + " " + response.statusText);
  }
  return URL.createObjectURL(await response.blob());
}

async function thumbnail(itemId, img) {
  if (!thumbnails.has(itemId)) {
    try {
      thumbnails.set(itemId, await blobUrl("/api/thumbnails/" + idPath(itemId)));
    } catch (error) {
      return;
    }
  }
  img.src = thumbnails.get(itemId);
}

// --- the state and the URL ------------------------------------------------------------
function clampK(raw) {
  const k = parseInt(raw, 10);
  return Number.isFinite(k) ? Math.min(Math.max(k, 1), MAX_K) : DEFAULT_K;
}

function stateFromUrl() {
  const params = new URLSearchParams(location.search);
  const raw = params.get("target");
  const target = raw === "captions" || raw === "texts" ? "captions" : "images";
  const k = clampK(params.get("k"));
  const mode = MODES.includes(params.get("mode")) ? params.get("mode") : "";
  const sort = SORTS.includes(params.get("sort")) ? params.get("sort") : "relevance";
  const options = { target, k, mode, minScore: (params.get("min_score") || "").trim(), sort, where: params.get("where") || "" };
  if (params.get("q")) return { kind: "text", q: params.get("q"), ...options };
  if (params.get("like")) return { kind: "like", like: params.get("like"), ...options };
  if (params.has("photo")) return { kind: "image", photo: null, name: params.get("photo"), ...options };
  if (params.has("duplicates")) return { kind: "duplicates", threshold: params.get("duplicates"), ...options };
  return null;
}

function urlFor(state) {
  const params = new URLSearchParams();
  if (state.kind === "duplicates") return "?duplicates" + (state.threshold ? "=" + encodeURIComponent(state.threshold) : "");
  if (state.kind === "text") params.set("q", state.q);
  else if (state.kind === "like") params.set("like", state.like);
  else params.set("photo", state.name || "");
  params.set("target", state.target);
  if (state.k !== DEFAULT_K) params.set("k", String(state.k));
  if (state.mode) params.set("mode", state.mode);
  if (state.minScore) params.set("min_score", state.minScore);
  if (state.sort && state.sort !== "relevance") params.set("sort", state.sort);
  if (state.where) params.set("where", state.where);
  return "?" + params.toString();
}

function itemOf(id) {
  return id.replace(/#\d+$/, ""); // ITEM#K: the K-th caption of ITEM
}

function reflect(state) {
  for (const radio of document.querySelectorAll("input[name=target]")) {
    radio.checked = radio.value === state.target;
  }
  $("query").value = state.kind === "text" ? state.q : "";
  $("mode").value = state.mode || "";
  $("min-score").value = state.minScore || "";
  $("min-score").disabled = state.mode === "keyword"; // BM25 scores have no cosine to cut
  $("sort").value = state.sort || "relevance";
  $("where").value = state.where || "";
  const figure = $("query-photo");
  const img = $("query-photo-img");
  figure.hidden = state.kind === "text" || state.kind === "duplicates";
  img.removeAttribute("src");
  if (state.kind === "image") {
    const photo = photos.get(state.photo);
    if (photo) img.src = photo.url;
    $("query-photo-caption").textContent = "query photo: " + (state.name || "");
  } else if (state.kind === "like") {
    thumbnail(itemOf(state.like), img);
    $("query-photo-caption").textContent = "like: " + state.like;
  }
}

// --- searching ------------------------------------------------------------------------
// A number is sent as one (a cosine); auto / p90 / p50 as the word; nothing when empty.
function minScoreValue(state) {
  if (!state.minScore || state.mode === "keyword") return undefined;
  const number = Number(state.minScore);
  return Number.isFinite(number) ? number : state.minScore;
}

function request(state) {
  const json = { method: "POST", headers: { "Content-Type": "application/json" } };
  const target = state.target;
  if (state.kind === "duplicates") {
    return call("/api/duplicates" + (state.threshold ? "?threshold=" + encodeURIComponent(state.threshold) : ""), {});
  }
  const min_score = minScoreValue(state);
  const sort = state.sort || "relevance";
  const where = state.where || undefined;
  if (state.kind === "text") {
    const mode = state.mode || undefined;
    return call("/api/search/text", { ...json, body: JSON.stringify({ query: state.q, k: state.k, target, mode, min_score, sort, where }) });
  }
  if (state.kind === "like") {
    return call("/api/search/like", { ...json, body: JSON.stringify({ id: state.like, k: state.k, target, min_score, sort, where }) });
  }
  const photo = photos.get(state.photo);
  if (!photo) {
    return Promise.reject(new Error("the query photo is not kept across page loads: choose it again"));
  }
  const form = new FormData();
  form.append("file", photo.file);
  form.append("k", String(state.k));
  form.append("target", target);
  if (min_score !== undefined) form.append("min_score", String(min_score));
  form.append("sort", sort);
  if (where) form.append("where", where);
  return call("/api/search/image", { method: "POST", body: form });
}

function label(state) {
  if (state.kind === "text") return `for “${state.q}”`;
  if (state.kind === "like") return `like ${state.like}`;
  return `for the photo ${state.name || ""}`;
}

async function search(state, how = "push") {
  current = state;
  reflect(state);
  // The same search again (Enter pressed twice) is no new step for Back.
  if (how === "push" && state.kind !== "image" && urlFor(state) === location.search) how = "replace";
  if (how === "push") history.pushState(state, "", urlFor(state));
  else if (how === "replace") history.replaceState(state, "", urlFor(state));
  const mine = ++latest;
  setStatus("searching…");
  setNote("");
  try {
    const result = await request(state);
    if (mine === latest) (state.kind === "duplicates" ? showGroups : show)(result, label(state));
  } catch (error) {
    if (mine !== latest) return;
    $("results").replaceChildren();
    setStatus(error.message, true);
  }
}

function show(result, label) {
  const grid = $("results");
  grid.replaceChildren();
  const word = result.target === "texts" ? "captions" : "images";
  setStatus(`${result.hits.length} ${word} ${label} (${result.took_ms.toFixed(1)} ms)`);
  setNote(result.note);
  for (const hit of result.hits) grid.append(card(hit));
}

// --- duplicates: one row of cards per group, the largest file first ----------------------
function showGroups(result) {
  const grid = $("results");
  grid.replaceChildren();
  setStatus(`${result.groups.length} groups, ${result.duplicates} duplicates among ${result.items} images ` +
            `(threshold ${result.threshold.toFixed(4)}, ${result.took_ms.toFixed(1)} ms)`);
  setNote("");
  result.groups.forEach((group, number) => {
    const row = document.createElement("section");
    row.className = "group";
    const title = document.createElement("h2");
    title.textContent = `group ${number + 1}: ${group.size} images, ` + (group.exact ? "exact copies" : "near-duplicates");
    row.append(title);
    group.members.forEach((member, rank) => {
      const hit = { id: member.id, item_id: member.id, kind: "image", rank: rank + 1, score: member.similarity, captions: [] };
      const item = card(hit);
      item.querySelector(".score").textContent = member.similarity.toFixed(3);
      item.querySelector(".caption").textContent = rank === 0 ? "first (largest file)"
        : member.copy_of ? "same file as " + member.copy_of : "similar";
      row.append(item);
    });
    grid.append(row);
  });
}

function card(hit) {
  const card = document.createElement("div");
  card.className = "card";
  card.dataset.id = hit.id;
  card.title = "Search by this " + (hit.kind === "text" ? "caption" : "image");
  const img = document.createElement("img");
  img.alt = hit.item_id;
  thumbnail(hit.item_id, img);
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  open.title = "Open full size";
  open.textContent = "⤢";
  open.addEventListener("click", (event) => { event.stopPropagation(); openViewer(hit); });
  const score = document.createElement("div");
  score.className = "score";
  score.textContent = `#${hit.rank}  ${hit.score.toFixed(3)}`;
  const caption = document.createElement("p");
  caption.className = "caption";
  caption.textContent = hit.kind === "text" ? hit.text : (hit.captions[0] || "");
  const id = document.createElement("div");
  id.className = "id";
  id.textContent = hit.id;
  card.append(img, open, score, caption, id);
  const taken = photoLine(hit.photo);
  if (taken) {
    const line = document.createElement("div");
    line.className = "taken";
    line.textContent = taken;
    card.append(line);
  }
  card.addEventListener("click", () => search({ kind: "like", like: hit.id, target: current.target, k: current.k, mode: current.mode, minScore: current.minScore, sort: current.sort, where: current.where }));
  return card;
}

// When and with what a photo was taken, as its EXIF says ("2024-06-01 14:03 · Apple iPhone 13").
function photoLine(photo) {
  if (!photo) return "";
  const taken = photo.taken ? photo.taken.replace("T", " ").slice(0, 16) : "";
  return [taken, photo.camera || ""].filter(Boolean).join(" · ");
}

async function openViewer(hit) {
  const viewer = $("viewer");
  const img = $("viewer-img");
  if (img.src) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
  img.alt = hit.item_id;
  $("viewer-caption").textContent = [hit.item_id, ...hit.captions].join(" · ");
  viewer.showModal();
  try {
    img.src = await blobUrl("/api/images/" + idPath(hit.item_id));
  } catch (error) {
    $("viewer-caption").textContent = error.message;
  }
}

function searchText() {
  const q = $("query").value.trim();
  // Enter in the cut-off or filter box of a like or photo search: its change event re-ran it.
  if (!q && current && [$("min-score"), $("where")].includes(document.activeElement)) return;
  if (!q) return setStatus("type something to search for", true);
  search({ kind: "text", q, target: chosenTarget(), k: current ? current.k : stateK(), ...chosenOptions() });
}

function searchImage(file) {
  const key = `${pageId}-${++photoCount}`;
  photos.set(key, { file, url: URL.createObjectURL(file) });
  search({ kind: "image", photo: key, name: file.name || "", target: chosenTarget(), k: current ? current.k : stateK(), ...chosenOptions() });
}

function stateK() {
  return clampK(new URLSearchParams(location.search).get("k"));
}

function restore(state) {
  if (state) return search(state, "none");
  current = null;
  $("query").value = "";
  $("query-photo").hidden = true;
  $("results").replaceChildren();
  setNote("");
  setStatus("");
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
    $("image-input").value = ""; // choosing the same photo again is a new search
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
    // The switch re-runs the current search, whatever its kind, for the other target.
    radio.addEventListener("change", () => { if (current) search({ ...current, target: radio.value }); });
  }
  // A new mode or cut-off re-runs the current search with it (the cut-off once typed).
  $("mode").addEventListener("change", () => {
    $("min-score").disabled = $("mode").value === "keyword";
    if (current) search({ ...current, ...chosenOptions() });
  });
  $("min-score").addEventListener("change", () => { if (current) search({ ...current, ...chosenOptions() }); });
  // So do a new order and a filter (the filter once typed: Enter or leaving the box).
  $("sort").addEventListener("change", () => { if (current) search({ ...current, ...chosenOptions() }); });
  $("where").addEventListener("change", () => { if (current) search({ ...current, ...chosenOptions() }); });
  const viewer = $("viewer");
  $("viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("click", (event) => { if (event.target === viewer) viewer.close(); });
  window.addEventListener("popstate", (event) => restore(event.state || stateFromUrl()));
  $("token").addEventListener("change", showStats);
  $("duplicates-button").addEventListener("click", () => search({ kind: "duplicates", threshold: "", target: chosenTarget(), k: stateK() }));
  showStats();
  const initial = history.state || stateFromUrl();
  if (initial) search(initial, "replace");
});
